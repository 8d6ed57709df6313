"""An actor starts without waiting on another actor: ``setup()`` calls ``starting()``,
``request()``s what it needs and a continuation says ``ready()`` (or the start fails).
Start order is kept (OTP ``start_link``): the next sibling starts only once it is ready."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import outcome
import pytest

from trustchain.supervisors import (
    ActorState,
    ActorUnavailable,
    ChildSpec,
    ChildStartFailed,
    Message,
    Registry,
    SupervisedActor,
    handles,
    start_root,
)
from trustchain.supervisors.registry import WaitOnActorThread

from ..conftest import wait_until


@dataclass(frozen=True)
class GetKey(Message):
    pass


@dataclass(frozen=True)
class GetStarted(Message):
    pass


class Keeper(SupervisedActor):
    """The peer a start needs: answers ``GetKey`` when ``gate`` opens."""

    gate = threading.Event()
    answer: Any = "key-1"

    @handles(GetKey)
    def get_key(self, msg: GetKey) -> None:
        reply = self.defer()

        def release() -> None:
            Keeper.gate.wait(10)
            answer = Keeper.answer
            reply(outcome.Error(answer) if isinstance(answer, Exception) else outcome.Value(answer))

        threading.Thread(target=release, daemon=True).start()


started: list[str] = []  # the order in which children became ready


class NeedsKey(SupervisedActor):
    """Its start needs the keeper's answer; it finishes in the continuation."""

    def setup(self) -> None:
        self.key: str | None = None
        self.starting()
        self.request("keeper", GetKey(), self._have_key)

    def _have_key(self, result: outcome.Outcome) -> None:
        self.key = result.unwrap()  # an error raises here: the start fails with it
        started.append(self.name)
        self.ready()

    @handles(GetStarted)
    def get_started(self, msg: GetStarted) -> Any:
        return self.key


class Sibling(SupervisedActor):
    def setup(self) -> None:
        started.append(self.name)


class GivesUp(SupervisedActor):
    def setup(self) -> None:
        self.starting()
        self.request("keeper", GetKey(), self._have_key)

    def _have_key(self, result: outcome.Outcome) -> None:
        self.start_failed(ValueError(f"the key {result.unwrap()!r} is not usable"))


class NeverReady(SupervisedActor):
    def setup(self) -> None:
        self.starting()  # and nothing ever says ready()


class AsksInSetup(SupervisedActor):
    def setup(self) -> None:
        self.registry.ask("keeper", GetKey())


@pytest.fixture(autouse=True)
def fresh() -> Any:
    Keeper.gate = threading.Event()
    Keeper.answer = "key-1"
    started.clear()
    yield
    Keeper.gate.set()


def start(registry: Registry, *specs: ChildSpec) -> Any:
    children = [ChildSpec("keeper", Keeper.start), *specs]
    return start_root(registry, "root", children, max_restarts=0, start_timeout_s=10)


def test_an_actor_whose_start_needs_a_peers_answer_starts() -> None:
    registry = Registry()
    Keeper.gate.set()
    root = start(registry, ChildSpec("needs_key", NeedsKey.start))
    try:
        assert registry.ask("needs_key", GetStarted()) == "key-1"
        assert registry.cell("needs_key").state is ActorState.RUNNING
    finally:
        root.stop(block=True, timeout=10)


def test_the_next_sibling_starts_only_once_the_async_start_is_ready() -> None:
    registry = Registry()
    box: list[Any] = []
    specs = ChildSpec("needs_key", NeedsKey.start), ChildSpec("after", Sibling.start)
    thread = threading.Thread(target=lambda: box.append(start(registry, *specs)), daemon=True)
    thread.start()
    wait_until(lambda: registry.cell("needs_key").state is ActorState.STARTING, "the start")
    # While its answer is out: it takes no requests, and its later sibling has not started.
    with pytest.raises(ActorUnavailable, match="starting"):
        registry.ask("needs_key", GetStarted())
    assert started == [] and registry.cell("after").incarnation == 0
    Keeper.gate.set()
    thread.join(10)
    try:
        assert started == ["needs_key", "after"]
        assert registry.cell("after").state is ActorState.RUNNING
    finally:
        box[0].stop(block=True, timeout=10)


def test_an_error_in_a_start_continuation_fails_the_start_with_its_reason() -> None:
    registry = Registry()
    Keeper.answer = KeyError("no key labelled 'log'")
    Keeper.gate.set()
    with pytest.raises(ChildStartFailed, match=r"needs_key.*failed to start: KeyError.*'log'"):
        start(registry, ChildSpec("needs_key", NeedsKey.start), ChildSpec("after", Sibling.start))
    assert registry.cell("after").incarnation == 0  # nothing after it started


def test_start_failed_fails_the_start_with_its_reason() -> None:
    registry = Registry()
    Keeper.gate.set()
    with pytest.raises(ChildStartFailed, match="ValueError: the key 'key-1' is not usable"):
        start(registry, ChildSpec("gives_up", GivesUp.start))


def test_a_start_that_never_completes_times_out() -> None:
    registry = Registry()
    spec = ChildSpec("never", NeverReady.start, start_timeout_s=0.2)
    with pytest.raises(ChildStartFailed, match=r"'never' did not start within 0\.2 s"):
        start(registry, spec)
    assert registry.cell("never").state is not ActorState.RUNNING


def test_registry_ask_in_setup_raises() -> None:
    registry = Registry()
    Keeper.gate.set()
    with pytest.raises(ChildStartFailed, match="WaitOnActorThread: actor 'asks' asked 'keeper'"):
        start(registry, ChildSpec("asks", AsksInSetup.start))
    assert issubclass(WaitOnActorThread, RuntimeError)
