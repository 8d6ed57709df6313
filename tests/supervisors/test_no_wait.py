"""An actor's thread never waits on another actor: ``Registry.ask`` from a handler is a
programming error (the actor crashes, its supervisor restarts it); ``request()`` with a
continuation is the way. (From ``setup()`` it fails the start: test_async_start.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import outcome
import pytest

from trustchain.supervisors import (
    ActorCrashed,
    ChildSpec,
    Message,
    Registry,
    SupervisedActor,
    handles,
    start_root,
)
from trustchain.supervisors.registry import WaitOnActorThread

from ..conftest import wait_until


@dataclass(frozen=True)
class Ping(Message):
    pass


@dataclass(frozen=True)
class AskPeer(Message):
    pass


@dataclass(frozen=True)
class RequestPeer(Message):
    pass


class Peer(SupervisedActor):
    @handles(Ping)
    def ping(self, msg: Ping) -> str:
        return "pong"


class Caller(SupervisedActor):
    @handles(AskPeer)
    def ask_peer(self, msg: AskPeer) -> Any:
        return self.registry.ask("peer", Ping())  # blocks this thread: refused

    @handles(RequestPeer)
    def request_peer(self, msg: RequestPeer) -> None:
        answer = self.defer()
        self.request("peer", Ping(), lambda result: answer(outcome.Value(result.unwrap() * 2)))


@pytest.fixture
def registry() -> Any:
    registry = Registry()
    children = [ChildSpec("peer", Peer.start), ChildSpec("caller", Caller.start)]
    root = start_root(registry, "root", children, max_restarts=10, period_s=60)
    yield registry
    root.stop(block=True, timeout=10)


def test_ask_from_a_handler_is_a_programming_error_that_crashes_the_actor(registry) -> None:
    before = registry.cell("caller").incarnation
    with pytest.raises(ActorCrashed, match="WaitOnActorThread"):
        registry.ask("caller", AskPeer())
    wait_until(lambda: registry.cell("caller").incarnation > before, "the caller's restart")


def test_request_with_a_continuation_answers_without_waiting(registry) -> None:
    assert registry.ask("caller", RequestPeer()) == "pongpong"


def test_ask_from_a_thread_that_is_no_actor_still_works(registry) -> None:
    assert registry.ask("peer", Ping()) == "pong"
    assert issubclass(WaitOnActorThread, RuntimeError)  # a bug, never a typed reply
