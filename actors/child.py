"""An object in a process of its own, called by one actor over a pipe: CPU-heavy or
GIL-hungry work (the HSM's token, a validator's checks) that should not queue for the
GIL of the process where the issuer, the log and the detector run Python.

Why a process: a thread of CPython holds the GIL for any Python it runs, and a C call
that lets the GIL go must take it back when it returns. In a process busy with Python
that hand-over is slow (measured here: a thread signing with SoftHSM 12,000 times a
second alone, 70 beside one busy thread). A child has a GIL of its own.

``Child.start(factory, *args)`` forks a child from the forkserver (a clean,
single-threaded parent that has imported the modules named with ``preload``), builds
``factory(*args)`` there, and answers ``call(method, *args)`` with the result of
``getattr(obj, method)(*args)`` or its exception, one call at a time. The arguments and
results travel pickled. ``close()`` calls the object's own ``close()`` (if it has one)
and ends the child. The child ends by itself when its parent goes away (its end of the
pipe closes, even on ``kill -9``).

A child that dies or does not answer within the call's timeout raises ``lost`` (the
caller's exception class, ``ChildLost`` by default) and is ended: a caller treats that
as the loss of what the child held (the HSMActor reopens its token; a validator
restarts through its supervisor, which starts a new child).

Started with ``pipelined=True``, a child also takes calls without waiting:
``submit(method, *args)`` sends the call and returns a ``Future`` at once, so the
caller can send the next before the first is answered and the child never idles
between them (a validator's process checks question after question while its actor's
thread waits for the GIL of a busy CA process). The child still answers one call at a
time, in the order sent; a reader thread of the caller's process takes the answers and
resolves the futures in that order (their callbacks run on it). ``call`` is then
``submit(...).result(timeout)``, so waiting calls and submitted ones mix in one order.
A child that dies fails every future not yet resolved with ``lost`` and, at once, tells
its owner through ``on_lost`` (a validator's actor crashes then, and its supervisor
starts a new process, before any question finds the old one dead; the HSMActor opens
its token again in a new process); one that hangs is the caller's to notice (a future
not done in time) and kill (``end``).

An object with a ``grouped()`` method (a context manager factory) has the calls that
are waiting in the pipe together (up to ``MAX_GROUP``) run inside one ``grouped()``, and
their answers sent once it ends: a validator commits the votes of questions that came
together in one transaction. If ``grouped()`` raises at its end (the commit failed),
every call in it is answered with that exception, whatever it returned.

Programs that start TrustChain's tree need the ``if __name__ == "__main__":`` guard of
every multiprocessing program.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import Any

CALL_TIMEOUT_S = 30.0  # a call that takes longer is a hung child
MAX_GROUP = 64  # calls run in one grouped() at most
START_TIMEOUT_S = 60.0  # the forkserver's first start imports a lot
_CONTEXT = multiprocessing.get_context("forkserver")
_PRELOAD: list[str] = []


class ChildLost(Exception):
    """The child process died or hung; what it held is gone."""


def preload(*modules: str) -> None:
    """Have the forkserver import ``modules`` before it forks (each child starts with
    them loaded). Takes effect if called before the first child starts."""
    for module in modules:
        if module not in _PRELOAD:
            _PRELOAD.append(module)
    _CONTEXT.set_forkserver_preload(list(_PRELOAD))


class Child:
    """``factory(*args)`` built in a child process; its methods, one pipe round trip each."""

    def __init__(
        self, process: Any, connection: Connection, lost: type[Exception], name: str
    ) -> None:
        self._process = process
        self._connection = connection
        self._lost = lost
        self.name = name
        self._pending: collections.deque[Future[Any]] | None = None  # pipelined: in order
        self._lock = threading.Lock()  # the pending futures and _gone (not the sending)
        self._gone: Exception | None = None  # pipelined: why the child is lost, once it is
        self._ending = False  # close() or end() called: the loss that follows is ours
        self._on_lost: Callable[[Exception], None] | None = None
        self._reader: threading.Thread | None = None  # pipelined: takes the answers
        self._watcher: threading.Thread | None = None  # not pipelined, with on_lost

    @classmethod
    def start(
        cls,
        name: str,
        factory: Callable[..., Any],
        *args: Any,
        lost: type[Exception] = ChildLost,
        timeout_s: float = START_TIMEOUT_S,
        pipelined: bool = False,
        on_lost: Callable[[Exception], None] | None = None,
    ) -> Child:
        """Start a child and build the object in it; what ``factory`` raised, if it did.
        ``pipelined``: calls may be ``submit``ted without waiting (the module's theory);
        ``on_lost`` is called with the ``lost`` exception as soon as the child is found
        gone (it died, or its pipe broke) without ``close()`` or ``end()``, on the reader
        thread of a pipelined child or on a thread watching the process otherwise: its
        owner need not wait for its next call to know. It may come after the owner has
        found out by itself and moved on (a call that failed), so the owner checks that
        it is about the child it still holds."""
        ours, theirs = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=_serve, args=(theirs, factory, args), name=name, daemon=True
        )
        process.start()
        theirs.close()
        child = cls(process, ours, lost, name)
        try:
            child._receive(timeout_s)  # the outcome of factory(*args) in the child
        except BaseException:
            child._end()
            raise
        if pipelined:
            child._pending = collections.deque()
            child._on_lost = on_lost
            child._reader = threading.Thread(
                target=child._read, name=f"{name}-answers", daemon=True
            )
            child._reader.start()
        elif on_lost is not None:
            child._on_lost = on_lost
            child._watcher = threading.Thread(
                target=child._watch, name=f"{name}-watch", daemon=True
            )
            child._watcher.start()
        return child

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def call(self, method: str, *args: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        """``obj.<method>(*args)`` in the child: its result, or its exception raised here."""
        if self._pending is not None:
            try:
                return self.submit(method, *args).result(timeout_s)
            except FutureTimeout:
                self._end()
                raise self._lost(
                    f"the {self.name} process did not answer in {timeout_s:g} s"
                ) from None
        try:
            self._connection.send((method, args))
        except (OSError, ValueError) as exc:
            self._end()
            raise self._lost(f"the {self.name} process is gone ({exc})") from None
        return self._receive(timeout_s)

    def submit(self, method: str, *args: Any) -> Future[Any]:
        """Send ``obj.<method>(*args)`` to a pipelined child without waiting: the future
        of its result (or exception; ``lost`` if the child is gone)."""
        assert self._pending is not None, "submit() needs a child started pipelined"
        future: Future[Any] = Future()
        # One thread submits (the caller's), so the futures are in the order of the sends.
        # The lock is not held while sending: a full pipe must not stop the reader, which
        # takes the lock for each answer (and the child, which needs its answers read).
        with self._lock:
            gone = self._gone
            if gone is None:
                self._pending.append(future)
        if gone is not None:
            future.set_exception(gone)
            return future
        try:
            self._connection.send((method, args))
        except (OSError, ValueError) as exc:
            self._lose(f"the {self.name} process is gone ({exc})")  # fails this one too
        return future

    def _read(self) -> None:
        """The reader thread of a pipelined child: each answer resolves the oldest future."""
        assert self._pending is not None
        while True:
            try:
                ok, value = self._connection.recv()
            except Exception as exc:  # EOF, a closed pipe (also closed under us), junk
                self._lose(self._ended(repr(exc)))
                return
            with self._lock:
                future = self._pending.popleft() if self._pending else None
            if future is None:
                continue  # the answer to close(): nobody waits for it
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _watch(self) -> None:
        """The watcher of a child that is not pipelined: ``on_lost`` once its process ends,
        unless its owner ended it."""
        assert self._on_lost is not None
        multiprocessing.connection.wait([self._process.sentinel])
        if not self._ending:
            self._on_lost(self._lost(self._ended()))

    def _ended(self, detail: str = "") -> str:
        """Why the child is lost, its process having ended: with its exit code, reaped
        here unless the owner is ending it (``close()`` joins it itself: one joiner at a
        time, or the exit code may be misread)."""
        if not self._ending:
            self._process.join(timeout=1)
        why = f"the {self.name} process is gone (exit code {self._process.exitcode})"
        return f"{why}: {detail}" if detail else why

    def _lose(self, why: str) -> None:
        """Fail every future not yet resolved, and every later submit, with ``lost``."""
        assert self._pending is not None
        with self._lock:
            first = self._gone is None
            if first:
                self._gone = self._lost(why)
            gone, waiting = self._gone, list(self._pending)
            self._pending.clear()
        for future in waiting:
            future.set_exception(gone)
        assert gone is not None
        if first and not self._ending and self._on_lost is not None:
            self._on_lost(gone)

    def close(self, timeout_s: float = CALL_TIMEOUT_S) -> None:
        """The object's ``close()``, then the child's end. Never raises."""
        self._ending = True
        if self._pending is not None:
            if self._gone is None:
                try:
                    self._connection.send((None, ()))
                except (OSError, ValueError):
                    pass
            self._process.join(timeout=timeout_s)  # it ends once it has closed the object
            self._end()
            return
        try:
            self._connection.send((None, ()))
            self._connection.poll(timeout_s)
        except (OSError, EOFError, ValueError):
            pass
        self._end()

    def _receive(self, timeout_s: float) -> Any:
        try:
            if not self._connection.poll(timeout_s):
                self._end()
                raise self._lost(f"the {self.name} process did not answer in {timeout_s:g} s")
            ok, value = self._connection.recv()
        except (OSError, EOFError) as exc:
            self._end()
            raise self._lost(
                f"the {self.name} process is gone (exit code {self._process.exitcode}): {exc!r}"
            ) from None
        if ok:
            return value
        raise value

    def end(self) -> None:
        """Kill the child now, without asking it to close its object (a hung child)."""
        self._ending = True
        self._connection.close()
        self._process.kill()
        self._process.join(timeout=2)

    def _end(self) -> None:
        self._ending = True
        self._connection.close()
        self._process.join(timeout=2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=2)


def _serve(connection: Connection, factory: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The child: build the object, then run what the parent asks until told to close
    (method ``None``) or until the parent is gone."""
    try:
        obj = factory(*args)
    except BaseException as exc:
        _answer(connection, False, exc)
        return
    _answer(connection, True, None)
    grouped = getattr(obj, "grouped", None)
    try:
        while True:
            try:
                calls = [connection.recv()]
                while grouped is not None and len(calls) < MAX_GROUP and connection.poll():
                    calls.append(connection.recv())
            except (EOFError, OSError):
                return
            closing = next((i for i, (method, _) in enumerate(calls) if method is None), None)
            for ok, value in _run(obj, grouped, calls[:closing]):
                _answer(connection, ok, value)
            if closing is not None:
                break
    finally:
        close = getattr(obj, "close", None)
        if close is not None:
            close()
        _answer(connection, True, None)
        os._exit(0)  # nothing of the forkserver's state to tear down


def _run(
    obj: Any, grouped: Callable[[], Any] | None, calls: list[tuple[str, tuple[Any, ...]]]
) -> list[tuple[bool, Any]]:
    """Each call's (ok, result or exception), in order; within one ``grouped()`` if the
    object has it (and every call answered with its exception if that fails at the end)."""
    if not calls:
        return []
    results: list[tuple[bool, Any]] = []
    context = contextlib.nullcontext() if grouped is None else grouped()
    try:
        with context:
            for method, call_args in calls:
                try:
                    results.append((True, getattr(obj, method)(*call_args)))
                except BaseException as exc:
                    results.append((False, exc))
    except BaseException as exc:  # the group's end failed: nothing in it holds
        return [(False, exc)] * len(calls)
    return results


def _answer(connection: Connection, ok: bool, value: Any) -> None:
    try:
        connection.send((ok, value))
    except (OSError, ValueError):
        pass  # the parent is gone
    except Exception as exc:  # an exception that does not pickle: say what it was
        connection.send((False, RuntimeError(f"{type(value).__name__}: {value} ({exc})")))
