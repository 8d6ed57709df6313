"""The supervised actor: a pykka ``ThreadingActor`` that fails the OTP way.

pykka alone keeps an actor alive when an ``ask`` raises and tells nobody when
a ``tell`` kills it (see DESIGN.md). Here every request is a ``tell`` of an
:class:`~trustchain.supervisors.registry.Envelope` carrying a reply callable,
and the rules are:

* a handler returns a value -> the caller gets it;
* a handler raises ``TrustChainError`` -> the caller gets that typed error and
  the actor lives on (the error is the caller's fault, not the actor's);
* a handler raises anything else -> the caller gets ``ActorCrashed``, the actor
  stops, every request still in its mailbox is answered ``ActorUnavailable``,
  and its supervisor is told, which decides whether to restart it.

``setup()`` runs on the actor's own thread before the first message (acquire
resources, reload durable state: crash-only, a restart and a cold boot take the
same path); ``cleanup()`` runs on the way down, whatever the reason.

A handler that cannot answer at once (it waits on another actor) calls
:meth:`SupervisedActor.defer` and answers later through the callable it got;
:meth:`SupervisedActor.request` sends to another actor and runs a continuation
back on this actor's thread with the outcome, so the thread never blocks.

Starting never waits either: the thread is marked as an actor's (``Registry.ask``
raises ``WaitOnActorThread``) before ``setup()`` runs. A start that needs another
actor's answer (a key from the HSM, a peer's acknowledgement) calls
:meth:`SupervisedActor.starting` in ``setup()``, ``request()``s what it needs and
finishes in its continuations with :meth:`SupervisedActor.ready` (or
:meth:`SupervisedActor.start_failed`). Meanwhile the cell stays ``starting``:
requests from others are refused at once, only the actor's own continuations and
timers reach it, and its supervisor is still waiting (``start_timeout_s``), so
start order holds (OTP's ``start_link``: the next sibling starts once this one is
ready). An exception in such a continuation fails the start exactly as one
raised by ``setup()`` does. Without ``starting()`` the actor is ready when
``setup()`` returns.

The mailbox has two lanes: messages marked ``query`` (reads that change nothing,
``Message.query``) are taken before the others, so that a busy actor (the detector
with hundreds of votes queued) answers a read in the time of one message. A read
that cannot afford even that (a DNS listener's every query) needs no message: the
actor ``publish``es an immutable value, replaced whole, that other threads read
from its registry cell (``Registry.published``); going down unpublishes it.

Faults of the environment (``report_fault``, ``clear_fault``): ``faults.py``.
"""

from __future__ import annotations

import collections
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

import outcome
import pykka
from loguru import logger

from trustchain.supervisors.backoff import NO_BACKOFF, Backoff
from trustchain.supervisors.clock import SYSTEM_CLOCK, Cancellable, Clock
from trustchain.supervisors.errors import (
    ActorCrashed,
    ActorUnavailable,
    TrustChainError,
    UnknownMessage,
)
from trustchain.supervisors.faults import EnvironmentFaults
from trustchain.supervisors.messages import Message
from trustchain.supervisors.registry import (
    ActorState,
    Envelope,
    Failure,
    Registry,
    Reply,
    serving_actor,
)

Handler = Callable[[Any, Any], Any]


def handles(message_type: type[Message]) -> Callable[[Handler], Handler]:
    """Mark a method as the handler of one message class."""

    def mark(method: Handler) -> Handler:
        method._handles = message_type  # type: ignore[attr-defined]
        return method

    return mark


@dataclass(frozen=True)
class ChildExited(Message):
    """Sent by an actor to its supervisor when it goes down, for any reason."""

    name: str
    incarnation: int
    failure: Failure | None  # None: a normal stop


@dataclass(frozen=True)
class _Continuation(Message):
    callback: Callable[[outcome.Outcome], None]
    result: outcome.Outcome


