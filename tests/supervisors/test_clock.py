"""The injected clock: a fake one moves only when told, and drives the runtime's timers
(``every``, ``after``, backed-off restarts) deterministically."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from trustchain.supervisors import (
    Backoff,
    ChildSpec,
    FakeClock,
    Message,
    Registry,
    SupervisedActor,
    handles,
    start_root,
)
from trustchain.supervisors.clock import SystemClock

from ..conftest import wait_until


def test_advance_runs_due_callbacks_in_time_order_and_skips_cancelled_ones() -> None:
    clock = FakeClock()
    ran: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: ran.append(("b", clock.monotonic())))
    clock.call_later(1.0, lambda: ran.append(("a", clock.monotonic())))
    clock.call_later(1.5, lambda: ran.append(("x", clock.monotonic()))).cancel()
    start = clock.monotonic()
    clock.advance(1.9)
    assert ran == [("a", start + 1.0)]
    clock.advance(0.1)
    assert ran == [("a", start + 1.0), ("b", start + 2.0)]
    assert clock.pending == 0 and clock.monotonic() == start + 2.0


def test_the_system_clock_runs_timers_in_due_order_on_one_thread_and_skips_cancelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = SystemClock()
    ran: list[tuple[str, str]] = []
    done = threading.Event()

    def record(name: str) -> Callable[[], None]:
        return lambda: ran.append((name, threading.current_thread().name))

    def boom() -> None:
        raise RuntimeError("a callback's own bug")

    clock.call_later(0.2, lambda: (ran.append(("last", "")), done.set()))
    clock.call_later(0.1, record("b"))
    clock.call_later(0.05, boom)  # reported; the timers after it still run
    clock.call_later(0.0, record("a"))  # due before what the thread waits for
    clock.call_later(0.08, record("x")).cancel()
    assert done.wait(5)
    assert [name for name, _ in ran] == ["a", "b", "last"]
    assert {thread for _, thread in ran[:2]} == {"trustchain-timers"}
    assert "a callback's own bug" in capsys.readouterr().err


def test_wall_time_moves_with_monotonic_time() -> None:
    clock = FakeClock(wall=1_800_000_000.0)
    before = clock.now()
    clock.advance(90)
    assert (clock.now() - before).total_seconds() == 90
    assert clock.time() == 1_800_000_090.0


@dataclass(frozen=True)
class Tick(Message):
    pass


@dataclass(frozen=True)
class Count(Message):
    pass


@dataclass(frozen=True)
class Later(Message):
    pass


class Ticker(SupervisedActor):
    def setup(self) -> None:
        self.ticks = 0
        self.every(10.0, Tick())

    @handles(Tick)
    def tick(self, msg: Tick) -> None:
        self.ticks += 1

    @handles(Later)
    def later(self, msg: Later) -> None:
        self.after(5.0, Tick())

    @handles(Count)
    def count(self, msg: Count) -> int:
        return self.ticks


def start(clock: FakeClock, **kwargs: Any) -> tuple[Registry, Any]:
    registry = Registry()
    spec = ChildSpec("ticker", lambda ctx: Ticker.start(ctx))
    return registry, start_root(registry, "root", [spec], clock=clock, **kwargs)


def test_every_ticks_once_per_interval_of_fake_time_and_never_otherwise() -> None:
    clock = FakeClock()
    registry, root = start(clock)
    try:
        assert registry.ask("ticker", Count()) == 0
        clock.advance(9.999)
        assert registry.ask("ticker", Count()) == 0  # no tick before its time, deterministically
        clock.advance(0.001)
        assert registry.ask("ticker", Count()) == 1  # FIFO: the tick was queued before the ask
        for expected in (2, 3):
            clock.advance(10.0)
            assert registry.ask("ticker", Count()) == expected
        registry.ask("ticker", Later())  # at 30 s: one more tick at 35 s, before every()'s 40 s
        clock.advance(5.0)
        assert registry.ask("ticker", Count()) == 4
    finally:
        root.stop(block=True, timeout=10)
    assert clock.pending == 0  # going down cancelled the actor's timers


def test_a_backed_off_restart_waits_for_fake_time() -> None:
    from trustchain.supervisors import ActorState

    clock = FakeClock()
    registry, root = start(clock, backoff=Backoff(min_s=30.0, max_s=30.0))
    try:
        cell = registry.cell("ticker")
        cell.ref.stop(block=True)  # a normal stop: permanent children come back
        wait_until(lambda: clock.pending == 1, "the supervisor to schedule the restart")
        assert cell.state is ActorState.RESTARTING
        clock.advance(29.9)
        assert cell.state is ActorState.RESTARTING  # not a moment early
        clock.advance(0.1)
        wait_until(
            lambda: cell.state is ActorState.RUNNING, "the restart, on the supervisor's thread"
        )
        assert registry.ask("ticker", Count(), timeout=5) == 0
    finally:
        root.stop(block=True, timeout=10)
