"""Time, passed in: what the runtime and every actor read instead of ``time`` and
``datetime.now``, so that tests drive it.

A :class:`Clock` tells monotonic time (for intervals and deadlines), wall time
(seconds since the epoch, and as an aware UTC ``datetime``) and runs callbacks
later (``call_later``: the runtime's ``every()``, ``after()`` and backed-off
restarts). :class:`SystemClock` is the real one; :class:`FakeClock` moves only
when a test calls :meth:`FakeClock.advance`, which runs every callback that
falls due, in time order, on the test's own thread (as trio's ``MockClock``
lets a test jump time instead of sleeping).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    def now(self) -> datetime:
        """Wall-clock time as an aware UTC datetime."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback`` once, ``seconds`` from now, on a thread of the clock's."""
        ...


class _Call:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SystemClock:
    """The real clock. ``call_later`` runs every callback on one timer thread of the
    clock's (started at the first call), in due order: a timer costs a heap entry,
    not a thread (the detector sets a deadline for every decision). Callbacks must be
    quick (the runtime's only ``tell`` a message); one that raises is reported on
    stderr and the others still run."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._calls: list[tuple[float, int, _Call, Callable[[], None]]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable:
        call = _Call()
        due = time.monotonic() + max(0.0, seconds)
        with self._cond:
            heapq.heappush(self._calls, (due, next(self._order), call, callback))
            if self._thread is None:
                # A daemon: a pending timer never keeps the process alive.
                self._thread = threading.Thread(
                    target=self._run, name="trustchain-timers", daemon=True
                )
                self._thread.start()
            elif self._calls[0][2] is call:
                self._cond.notify()  # due before what the thread waits for
        return call

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._calls and self._calls[0][0] <= now:
                        _, _, call, callback = heapq.heappop(self._calls)
                        break
                    self._cond.wait(self._calls[0][0] - now if self._calls else None)
            if call.cancelled:
                continue
            try:
                callback()
            except Exception:
                traceback.print_exc()  # a bug of the callback's; the next timers still run


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told to; callbacks run inside :meth:`advance`."""

    def __init__(self, monotonic: float = 1_000.0, wall: float = 1_800_000_000.0) -> None:
        self._monotonic = monotonic
        self._offset = wall - monotonic
        self._lock = threading.Lock()
        self._calls: list[tuple[float, int, _Call, Callable[[], None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def time(self) -> float:
        return self.monotonic() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable:
        call = _Call()
        with self._lock:
            due = self._monotonic + max(0.0, seconds)
            heapq.heappush(self._calls, (due, next(self._order), call, callback))
        return call

    @property
    def pending(self) -> int:
        """Callbacks scheduled and not cancelled."""
        with self._lock:
            return sum(1 for _, _, call, _ in self._calls if not call.cancelled)

    def advance(self, seconds: float) -> None:
        """Move time forward, running each callback due on the way at its own time."""
        with self._lock:
            target = self._monotonic + seconds
        while True:
            with self._lock:
                if not self._calls or self._calls[0][0] > target:
                    self._monotonic = target
                    return
                due, _, call, callback = heapq.heappop(self._calls)
                self._monotonic = max(self._monotonic, due)
            if not call.cancelled:
                callback()