@dataclass
class ActorContext:
    """What a supervisor hands each incarnation of an actor."""

    name: str
    registry: Registry
    incarnation: int
    supervisor: str | None
    started: threading.Event
    start_error: list[BaseException]
    backoff: Backoff = NO_BACKOFF  # for restarts, and for retrying a failed resource
    clock: Clock = SYSTEM_CLOCK  # every read of time and every timer goes through it


class _Inbox(queue.Queue[Any]):
    """An actor's mailbox with two lanes: queries (``Message.query``: reads that change
    nothing) are taken before everything else, each lane first in, first out."""

    def _init(self, maxsize: int) -> None:
        self.queue: collections.deque[Any] = collections.deque()
        self.queries: collections.deque[Any] = collections.deque()

    def _qsize(self) -> int:
        return len(self.queue) + len(self.queries)

    def _put(self, item: Any) -> None:
        envelope = getattr(item, "message", None)  # pykka's envelope around ours
        message = getattr(envelope, "message", None)
        lane = self.queries if isinstance(message, Message) and message.query else self.queue
        lane.append(item)

    def _get(self) -> Any:
        return self.queries.popleft() if self.queries else self.queue.popleft()


class SupervisedActor(EnvironmentFaults, pykka.ThreadingActor):
    use_daemon_thread = True  # a hung actor must never keep the process alive

    @staticmethod
    def _create_actor_inbox() -> Any:
        return _Inbox()

    _handlers: ClassVar[dict[type[Message], str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every class in the MRO, most basic first, so that an actor composed of several
        # parts (mixins, as IssuerActor is) takes each part's handlers, and a subclass's
        # handler for a message replaces its base's.
        table: dict[type[Message], str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                message_type = getattr(value, "_handles", None)
                if message_type is not None:
                    table[message_type] = attr
        cls._handlers = table

    @classmethod
    def message_types(cls) -> dict[str, type[Message]]:
        """The messages this actor accepts, by wire type name."""
        return {m.type: m for m in cls._handlers if not m.type.startswith("_")}

    def __init__(self, context: ActorContext) -> None:
        super().__init__()
        self.context = context
        self.name = context.name
        self.registry = context.registry
        self._cell = context.registry.cell(context.name)
        self._deferred: Reply | None = None
        self._current: Envelope | None = None
        self._outstanding: dict[int, Reply] = {}  # deferred replies not yet given
        self._deferrals = itertools.count()
        self.clock = context.clock
        self._timers: set[Cancellable] = set()  # every() and after(), cancelled going down
        self._stopping = False
        self._start_pending = True  # until ready() or a failed start
        self._start_deferred = False  # setup() called starting(): ready() comes later
        self._probes_pending: set[str] = set()  # resources whose probe is on its way

    # Hooks for subclasses --------------------------------------------------

    def setup(self) -> None:
        """Acquire resources and reload durable state (actor thread)."""

    def cleanup(self) -> None:
        """Release resources (actor thread); runs after a crash too."""

    # Starting without waiting ------------------------------------------------------

    def starting(self) -> None:
        """Called in ``setup()``: the start goes on in continuations (``request()``),
        which end it with :meth:`ready` or :meth:`start_failed`; until then the actor
        is ``starting`` and its supervisor starts no later sibling."""
        if not self._start_pending:
            raise RuntimeError(f"{self.name!r}: starting() belongs in setup()")
        self._start_deferred = True

    def ready(self) -> None:
        """The start is complete: the actor is ``running`` and takes requests."""
        if not self._start_pending:
            raise RuntimeError(f"{self.name!r}: ready() when not starting")
        self._start_pending = False
        with self._cell.lock:
            if self._cell.incarnation != self.context.incarnation or self.context.start_error:
                return  # too late: the supervisor gave up on this start and stops us
            self._cell.ref = self.actor_ref
            self._cell.state = ActorState.RUNNING
            self._cell.started_at = time.monotonic()
        self.context.started.set()

    def start_failed(self, error: BaseException) -> None:
        """The start cannot complete: it fails with ``error`` (the supervisor's
        ``ChildStartFailed`` gives its reason) and the actor stops. Raising ``error``
        from the continuation does the same."""
        if not self._start_pending:
            raise RuntimeError(f"{self.name!r}: start_failed() when not starting")
        self._fail_start(error)
        pykka.ActorRegistry.unregister(self.actor_ref)
        self.actor_stopped.set()  # pykka's loop ends after this message; no on_stop

    # Talking to other actors without blocking --------------------------------

    def defer(self) -> Reply:
        """Answer the current request later: returns the callable to answer with.

        The callable answers at most once; if this actor goes down first, the
        request is answered then with the reason, so no caller waits forever.
        """
        envelope = self._current
        if envelope is None or envelope.reply is None:
            return lambda _result: None
        original = envelope.reply
        key = next(self._deferrals)  # not id(envelope): ids are reused once objects die

        def answer_once(result: outcome.Outcome) -> None:
            if self._outstanding.pop(key, None) is not None:
                original(result)

        self._outstanding[key] = original
        self._deferred = answer_once
        return answer_once

    def request(
        self, target: str, message: Message, then: Callable[[outcome.Outcome], None]
    ) -> None:
        """Send ``message`` to ``target``; run ``then(outcome)`` later on this actor's thread."""
        ref = self.actor_ref

        def deliver(result: outcome.Outcome) -> None:
            try:
                ref.tell(Envelope(_Continuation(then, result), None))
            except pykka.ActorDeadError:
                pass  # we went down meanwhile; our own requests were answered then

        self.registry.tell(target, message, deliver)

    def publish(self, value: Any) -> None:
        """Share ``value`` with other threads (``Registry.published(name)``) until the next
        ``publish`` or until this incarnation goes down. Readers use it without asking
        this actor, so it must be immutable (replaced whole, never changed in place)."""
        self._cell.published = value

    def every(self, seconds: float, message: Message) -> None:
        """Send ``message`` to this actor every ``seconds`` until it goes down.

        The tick goes through the mailbox like any request, so the handler
        runs on the actor's thread; a tick is skipped while the previous one
        is still queued, so a slow actor is never flooded.
        """
        pending = threading.Event()
        ref = self.actor_ref
        current: list[Cancellable] = []

        def answered(_result: outcome.Outcome) -> None:
            pending.clear()

        def tick() -> None:
            self._timers.discard(current[0])
            if self._stopping:
                return
            if not pending.is_set():
                pending.set()
                try:
                    ref.tell(Envelope(message, answered))
                except pykka.ActorDeadError:
                    return
            arm()

        def arm() -> None:
            timer = self.clock.call_later(seconds, tick)
            current[:] = [timer]
            self._timers.add(timer)
            if self._stopping:  # went down meanwhile: its timers were cancelled before this one
                timer.cancel()

        arm()

    def send_self(self, message: Message) -> None:
        """Send ``message`` to this actor now: it is handled after every message already
        in the mailbox (the way to act once a backlog is drained, e.g. a group commit)."""
        try:
            self.actor_ref.tell(Envelope(message, None))
        except pykka.ActorDeadError:
            pass

    def after(self, seconds: float, message: Message) -> None:
        """Send ``message`` to this actor once, ``seconds`` from now, unless it goes down first."""
        ref = self.actor_ref
        timers: list[Cancellable] = []

        def fire() -> None:
            if timers:
                self._timers.discard(timers[0])
            try:
                ref.tell(Envelope(message, None))
            except pykka.ActorDeadError:
                pass

        timer = self.clock.call_later(seconds, fire)
        timers.append(timer)
        self._timers.add(timer)
        if self._stopping:
            timer.cancel()

    # pykka hooks ----------------------------------------------------------------

    def on_start(self) -> None:
        serving_actor(self.name)  # this thread never waits on another actor, in setup() neither
        try:
            self.setup()
        except BaseException as exc:
            if self._start_pending:
                self._fail_start(exc)
            raise
        if self._start_pending and not self._start_deferred:
            self.ready()

    def on_receive(self, envelope: Any) -> Any:
        if not isinstance(envelope, Envelope):
            logger.warning("{} ignored a message outside an envelope: {!r}", self.name, envelope)
            return None
        message = envelope.message
        if isinstance(message, _Continuation):
            message.callback(message.result)
            return None
        self._current = envelope
        self._deferred = None
        try:
            attr = self._handlers.get(type(message))
            if attr is None:
                raise UnknownMessage(f"{self.name!r} does not handle {message.type!r}")
            result = getattr(self, attr)(message)
        except TrustChainError as exc:
            self._answer(envelope, outcome.Error(exc))
        except Exception as exc:
            crashed = ActorCrashed(
                f"{self.name!r} crashed handling {message.type!r}: {type(exc).__name__}: {exc}"
            )
            self._answer(envelope, outcome.Error(crashed))
            raise
        else:
            if self._deferred is None:
                self._answer(envelope, outcome.Value(result))
        finally:
            self._current = None
            self._cell.handled += 1
            self._cell.last_latency_s = time.monotonic() - envelope.sent_at
        return None

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert exception_value is not None
        if self._start_pending:  # a continuation of an asynchronous start raised
            self._fail_start(exception_value)
        else:
            self._going_down(Failure.of(exception_value))

    def on_stop(self) -> None:
        self._going_down(None)

    # Internals --------------------------------------------------------------------

    @staticmethod
    def _answer(envelope: Envelope, result: outcome.Outcome) -> None:
        if envelope.reply is not None:
            envelope.reply(result)

    def _fail_start(self, error: BaseException) -> None:
        """Go down first (cleanup done, exit notice sent), then let the waiting
        supervisor go on: it raises ``ChildStartFailed`` with ``error``."""
        self._start_pending = False
        logger.error("{} failed to start: {}: {}", self.name, type(error).__name__, error)
        self._going_down(Failure.of(error))
        self.context.start_error.append(error)
        self.context.started.set()

    def _going_down(self, failure: Failure | None) -> None:
        if self._stopping:
            return  # once: a failed start may be followed by pykka's own failure path
        self._stopping = True
        for timer in list(self._timers):
            timer.cancel()
        with self._cell.lock:
            if self._cell.incarnation == self.context.incarnation:
                self._cell.faults.clear()  # the next incarnation finds out for itself
                self._cell.published = None  # and publishes its own
                self._cell.state = ActorState.RESTARTING if failure else ActorState.STOPPED
                if failure is not None:
                    self._cell.last_failure = failure
        self._drain_mailbox()
        reason = "crashed" if failure else "stopped"
        while self._outstanding:
            _key, reply = self._outstanding.popitem()
            reply(outcome.Error(ActorUnavailable(f"actor {self.name!r} {reason} before answering")))
        try:
            self.cleanup()
        except Exception as exc:
            logger.warning("{} cleanup failed: {}: {}", self.name, type(exc).__name__, exc)
        if self.context.supervisor is not None:
            exited = ChildExited(self.name, self.context.incarnation, failure)
            try:
                self.registry.tell(self.context.supervisor, exited)
            except TrustChainError:
                pass  # the supervisor is itself going down and stops us anyway

    def _drain_mailbox(self) -> None:
        """Answer every request still queued; hand pykka's own messages back to pykka."""
        others = []
        inbox: queue.Queue[Any] = self.actor_inbox  # type: ignore[assignment]
        while True:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                break
            envelope = getattr(item, "message", None)
            if isinstance(envelope, Envelope):
                if isinstance(envelope.message, _Continuation):
                    continue
                error = ActorUnavailable(f"actor {self.name!r} stopped before handling this")
                self._answer(envelope, outcome.Error(error))
            else:
                others.append(item)
        for item in others:
            inbox.put(item)
