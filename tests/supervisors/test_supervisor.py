"""Supervision semantics, in the spirit of OTP's supervisor_SUITE, with small actors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from trustchain.supervisors import (
    ActorCrashed,
    ActorState,
    ActorUnavailable,
    Backoff,
    ChildSpec,
    ChildStartFailed,
    FakeClock,
    InvalidRequest,
    Message,
    Registry,
    Restart,
    RestartChild,
    Strategy,
    SupervisedActor,
    handles,
    start_root,
    supervisor_spec,
)

from ..conftest import wait_until


@dataclass(frozen=True)
class Ping(Message):
    pass


@dataclass(frozen=True)
class Crash(Message):
    pass


@dataclass(frozen=True)
class Refuse(Message):
    pass


@dataclass(frozen=True)
class StopSelf(Message):
    pass


@dataclass(frozen=True)
class Sleep(Message):
    seconds: float


class Echo(SupervisedActor):
    def __init__(self, ctx: Any, log: list[tuple[str, str]], fail_setup: Callable[[], bool]):
        super().__init__(ctx)
        self.log = log
        self.fail_setup = fail_setup

    def setup(self) -> None:
        if self.fail_setup():
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(("start", self.name))

    def cleanup(self) -> None:
        self.log.append(("stop", self.name))

    @handles(Ping)
    def ping(self, msg: Ping) -> str:
        return self.name

    @handles(Crash)
    def crash(self, msg: Crash) -> None:
        raise RuntimeError("boom")

    @handles(Refuse)
    def refuse(self, msg: Refuse) -> None:
        raise InvalidRequest("refused on purpose")

    @handles(StopSelf)
    def stop_self(self, msg: StopSelf) -> str:
        self.stop()
        return "stopping"

    @handles(Sleep)
    def sleep(self, msg: Sleep) -> None:
        time.sleep(msg.seconds)


class Tree:
    """A registry, a log of starts/stops, and helpers to build and observe a tree."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.log: list[tuple[str, str]] = []
        self.failing: set[str] = set()
        self.gave_up: list[str] = []
        self.root: Any = None

    def spec(self, name: str, restart: Restart = Restart.PERMANENT) -> ChildSpec:
        def factory(ctx: Any) -> Any:
            return Echo.start(ctx, self.log, lambda: name in self.failing)

        return ChildSpec(name, factory, restart, shutdown_timeout_s=2.0, start_timeout_s=5.0)

    def start(self, children: list[ChildSpec], **kwargs: Any) -> None:
        self.root = start_root(
            self.registry, "root", children, on_give_up=self.gave_up.append, **kwargs
        )

    def stop(self) -> None:
        if self.root is not None and self.root.is_alive():
            self.root.stop(block=True, timeout=10)

    def ask(self, name: str, message: Message) -> Any:
        return self.registry.ask(name, message, timeout=5)

    def incarnation(self, name: str) -> int:
        return self.registry.cell(name).incarnation

    def wait_running(self, name: str, after: int, timeout: float = 5.0) -> None:
        """Wait (bounded) until ``name`` runs as an incarnation newer than ``after``."""
        cell = self.registry.cell(name)
        wait_until(lambda: cell.incarnation > after and cell.state is ActorState.RUNNING,
                   f"{name} to run again as an incarnation after {after}", timeout)  # fmt: skip

    def wait_state(self, name: str, state: ActorState, timeout: float = 5.0) -> None:
        wait_until(
            lambda: self.registry.cell(name).state is state, f"{name} to be {state}", timeout
        )


@pytest.fixture
def tree():
    t = Tree()
    yield t
    t.stop()


def test_domain_error_goes_back_to_caller_and_actor_lives_on(tree: Tree) -> None:
    tree.start([tree.spec("a")])
    with pytest.raises(InvalidRequest, match="refused on purpose"):
        tree.ask("a", Refuse())
    assert tree.ask("a", Ping()) == "a"
    assert tree.registry.cell("a").restarts == 0


def test_crash_answers_actor_crashed_and_restart_keeps_the_address(tree: Tree) -> None:
    tree.start([tree.spec("a")])
    before = tree.incarnation("a")
    with pytest.raises(ActorCrashed, match="RuntimeError: boom"):
        tree.ask("a", Crash())
    tree.wait_running("a", before)
    assert tree.ask("a", Ping()) == "a"
    health = tree.registry.cell("a").health()
    assert health["restarts"] == 1
    assert health["last_failure"]["type"] == "RuntimeError"
    assert health["last_failure"]["message"] == "boom"


