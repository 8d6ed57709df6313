"""Faults of the trust store: a trust database that cannot be written (a full disk, an
I/O error, a read-only or locked file), as the issuer's ``faults.py`` treats the CA's.

A fault of the environment, not a bug: the detector does not crash. The request that
needed the store gets ``trust_store_unavailable`` (``retry_after_s``) at once, having
changed nothing: a decision and every write it causes are one transaction
(``TrustStore.batch``, in ``base._decided``), and the scores in memory are put back as
they were, so a decision not recorded counts for nothing (the issuer issues nothing
on it). The fault (``trust_store``) shows in status and ``/ready``. A durable probe
write is retried with backoff; the probe or the next write that succeeds (a decision,
a challenge) clears the fault, with no restart. Reads that still work (scores,
evidence, an asset's trust) go on meanwhile.

Two writes answer nobody: evidence of equivocation (with the quarantine) and the
score changes of late votes. When they cannot be written the quarantine and the
scores hold in memory, and they are written as soon as the store takes writes
again (by the probe or the next successful write); a restart before that loses
them (the votes that showed them are gone with the process).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from trustchain.actors.trust.errors import TrustStoreUnavailable
from trustchain.actors.trust.scores import ValidatorScore, ValidatorScores
from trustchain.actors.trust.store import TrustStore
from trustchain.actors.trust.votes import Equivocation
from trustchain.supervisors import ActorContext, Message, SupervisedActor, handles

STORE = "trust_store"  # the resource name shown in status and /ready


@dataclass(frozen=True)
class _ProbeTrustStore(Message):
    """Time to try a durable write to the trust store again."""


class StoreFaults(SupervisedActor):
    store: TrustStore | None
    scores: ValidatorScores

    def __init__(self, context: ActorContext) -> None:
        super().__init__(context)
        self._unwritten_evidence: dict[tuple[str, bytes], tuple[Equivocation, float]] = {}
        self._unwritten_scores: set[str] = set()  # validators whose score is newer in memory

    def _store_of(self) -> TrustStore:
        assert self.store is not None
        return self.store

    @contextmanager
    def storing(self, what: str = "", *, writes: bool = True) -> Iterator[TrustStore]:
        """The store, for a block of calls: a ``TrustStoreUnavailable`` in it is reported
        as the fault (with ``what`` did not happen) and raised again, for the caller;
        a block of ``writes`` that succeeds says the store works again."""
        if writes:
            self.commit_group()  # what this block writes is answered at once: after those
        try:
            yield self._store_of()
        except TrustStoreUnavailable as exc:
            raise self.store_failed(exc, what, writes=writes) from exc
        if writes:
            self.store_works()

    def commit_group(self) -> None:
        """Commit the decisions waiting for their group commit (grouping.py does it)."""

    @property
    def group_open(self) -> bool:
        """Decisions are waiting for their group commit: a write now joins their
        transaction, and says nothing about the disk until it commits (grouping.py)."""
        return False

    def store_failed(
        self, exc: TrustStoreUnavailable, what: str = "", *, writes: bool = True
    ) -> TrustStoreUnavailable:
        """Show the fault, schedule a probe (once), and say what happened."""
        cause = exc.details.get("cause", exc.message)
        delay = self.report_fault_and_probe(
            STORE, f"TrustStoreUnavailable: {cause}", _ProbeTrustStore()
        )
        done = "written" if writes else "read"
        return TrustStoreUnavailable(
            f"the detector's trust database cannot be {done} ({cause})"
            + (f": {what}" if what else "")
            + "; try again shortly",
            cause=cause,
            retry_after_s=max(1, math.ceil(delay)),
        )

    def store_works(self) -> None:
        """A write went through: write what is waiting, and clear the fault. (Not while
        a group is open: its commit says whether the write went through.)"""
        if self.group_open:
            return
        if self.fault(STORE) is None and not (self._unwritten_evidence or self._unwritten_scores):
            return
        try:
            self._write_unwritten()
        except TrustStoreUnavailable as exc:
            self.store_failed(exc)
            return
        if self.fault(STORE) is not None:
            self.clear_fault(STORE)

    def keep_scores(self, scores: list[ValidatorScore]) -> None:
        """Store changed scores; if the store fails, later (they hold in memory)."""
        try:
            self._store_of().put_validator_scores(scores)
        except TrustStoreUnavailable as exc:
            self._unwritten_scores.update(s.validator for s in scores)
            self.store_failed(exc, "scores are kept in memory until it can")
            return
        self.store_works()

    def keep_evidence(
        self, evidence: Equivocation, found_at_s: float, quarantined: ValidatorScore
    ) -> bool:
        """Store the evidence with the quarantine; if the store fails, later (the
        quarantine holds in memory). False if the evidence was kept already. Decisions
        waiting for their group commit are committed first: evidence goes on its own."""
        self.commit_group()
        try:
            kept = self._store_of().add_equivocation(evidence, found_at_s, quarantined)
        except TrustStoreUnavailable as exc:
            key = (evidence.validator, evidence.digest)
            new = key not in self._unwritten_evidence
            self._unwritten_evidence.setdefault(key, (evidence, found_at_s))
            self.store_failed(exc, "the evidence is kept in memory until it can")
            return new
        self.store_works()
        return kept

    def _write_unwritten(self) -> None:
        store = self._store_of()
        with store.batch():
            for evidence, found_at in self._unwritten_evidence.values():
                quarantined = self.scores.get(evidence.validator)
                store.add_equivocation(evidence, found_at, quarantined)
            store.put_validator_scores([self.scores.get(v) for v in sorted(self._unwritten_scores)])
        self._unwritten_evidence.clear()
        self._unwritten_scores.clear()

    @handles(_ProbeTrustStore)
    def probe_trust_store(self, msg: _ProbeTrustStore) -> None:
        self.probe_due(STORE)
        if self.fault(STORE) is None:
            return
        try:
            self._store_of().probe(self.clock.time())
        except TrustStoreUnavailable as exc:
            self.store_failed(exc)
            return
        self.store_works()
