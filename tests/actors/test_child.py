"""``actors/child.py``: an object in a process of its own, called over a pipe, and its
pipelined mode (calls sent without waiting, answered in order): with real child
processes (a ``dict``, a ``threading.Event`` and a ``Grouping`` built in the child),
killed for real; calls waiting together run in one ``grouped()``."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from trustchain.actors.child import Child, ChildLost

WAIT_S = 30.0  # a bound on a failure, not a timing assertion


@pytest.fixture
def pipelined_dict() -> Iterator[Child]:
    child = Child.start("test-dict", dict, pipelined=True)
    yield child
    child.close()


def test_submitted_calls_are_answered_in_order_each_with_its_own_result(
    pipelined_dict: Child,
) -> None:
    futures = [pipelined_dict.submit("setdefault", f"k{i}", i) for i in range(50)]
    missing = pipelined_dict.submit("__getitem__", "nope")
    after = pipelined_dict.submit("get", "k7")
    assert [f.result(WAIT_S) for f in futures] == list(range(50))
    assert isinstance(missing.exception(WAIT_S), KeyError)  # the child's exception, here
    assert after.result(WAIT_S) == 7  # and the calls after it go on


def test_big_calls_and_answers_in_both_directions_at_once_do_not_stall(
    pipelined_dict: Child,
) -> None:
    """More than the pipe holds, each way: the submitting thread blocks on a full pipe
    while the reader keeps taking answers (it must not need what the sender holds)."""
    value = b"x" * 200_000  # setdefault answers with it: as big back as forth
    futures = [pipelined_dict.submit("setdefault", i, value) for i in range(100)]
    assert all(f.result(WAIT_S) == value for f in futures)


def test_waiting_calls_and_submitted_ones_keep_one_order(pipelined_dict: Child) -> None:
    first = pipelined_dict.submit("setdefault", "k", "first")
    assert pipelined_dict.call("setdefault", "k", "second") == "first"
    assert first.result(WAIT_S) == "first"
    assert pipelined_dict.call("__len__") == 1


def test_a_killed_child_fails_every_call_in_flight_and_every_later_one() -> None:
    child = Child.start("test-event", threading.Event, pipelined=True)
    try:
        stuck = child.submit("wait", WAIT_S)  # the child blocks in it
        queued = child.submit("is_set")
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        assert isinstance(stuck.exception(WAIT_S), ChildLost)
        assert isinstance(queued.exception(WAIT_S), ChildLost)
        assert isinstance(child.submit("is_set").exception(WAIT_S), ChildLost)
        with pytest.raises(ChildLost):
            child.call("is_set", timeout_s=WAIT_S)
    finally:
        child.close()


def test_a_call_that_is_not_answered_in_time_is_lost_and_ends_the_child() -> None:
    child = Child.start("test-event", threading.Event, pipelined=True)
    try:
        with pytest.raises(ChildLost, match="did not answer"):
            child.call("wait", WAIT_S, timeout_s=0.2)
        assert isinstance(child.submit("is_set").exception(WAIT_S), ChildLost)
    finally:
        child.close()


def test_close_ends_a_pipelined_child_with_calls_answered_first(pipelined_dict: Child) -> None:
    done = pipelined_dict.submit("setdefault", "k", 1)
    pipelined_dict.close()
    assert done.result(WAIT_S) == 1
    assert pipelined_dict._process.exitcode == 0  # it closed its object and exited


def test_a_child_not_started_pipelined_refuses_submit() -> None:
    child = Child.start("test-dict", dict)
    try:
        assert child.call("setdefault", "k", 1) == 1
        with pytest.raises(AssertionError, match="pipelined"):
            child.submit("get", "k")
    finally:
        child.close()


class Grouping:
    """An object with ``grouped()``: it records the calls each group ran, and a group
    told to (``fail_at_end``) raises as it ends, as a failed commit would."""

    def __init__(self) -> None:
        self.groups: list[list[object]] = []
        self._open: list[object] | None = None
        self._fail = False

    @contextlib.contextmanager
    def grouped(self) -> Iterator[None]:
        self._open = []
        yield
        self.groups.append(self._open)
        self._open, fail, self._fail = None, self._fail, False
        if fail:
            raise OSError("the group's commit failed")

    def add(self, value: object) -> object:
        assert self._open is not None
        self._open.append(value)
        return value

    def fail_at_end(self) -> None:
        self._fail = True

    def hold(self, entered: str, go: str) -> None:
        """Say it is running (``entered`` made), then wait for the file ``go``."""
        Path(entered).touch()
        deadline = time.monotonic() + WAIT_S
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.001)

    def seen(self) -> list[list[object]]:
        return [list(group) for group in self.groups]  # (answered after its group ends)


def _while_held(child: Child, tmp: Path, calls: list[tuple[Any, ...]]) -> list[Future[Any]]:
    """Submit ``calls`` while the child is inside ``hold``, so that all of them are in
    the pipe when it next reads: they come together."""
    entered, go = tmp / "entered", tmp / "go"
    entered.unlink(missing_ok=True)
    go.unlink(missing_ok=True)
    held = child.submit("hold", str(entered), str(go))
    deadline = time.monotonic() + WAIT_S
    while not entered.exists():
        assert time.monotonic() < deadline, "the child never held"
        time.sleep(0.001)
    futures = [child.submit(*call) for call in calls]  # sent: in the pipe
    go.touch()
    assert held.result(WAIT_S) is None
    return futures


def test_calls_waiting_together_run_in_one_group_and_a_failed_group_fails_them_all(
    tmp_path: Path,
) -> None:
    child = Child.start("test-grouping", Grouping, pipelined=True)
    try:
        together = _while_held(child, tmp_path, [("add", i) for i in range(10)])
        assert [f.result(WAIT_S) for f in together] == list(range(10))
        assert child.call("seen")[-1] == list(range(10))  # one group: one commit for all
        doomed = _while_held(child, tmp_path, [("add", "a"), ("fail_at_end",), ("add", "b")])
        for future in doomed:  # each answered with the group's failure, whatever it returned
            assert isinstance(future.exception(WAIT_S), OSError)
        assert child.call("add", "after") == "after"  # the next group goes on
    finally:
        child.close()