def test_children_start_in_order_and_stop_in_reverse(tree: Tree) -> None:
    tree.start([tree.spec("a"), tree.spec("b"), tree.spec("c")])
    tree.stop()
    assert tree.log == [
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
        ("stop", "c"),
        ("stop", "b"),
        ("stop", "a"),
    ]
    assert {tree.registry.cell(n).state for n in "abc"} == {ActorState.STOPPED}


def test_one_for_one_restarts_only_the_failed_child(tree: Tree) -> None:
    tree.start([tree.spec("a"), tree.spec("b"), tree.spec("c")])
    before = {n: tree.incarnation(n) for n in "abc"}
    with pytest.raises(ActorCrashed):
        tree.ask("b", Crash())
    tree.wait_running("b", before["b"])
    assert tree.incarnation("a") == before["a"]
    assert tree.incarnation("c") == before["c"]


def test_one_for_all_restarts_every_child(tree: Tree) -> None:
    tree.start([tree.spec("a"), tree.spec("b"), tree.spec("c")], strategy=Strategy.ONE_FOR_ALL)
    before = {n: tree.incarnation(n) for n in "abc"}
    tree.log.clear()
    with pytest.raises(ActorCrashed):
        tree.ask("b", Crash())
    for n in "abc":
        tree.wait_running(n, before[n])
    # b went down by itself; the others were stopped in reverse order, then all started in order.
    assert tree.log == [
        ("stop", "b"),
        ("stop", "c"),
        ("stop", "a"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]


def test_rest_for_one_restarts_later_siblings_only(tree: Tree) -> None:
    tree.start([tree.spec("a"), tree.spec("b"), tree.spec("c")], strategy=Strategy.REST_FOR_ONE)
    before = {n: tree.incarnation(n) for n in "abc"}
    with pytest.raises(ActorCrashed):
        tree.ask("b", Crash())
    tree.wait_running("b", before["b"])
    tree.wait_running("c", before["c"])
    assert tree.incarnation("a") == before["a"]


def test_transient_child_is_restarted_after_a_crash_but_not_after_a_normal_stop(
    tree: Tree,
) -> None:
    """On a FakeClock with a backoff, so a restart is either made at once or
    scheduled on the clock: once the supervisor has handled the exit notice, a
    wrong restart shows (a new incarnation, or a pending timer) without waiting."""
    clock = FakeClock()
    tree.start([tree.spec("t", Restart.TRANSIENT)], clock=clock,
               backoff=Backoff(min_s=1.0, max_s=1.0))  # fmt: skip
    supervisor = tree.registry.cell("root")
    handled = supervisor.handled
    before = tree.incarnation("t")
    with pytest.raises(ActorCrashed):
        tree.ask("t", Crash())
    wait_until(lambda: clock.pending == 1, "the crashed child's restart to be scheduled")
    clock.advance(1.0)
    tree.wait_running("t", before)
    # The exit notice and the restart it scheduled, both handled by the supervisor.
    wait_until(lambda: supervisor.handled == handled + 2, "the supervisor to finish the restart")
    stopped = tree.incarnation("t")
    assert tree.ask("t", StopSelf()) == "stopping"
    wait_until(lambda: supervisor.handled == handled + 3, "the supervisor to handle the stop")
    assert clock.pending == 0  # no restart scheduled ...
    assert tree.incarnation("t") == stopped  # ... nor made at once
    clock.advance(3600.0)
    assert tree.registry.cell("t").state is ActorState.STOPPED
    assert tree.incarnation("t") == stopped
    with pytest.raises(ActorUnavailable, match="stopped"):
        tree.ask("t", Ping())


def test_temporary_child_is_never_restarted(tree: Tree) -> None:
    tree.start([tree.spec("tmp", Restart.TEMPORARY), tree.spec("p")])
    with pytest.raises(ActorCrashed):
        tree.ask("tmp", Crash())
    tree.wait_state("tmp", ActorState.FAILED)
    with pytest.raises(ActorUnavailable):
        tree.ask("tmp", Ping())
    assert tree.ask("p", Ping()) == "p"


def test_permanent_child_is_restarted_after_a_normal_stop(tree: Tree) -> None:
    tree.start([tree.spec("p")])
    before = tree.incarnation("p")
    tree.ask("p", StopSelf())
    tree.wait_running("p", before)


def test_root_past_its_intensity_gives_up_naming_the_child(tree: Tree) -> None:
    tree.start([tree.spec("a"), tree.spec("b")], max_restarts=2, period_s=60)
    for _ in range(3):
        before = tree.incarnation("a")
        with pytest.raises(ActorCrashed):
            tree.ask("a", Crash())
        if _ < 2:
            tree.wait_running("a", before)
    wait_until(lambda: tree.gave_up, "the root to give up")
    assert "child 'a' needed 3 restarts within 60 s (max_restarts=2)" in tree.gave_up[0]
    assert "RuntimeError: boom" in tree.gave_up[0]
    # Everything below the root was stopped, leaf first.
    assert tree.registry.cell("b").state is ActorState.STOPPED


def test_nested_supervisor_escalates_and_its_parent_restarts_it(tree: Tree) -> None:
    inner = supervisor_spec("inner", [tree.spec("x"), tree.spec("y")], max_restarts=1, period_s=60)
    tree.start([tree.spec("a"), inner], max_restarts=5, period_s=60)
    inner_before = tree.incarnation("inner")
    a_before = tree.incarnation("a")
    for _ in range(2):
        before = tree.incarnation("x")
        with pytest.raises(ActorCrashed):
            tree.ask("x", Crash())
        tree.wait_running("x", before)
    tree.wait_running("inner", inner_before)
    assert tree.registry.cell("inner").restarts == 1
    assert tree.registry.cell("inner").last_failure.type == "SupervisorGaveUp"
    assert tree.ask("y", Ping()) == "y"
    assert tree.incarnation("a") == a_before
    assert not tree.gave_up


def test_requests_queued_behind_a_crash_are_answered_never_dropped(tree: Tree) -> None:
    tree.start([tree.spec("a")])
    results: list[Any] = []
    done = threading.Event()

    def reply(result: Any) -> None:
        results.append(result)
        if len(results) == 51:
            done.set()

    tree.registry.tell("a", Sleep(0.05), reply)
    tree.registry.tell("a", Crash(), reply)
    for _ in range(49):
        tree.registry.tell("a", Ping(), reply)
    assert done.wait(5), f"only {len(results)} of 51 requests were answered"
    errors = [type(r.error).__name__ for r in results if hasattr(r, "error")]
    assert errors.count("ActorCrashed") == 1
    assert errors.count("ActorUnavailable") == 49


def test_request_to_a_restarting_actor_gets_an_error_at_once(tree: Tree) -> None:
    tree.start([tree.spec("a")], max_restarts=100, period_s=60)
    tree.failing.add("a")  # every restart attempt now fails in setup()
    with pytest.raises(ActorCrashed):
        tree.ask("a", Crash())
    tree.wait_state("a", ActorState.STARTING)
    answered: list[Any] = []
    tree.registry.tell("a", Ping(), answered.append)
    # Refused on the calling thread, before tell() returned: nothing waits on a down actor.
    assert len(answered) == 1
    assert isinstance(answered[0].error, ActorUnavailable)
    tree.failing.clear()


def test_a_child_that_cannot_start_fails_the_tree_start(tree: Tree) -> None:
    tree.failing.add("b")
    with pytest.raises(ChildStartFailed, match="b cannot start"):
        tree.start([tree.spec("a"), tree.spec("b")])
    assert ("stop", "a") in tree.log


@dataclass(frozen=True)
class Tick(Message):
    pass


class Ticker(SupervisedActor):
    def __init__(self, ctx: Any, ticks: list[int]) -> None:
        super().__init__(ctx)
        self.ticks = ticks

    def setup(self) -> None:
        self.every(0.01, Tick())

    @handles(Tick)
    def tick(self, msg: Tick) -> None:
        self.ticks.append(self.context.incarnation)

    @handles(Ping)
    def ping(self, msg: Ping) -> None:
        return None  # answered after every tick queued before it (FIFO)

    @handles(Crash)
    def crash(self, msg: Crash) -> None:
        raise RuntimeError("boom")


def test_every_ticks_on_the_actor_thread_and_stops_with_the_incarnation() -> None:
    registry, clock = Registry(), FakeClock()
    ticks: list[int] = []
    spec = ChildSpec("ticker", lambda ctx: Ticker.start(ctx, ticks))
    root = start_root(registry, "root", [spec], clock=clock)

    def advance() -> None:
        clock.advance(0.01)  # queues one tick ...
        registry.ask("ticker", Ping(), timeout=5)  # ... handled before this answer

    try:
        for _ in range(3):
            advance()
        first = registry.cell("ticker").incarnation
        assert ticks == [first] * 3
        with pytest.raises(ActorCrashed):
            registry.ask("ticker", Crash())
        cell = registry.cell("ticker")
        wait_until(lambda: cell.incarnation == first + 1 and cell.state is ActorState.RUNNING,
                   "the ticker to restart")  # fmt: skip
        assert clock.pending == 1  # the old incarnation's timer was cancelled with it
        for _ in range(5):
            advance()
        assert ticks == [first] * 3 + [first + 1] * 5  # only the new incarnation ticks
    finally:
        root.stop(block=True, timeout=10)


@dataclass(frozen=True)
class Flush(Message):
    pass


class Deferring(SupervisedActor):
    """Answers every ping later, all at once, on ``flush`` (like a batching actor)."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.waiting: list[Any] = []

    @handles(Ping)
    def ping(self, msg: Ping) -> None:
        self.waiting.append(self.defer())

    @handles(Refuse)
    def sync(self, msg: Refuse) -> None:
        return None  # answered at once: the caller knows earlier pings were handled

    @handles(Flush)
    def flush(self, msg: Flush) -> int:
        waiting, self.waiting = self.waiting, []
        for answer in waiting:
            answer(__import__("outcome").Value("pong"))
        return len(waiting)


def test_every_deferred_request_is_answered_even_when_envelopes_are_recycled() -> None:
    registry = Registry()
    root = start_root(registry, "root", [ChildSpec("d", lambda ctx: Deferring.start(ctx))])
    try:
        answered: list[Any] = []
        for _ in range(5):
            for _ in range(100):
                registry.tell("d", Ping(), answered.append)
                registry.ask("d", Refuse())  # each ping's envelope is dead before the next
            registry.ask("d", Flush())
        assert len(answered) == 500
        assert {r.unwrap() for r in answered} == {"pong"}
    finally:
        root.stop(block=True, timeout=10)


def test_backed_off_restarts_outlast_a_fault_that_would_exhaust_an_immediate_loop(
    tree: Tree,
) -> None:
    """A child that cannot start for 0.3 s (of fake time): five immediate retries are
    gone at once (the root gives up, next test), backed-off ones at 0.05, 0.15 and
    0.35 s (delays 0.05, 0.1, 0.2) span the fault and the third brings the child back."""
    clock = FakeClock()
    tree.start([tree.spec("a")], max_restarts=5, period_s=60, clock=clock,
               backoff=Backoff(min_s=0.05, max_s=0.4, jitter=0.0))  # fmt: skip
    tree.failing.add("a")
    before = tree.incarnation("a")
    with pytest.raises(ActorCrashed):
        tree.ask("a", Crash())
    start = clock.monotonic()
    while clock.monotonic() - start < 0.3 - 1e-9:  # the fault lasts this long
        wait_until(lambda: clock.pending == 1, "the next restart to be scheduled")
        clock.advance(0.01)
    assert tree.incarnation("a") - before == 2  # two failed starts, each backed off
    tree.failing.clear()
    wait_until(lambda: clock.pending == 1, "the next restart to be scheduled")
    clock.advance(0.1)  # past 0.35 s
    tree.wait_running("a", before, timeout=5)
    assert not tree.gave_up
    assert tree.incarnation("a") - before == 3
    assert tree.ask("a", Ping()) == "a"


def test_without_backoff_the_same_fault_exhausts_the_intensity(tree: Tree) -> None:
    tree.start([tree.spec("a")], max_restarts=5, period_s=60)
    tree.failing.add("a")
    with pytest.raises(ActorCrashed):
        tree.ask("a", Crash())
    wait_until(lambda: tree.gave_up, "the root to give up")
    assert "needed 6 restarts" in tree.gave_up[0]


def test_a_child_waiting_out_its_backoff_is_restarting_and_refuses_at_once(tree: Tree) -> None:
    from trustchain.supervisors import Backoff

    tree.start([tree.spec("a")], backoff=Backoff(min_s=30.0, max_s=30.0))
    with pytest.raises(ActorCrashed):
        tree.ask("a", Crash())
    tree.wait_state("a", ActorState.RESTARTING)
    with pytest.raises(ActorUnavailable):
        tree.ask("a", Ping())
    # An operator restart does not wait for the backoff, and stopping the tree
    # cancels the pending timer (the fixture's stop would hang otherwise).
    before = tree.incarnation("a")
    tree.registry.ask("root", RestartChild("a"), timeout=5)
    tree.wait_running("a", before)


def test_operator_restarts_do_not_count_towards_intensity(tree: Tree) -> None:
    tree.start([tree.spec("a")], max_restarts=1, period_s=60)
    for _ in range(5):
        before = tree.incarnation("a")
        tree.registry.ask("root", RestartChild("a"), timeout=5)
        tree.wait_running("a", before)
    assert not tree.gave_up
    assert tree.registry.cell("a").restarts == 5
