"""How an actor reports a fault of its environment (a full disk, a missing HSM token).

A fault is not a bug: the actor lives on, answers what needs the resource with a
typed error and retries it with backoff, and the fault (resource, since when, the
last error, retries, the next retry) shows in status and ``/ready`` until the actor
clears it. ``EnvironmentFaults`` is the part of ``SupervisedActor`` that does this;
the faults live in the actor's registry cell, so status reads them without asking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loguru import logger

from trustchain.supervisors.clock import Clock
from trustchain.supervisors.messages import Message
from trustchain.supervisors.registry import Cell, Fault

if TYPE_CHECKING:
    from collections.abc import Callable

    from trustchain.supervisors.actor import ActorContext

MIN_PROBE_S = 0.01  # even with backoff turned off, a probe of a failing resource is no busy loop


class EnvironmentFaults:
    """Mixed into ``SupervisedActor``, which provides what is declared here."""

    name: str
    context: ActorContext
    clock: Clock
    _cell: Cell
    _probes_pending: set[str]  # resources whose probe is on its way
    after: Callable[[float, Message], None]  # send a message to self later

    def report_fault(
        self, resource: str, error: BaseException | str, next_retry_s: float | None = None
    ) -> Fault:
        """Say that ``resource`` is failing: shown in status and ``/ready`` until cleared.

        For faults of the environment (a full disk, a missing token), which the
        actor answers with a typed error and retries, instead of crashing.
        """
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        with self._cell.lock:
            fault = self._cell.faults.get(resource)
            if fault is None:
                fault = self._cell.faults[resource] = Fault(resource, text, self.clock.time())
                new = True
            else:
                fault.error = text
                fault.retries += 1
                new = False
            fault.next_retry_s = next_retry_s
        if new:
            logger.error("{}: {} is unavailable: {}", self.name, resource, text)
        else:
            logger.debug("{}: {} still unavailable: {}", self.name, resource, text)
        return fault

    def report_fault_and_probe(
        self, resource: str, error: BaseException | str, probe: Message
    ) -> float:
        """``report_fault``, and ``probe`` sent to this actor after the backoff's delay for
        the failures in a row so far (one probe on its way per resource: its handler calls
        ``probe_due`` first). Returns the delay, which status shows as the next retry."""
        fault = self.fault(resource)
        retries = 0 if fault is None else fault.retries + 1
        delay = max(MIN_PROBE_S, self.context.backoff.delay(retries))
        self.report_fault(resource, error, next_retry_s=delay)
        if resource not in self._probes_pending:
            self._probes_pending.add(resource)
            self.after(delay, probe)
        return delay

    def probe_due(self, resource: str) -> None:
        """The probe of ``resource`` has come: the next failure schedules another."""
        self._probes_pending.discard(resource)

    def clear_fault(self, resource: str) -> None:
        with self._cell.lock:
            fault = self._cell.faults.pop(resource, None)
        if fault is not None:
            logger.warning(
                "{}: {} is back after {:.3f} s ({} retries)",
                self.name,
                resource,
                self.clock.time() - fault.since,
                fault.retries,
            )

    def fault(self, resource: str) -> Fault | None:
        return self._cell.faults.get(resource)
