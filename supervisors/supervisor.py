"""Supervisors with Erlang/OTP semantics, as actors themselves.

A supervisor starts its children in order, each one ready (``setup()``
returned, or the ``ready()`` of an asynchronous start) before the next begins
(like ``init/1`` under ``start_link``), and stops them in reverse order. When a
child goes down it applies the child's restart type (permanent: always
restarted; transient: only after a crash; temporary: never) and its strategy:

* one_for_one  - restart the child that went down;
* one_for_all  - stop the others (reverse order), restart all (in order);
* rest_for_one - stop the children started after it, restart it and them.

Restart intensity: more than ``max_restarts`` restarts within ``period_s``
seconds and the supervisor stops all its children and crashes itself, so its
own supervisor decides (escalation). The root has no supervisor: it calls
``on_give_up`` with the reason, and the process ends non-zero. Operator
restarts (``RestartChild``) are not counted: intensity is about crashes.

Backoff: a restart waits ``backoff.delay(n)`` seconds, where ``n`` is how many
times that child was already restarted within ``period_s`` (exponential, with
jitter; as Akka's BackoffSupervisor and systemd's ``RestartSec``), so a fault
that lasts longer than a few milliseconds does not burn the whole intensity
budget in a tight loop. Meanwhile the child is ``restarting`` and requests to
it are refused at once; the supervisor's own thread never sleeps (the restart
is a timed message to itself).

Children are addressed through the registry by name, so whoever holds a name
reaches the current incarnation; a restart never changes an address.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
from loguru import logger

from trustchain.supervisors.actor import ActorContext, ChildExited, SupervisedActor, handles
from trustchain.supervisors.backoff import NO_BACKOFF, Backoff
from trustchain.supervisors.clock import SYSTEM_CLOCK, Clock
from trustchain.supervisors.errors import TrustChainError, UnknownActor
from trustchain.supervisors.messages import Message
from trustchain.supervisors.registry import ActorState, Failure, Registry


class Restart(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


Factory = Callable[[ActorContext], pykka.ActorRef[Any]]


@dataclass(frozen=True)
class ChildSpec:
    name: str
    factory: Factory
    restart: Restart = Restart.PERMANENT
    shutdown_timeout_s: float = 5.0
    start_timeout_s: float = 30.0


class SupervisorGaveUp(Exception):
    """Restart intensity exceeded: this supervisor stops and escalates."""


class ChildStartFailed(Exception):
    """A child's start failed (``setup()`` or a start continuation raised, or it
    called ``start_failed()``) or did not finish within ``start_timeout_s``."""


@dataclass(frozen=True)
class RestartChild(Message):
    """Operator-requested restart of one child (does not count towards intensity)."""

    name: str


@dataclass(frozen=True)
class _RestartDue(Message):
    """A backed-off restart's time has come (the supervisor's timer to itself)."""

    name: str


def supervisor_spec(
    name: str,
    children: list[ChildSpec],
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 3,
    period_s: float = 5.0,
    restart: Restart = Restart.PERMANENT,
    backoff: Backoff = NO_BACKOFF,
) -> ChildSpec:
    """A child spec for a nested supervisor."""

    def factory(ctx: ActorContext) -> pykka.ActorRef[Any]:
        return Supervisor.start(ctx, children, strategy, max_restarts, period_s, backoff=backoff)

    timeout = sum(c.shutdown_timeout_s for c in children) + 1.0
    start_timeout = sum(c.start_timeout_s for c in children) + 1.0
    return ChildSpec(name, factory, restart, timeout, start_timeout)


class Supervisor(SupervisedActor):
    def __init__(
        self,
        context: ActorContext,
        children: list[ChildSpec],
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        period_s: float = 5.0,
        on_give_up: Callable[[str], None] | None = None,
        backoff: Backoff = NO_BACKOFF,
    ) -> None:
        super().__init__(context)
        names = [c.name for c in children]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate child names under {context.name!r}: {names}")
        self.children = list(children)
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period_s = period_s
        self.on_give_up = on_give_up
        self.backoff = backoff
        self._restarts: deque[tuple[float, str]] = deque()
        self._expected_exits: set[tuple[str, int]] = set()
        self._running: list[str] = []

    # Lifecycle -------------------------------------------------------------------

    def setup(self) -> None:
        for spec in self.children:
            self._start_child(spec)

    def cleanup(self) -> None:
        self._stop_children([c.name for c in self.children])

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        super().on_failure(exception_type, exception_value, traceback)
        if self.context.supervisor is None and self.on_give_up is not None:
            self.on_give_up(f"{type(exception_value).__name__}: {exception_value}")

    # Messages --------------------------------------------------------------------

    @handles(ChildExited)
    def child_exited(self, msg: ChildExited) -> None:
        key = (msg.name, msg.incarnation)
        if key in self._expected_exits:
            self._expected_exits.discard(key)
            return
        spec = self._spec(msg.name)
        if spec is None or self.registry.cell(msg.name).incarnation != msg.incarnation:
            return  # an exit from an incarnation we already replaced
        if msg.name in self._running:
            self._running.remove(msg.name)
        crashed = msg.failure is not None
        if crashed:
            assert msg.failure is not None
            logger.warning(
                "{} crashed: {}: {} (supervisor {}, {})",
                msg.name,
                msg.failure.type,
                msg.failure.message,
                self.name,
                spec.restart.value,
            )
        if spec.restart is Restart.TEMPORARY or (spec.restart is Restart.TRANSIENT and not crashed):
            self._set_state(msg.name, ActorState.FAILED if crashed else ActorState.STOPPED)
            return
        self._restart_from(msg.name, msg.failure)

    @handles(RestartChild)
    def restart_child(self, msg: RestartChild) -> dict[str, Any]:
        spec = self._spec(msg.name)
        if spec is None:
            raise UnknownActor(f"{self.name!r} supervises no child named {msg.name!r}")
        self._stop_children([msg.name])
        self.registry.cell(msg.name).restarts += 1
        try:
            self._start_child(spec)
        except ChildStartFailed as exc:
            self._restart_from(msg.name, Failure.of(exc))
        return self.registry.cell(msg.name).health()

    # Internals -------------------------------------------------------------------

    def _spec(self, name: str) -> ChildSpec | None:
        return next((c for c in self.children if c.name == name), None)

    def _set_state(self, name: str, state: ActorState) -> None:
        cell = self.registry.cell(name)
        with cell.lock:
            cell.state = state

    def _affected(self, name: str) -> list[str]:
        names = [c.name for c in self.children]
        if self.strategy is Strategy.ONE_FOR_ALL:
            return names
        if self.strategy is Strategy.REST_FOR_ONE:
            return names[names.index(name) :]
        return [name]

    def _note_restart(self, name: str, failure: Failure | None) -> int:
        """Count a restart of ``name``; returns how many of its restarts came before it
        within the period (the backoff's attempt number). Raises when past intensity."""
        now = self.clock.monotonic()
        self._restarts.append((now, name))
        while self._restarts and now - self._restarts[0][0] > self.period_s:
            self._restarts.popleft()
        if len(self._restarts) > self.max_restarts:
            why = "" if failure is None else f"; last failure: {failure.type}: {failure.message}"
            reason = (
                f"supervisor {self.name!r}: child {name!r} needed {len(self._restarts)} restarts "
                f"within {self.period_s:g} s (max_restarts={self.max_restarts}){why}"
            )
            logger.error(reason)
            self._stop_children([c.name for c in self.children])
            raise SupervisorGaveUp(reason)
        return sum(1 for _, n in self._restarts if n == name) - 1

    def _restart_from(self, name: str, failure: Failure | None) -> None:
        """Restart ``name`` and whatever the strategy ties to it, within intensity, after
        the backoff delay."""
        attempt = self._note_restart(name, failure)
        affected = self._affected(name)
        self._stop_children([n for n in affected if n != name])
        for n in affected:
            cell = self.registry.cell(n)
            cell.restarts += 1
            self._set_state(n, ActorState.RESTARTING)
        delay = self.backoff.delay(attempt)
        if delay <= 0:
            self._start_affected(name)
            return
        logger.info("{}: restarting {} in {:.3f} s (backoff)", self.name, name, delay)
        self.after(delay, _RestartDue(name))

    @handles(_RestartDue)
    def restart_due(self, msg: _RestartDue) -> None:
        self._start_affected(msg.name)

    def _start_affected(self, name: str) -> None:
        """Start, in order, whatever of ``name``'s group is not running (an operator
        restart may have started some meanwhile); a failed start counts as a crash."""
        affected = self._affected(name)
        try:
            for n in affected:
                spec = self._spec(n)
                assert spec is not None
                if n not in self._running:
                    self._start_child(spec)
        except ChildStartFailed as exc:
            self._stop_children(affected)
            self._restart_from(name, Failure.of(exc))

    def _start_child(self, spec: ChildSpec) -> None:
        cell = self.registry.cell(spec.name, supervisor=self.name)
        with cell.lock:
            cell.supervisor = self.name
            cell.incarnation += 1
            cell.state = ActorState.STARTING
            incarnation = cell.incarnation
        ctx = ActorContext(
            spec.name,
            self.registry,
            incarnation,
            self.name,
            threading.Event(),
            [],
            self.backoff,
            self.clock,
        )
        ref = spec.factory(ctx)
        with cell.lock:
            cell.actor_class = ref.actor_class
        if not ctx.started.wait(spec.start_timeout_s):
            late = ChildStartFailed(f"{spec.name!r} did not start within {spec.start_timeout_s} s")
            with cell.lock:
                ctx.start_error.append(late)  # a ready() from now on is too late
            self._expected_exits.add((spec.name, incarnation))
            ref.stop(block=False)
            raise late
        if ctx.start_error:
            # Its exit notice is already on the way; this failure is handled here.
            self._expected_exits.add((spec.name, incarnation))
            error = ctx.start_error[0]
            raise ChildStartFailed(
                f"{spec.name!r} failed to start: {type(error).__name__}: {error}"
            )
        self._running.append(spec.name)

    def _stop_children(self, names: list[str]) -> None:
        """Stop the named children that are running, in reverse start order."""
        for name in reversed([n for n in self._running if n in names]):
            self._running.remove(name)
            cell = self.registry.cell(name)
            spec = self._spec(name)
            ref = cell.ref
            if ref is None or spec is None:
                continue
            self._expected_exits.add((name, cell.incarnation))
            try:
                ref.stop(block=True, timeout=spec.shutdown_timeout_s)
            except pykka.Timeout:
                logger.error(
                    "{} did not stop within {} s; abandoned (its thread is a daemon)",
                    name,
                    spec.shutdown_timeout_s,
                )
                self._set_state(name, ActorState.STOPPED)
            except TrustChainError:
                pass


def start_root(
    registry: Registry,
    name: str,
    children: list[ChildSpec],
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = 3,
    period_s: float = 5.0,
    on_give_up: Callable[[str], None] | None = None,
    start_timeout_s: float = 60.0,
    backoff: Backoff = NO_BACKOFF,
    clock: Clock = SYSTEM_CLOCK,
) -> pykka.ActorRef[Any]:
    """Start a root supervisor and its tree; raise ChildStartFailed if the tree cannot start."""
    cell = registry.cell(name)
    with cell.lock:
        cell.incarnation += 1
        cell.state = ActorState.STARTING
    ctx = ActorContext(
        name, registry, cell.incarnation, None, threading.Event(), [], backoff, clock
    )
    ref = Supervisor.start(
        ctx, children, strategy, max_restarts, period_s, on_give_up, backoff=backoff
    )
    with cell.lock:
        cell.actor_class = Supervisor
    if not ctx.started.wait(start_timeout_s):
        raise ChildStartFailed(f"the tree did not start within {start_timeout_s} s")
    if ctx.start_error:
        error = ctx.start_error[0]
        raise ChildStartFailed(f"{type(error).__name__}: {error}") from error
    return ref
