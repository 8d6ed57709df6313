"""The registry: actors addressed by name, so a restarted actor keeps its address.

Each name owns a :class:`Cell` that outlives every incarnation of the actor
behind it. The cell holds the current reference, the lifecycle state and the
health counters. Sending goes through the cell under its lock: a message is
put into a mailbox only while the cell says ``running``; an actor going down
flips its cell away from ``running`` under the same lock *before* it empties
its mailbox and answers what is left with ``ActorUnavailable``. So every
request gets exactly one reply and none waits forever on a dead actor.
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import outcome
import pykka

from trustchain.supervisors.errors import ActorUnavailable, RequestTimeout, UnknownActor
from trustchain.supervisors.messages import Message

Reply = Callable[[outcome.Outcome], None]

_thread = threading.local()  # .actor: the name of the actor whose handlers this thread runs


class WaitOnActorThread(RuntimeError):
    """A bug: an actor's handler would block its thread waiting for another actor."""


def serving_actor(name: str) -> None:
    """Mark the calling thread as the one that runs ``name``'s handlers (from now on
    ``Registry.ask`` refuses to block it)."""
    _thread.actor = name


class Addressable(Protocol):
    """What the registry knows of an actor's class: the messages it accepts.

    ``SupervisedActor`` (in ``actor.py``, which imports this module) has it;
    naming the shape here keeps the import one way.
    """

    def message_types(self) -> dict[str, type[Message]]: ...


class ActorState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class Failure:
    type: str
    message: str
    at: float  # wall-clock seconds

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        return cls(type(exc).__name__, str(exc), time.time())


@dataclass
class Fault:
    """A resource an actor depends on is failing (a full disk, a missing HSM token).

    The actor lives on, refuses what needs the resource with a typed error, and
    retries it with backoff; the fault is shown in status and ``/ready`` until
    the actor clears it.
    """

    resource: str
    error: str
    since: float  # wall-clock seconds
    retries: int = 0
    next_retry_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "error": self.error,
            "since": dt.datetime.fromtimestamp(self.since, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "down_s": round(max(0.0, time.time() - self.since), 3),
            "retries": self.retries,
            "next_retry_s": None if self.next_retry_s is None else round(self.next_retry_s, 3),
        }


@dataclass(frozen=True)
class Envelope:
    """What actually travels through a mailbox: the message and who to answer."""

    message: Message
    reply: Reply | None
    sent_at: float = field(default_factory=time.monotonic)


@dataclass
class Cell:
    name: str
    supervisor: str | None
    actor_class: type | None = None  # a SupervisedActor subclass: an Addressable
    state: ActorState = ActorState.STOPPED
    ref: pykka.ActorRef[Any] | None = None
    incarnation: int = 0
    restarts: int = 0
    last_failure: Failure | None = None
    started_at: float | None = None
    handled: int = 0
    last_latency_s: float | None = None
    faults: dict[str, Fault] = field(default_factory=dict)
    published: Any = None  # what the running incarnation shares with readers (publish())
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def health(self) -> dict[str, Any]:
        mailbox = 0
        ref = self.ref
        if ref is not None and self.state is ActorState.RUNNING:
            mailbox = ref.actor_inbox.qsize()  # type: ignore[attr-defined]
        uptime = time.monotonic() - self.started_at if self.started_at else 0.0
        failure = self.last_failure
        faults = [f.to_json() for f in list(self.faults.values())]
        return {
            "name": self.name,
            "supervisor": self.supervisor,
            "state": self.state.value,
            "restarts": self.restarts,
            "last_failure": None
            if failure is None
            else {"type": failure.type, "message": failure.message, "at": failure.at},
            "mailbox": mailbox,
            "handled": self.handled,
            "uptime_s": round(uptime, 3) if self.state is ActorState.RUNNING else 0.0,
            "last_latency_ms": None
            if self.last_latency_s is None
            else round(self.last_latency_s * 1000, 3),
            "faults": faults,
        }


class Registry:
    """Name -> cell. Thread-safe; shared by the whole tree and the edges."""

    def __init__(self) -> None:
        self._cells: dict[str, Cell] = {}
        self._lock = threading.Lock()

    def cell(self, name: str, supervisor: str | None = None) -> Cell:
        """The cell for ``name``, created on first use (by the supervisor that owns it)."""
        with self._lock:
            cell = self._cells.get(name)
            if cell is None:
                cell = self._cells[name] = Cell(name, supervisor)
            return cell

    def lookup(self, name: str) -> Cell:
        with self._lock:
            cell = self._cells.get(name)
        if cell is None:
            raise UnknownActor(f"no actor named {name!r}; see 'trustchain status' for the names")
        return cell

    def published(self, name: str) -> Any:
        """What ``name``'s running incarnation last published (``SupervisedActor.publish``),
        or None: an immutable value that threads outside the actor read without a
        message (Erlang's ``persistent_term``, an RCU-published zone in Knot DNS)."""
        with self._lock:
            cell = self._cells.get(name)
        return None if cell is None else cell.published

    def names(self) -> list[str]:
        with self._lock:
            return list(self._cells)

    def health(self) -> list[dict[str, Any]]:
        with self._lock:
            cells = list(self._cells.values())
        return [c.health() for c in cells]

    def tell(self, name: str, message: Message, reply: Reply | None = None) -> None:
        """Deliver ``message`` to ``name``; ``reply`` is called exactly once with the outcome.

        Unknown names and actors that are not running are answered at once,
        on the calling thread, with a typed error.
        """
        try:
            cell = self.lookup(name)
        except UnknownActor as exc:
            if reply is None:
                raise
            reply(outcome.Error(exc))
            return
        envelope = Envelope(message, reply)
        with cell.lock:
            ref = cell.ref
            delivered = False
            if cell.state is ActorState.RUNNING and ref is not None:
                try:
                    ref.tell(envelope)
                    delivered = True
                except pykka.ActorDeadError:
                    pass
        if not delivered:
            error = ActorUnavailable(f"actor {name!r} is {cell.state.value}; try again shortly")
            if reply is None:
                raise error
            reply(outcome.Error(error))

    def ask(self, name: str, message: Message, timeout: float | None = 10.0) -> Any:
        """Blocking request for threads that are not actors (tests, CLI tools). From
        an actor's thread (its ``setup()`` included) it raises ``WaitOnActorThread``:
        an actor ``request()``s and goes on in a continuation."""
        actor = getattr(_thread, "actor", None)
        if actor is not None:
            raise WaitOnActorThread(
                f"actor {actor!r} asked {name!r} for {message.type!r} and would block its "
                "thread; use self.request(target, message, continuation)"
            )
        done = threading.Event()
        box: list[outcome.Outcome] = []

        def reply(result: outcome.Outcome) -> None:
            box.append(result)
            done.set()

        self.tell(name, message, reply)
        if not done.wait(timeout):
            raise RequestTimeout(f"{name!r} did not answer {message.type!r} within {timeout} s")
        return box[0].unwrap()

    def actor_class(self, name: str) -> Addressable | None:
        return cast("Addressable | None", self.lookup(name).actor_class)
