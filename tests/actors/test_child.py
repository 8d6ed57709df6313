"""``actors/child.py``: an object in a process of its own, called over a pipe, and its
pipelined mode (calls sent without waiting, answered in order): with real child
processes (a ``dict`` and a ``threading.Event`` built in the child), killed for real;
and how calls that waited together run in one ``grouped()``."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from trustchain.actors.child import Child, ChildLost, _run

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


def test_a_child_that_dies_tells_its_owner_at_once_one_ended_by_its_owner_does_not() -> None:
    """``on_lost`` is called (on the reader thread) when the child dies with nothing
    asked of it, once; not when the owner ends it (``close``, ``end``, a call's timeout)."""
    lost: list[Exception] = []
    told = threading.Event()

    def on_lost(exc: Exception) -> None:
        lost.append(exc)
        told.set()

    child = Child.start("test-dict", dict, pipelined=True, on_lost=on_lost)
    try:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        assert told.wait(WAIT_S)
        assert isinstance(child.submit("get", "k").exception(WAIT_S), ChildLost)
    finally:
        child.close()
    assert len(lost) == 1 and isinstance(lost[0], ChildLost)
    assert "exit code -9" in str(lost[0])
    for end in (Child.close, Child.end, lambda c: c.call("wait", WAIT_S, timeout_s=0.2)):
        child = Child.start("test-event", threading.Event, pipelined=True, on_lost=on_lost)
        with contextlib.suppress(ChildLost):
            end(child)
        child._reader.join(WAIT_S)  # the reader has seen the pipe close
        child.close()
    assert len(lost) == 1


def test_a_child_not_pipelined_that_dies_is_watched_for_too() -> None:
    """Without a reader thread, a thread watching the process calls ``on_lost``; not
    when the owner closes the child."""
    lost: list[Exception] = []
    told = threading.Event()

    def on_lost(exc: Exception) -> None:
        lost.append(exc)
        told.set()

    child = Child.start("test-dict", dict, on_lost=on_lost)
    try:
        assert child.call("setdefault", "k", 1) == 1
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        assert told.wait(WAIT_S)
        with pytest.raises(ChildLost):
            child.call("get", "k", timeout_s=WAIT_S)
    finally:
        child.close()
    assert len(lost) == 1 and "exit code -9" in str(lost[0])
    for end in (Child.close, Child.end):
        child = Child.start("test-dict", dict, on_lost=on_lost)
        end(child)
        assert child._watcher is not None
        child._watcher.join(WAIT_S)  # it has seen the process end
        assert not child._watcher.is_alive()
    assert len(lost) == 1


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


def test_calls_that_came_together_run_in_one_group_and_a_failed_group_fails_them_all() -> None:
    """``_run``, what the child's loop does with the calls it found waiting together
    (in-process: a class of a test module may not be importable by the forkserver)."""
    obj = Grouping()
    results = _run(obj, obj.grouped, [("add", (i,)) for i in range(10)] + [("nope", ())])
    assert results[:10] == [(True, i) for i in range(10)]
    assert results[10][0] is False and isinstance(results[10][1], AttributeError)
    assert obj.groups == [list(range(10))]  # one group: one commit for all
    doomed = _run(obj, obj.grouped, [("add", ("a",)), ("fail_at_end", ()), ("add", ("b",))])
    assert [ok for ok, _ in doomed] == [False] * 3  # each answered with the group's failure
    assert all(isinstance(error, OSError) for _, error in doomed)
    assert _run(obj, obj.grouped, [("add", ("after",))]) == [(True, "after")]  # it goes on
    assert _run(dict(), None, [("get", ("k", 1))]) == [(True, 1)]  # no grouped(): one by one
