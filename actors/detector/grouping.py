"""The detector's group commit: decisions are written to the trust store in groups, one
transaction (one fsync) each.

The first decision opens the group and sends the actor a ``_Commit``, which comes after
every message already queued; the decisions those messages make join the group; at
``_Commit`` it commits, and only then are their callers answered. Nothing is answered
before it is durable, and a busy detector pays one fsync for many decisions (measured:
the commits took half the detector's thread with one transaction per decision). Writes
that answer at once (a space challenge) and evidence of equivocation commit the open
group first (``faults.storing``, ``keep_evidence``); reads see the open group's writes.
If the store cannot take a group, none of its decisions is recorded: the scores are put
back as they were before it, and each caller gets ``trust_store_unavailable``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import outcome

from trustchain.actors.detector.faults import StoreFaults
from trustchain.actors.trust.errors import TrustStoreUnavailable
from trustchain.actors.trust.scores import ValidatorScores
from trustchain.supervisors import ActorContext, Message, handles

NOT_RECORDED = "the decision was not recorded and counts for nothing (nothing was approved)"


@dataclass(frozen=True)
class _Commit(Message):
    """Commit the group of decisions made since it opened."""


@dataclass
class Member:
    """A decision in the open group: its round's pending answer (``reply``), and what to
    answer once the group commits."""

    pending: Any
    answer: outcome.Outcome | None  # None: its writes failed (the group fails whole)
    outcome: str  # the decision's, counted once committed


@dataclass
class _Group:
    batch: contextlib.ExitStack  # the store's batch, open until the commit
    scores: ValidatorScores  # as they were before the group's first decision
    members: list[Member]


class GroupCommit(StoreFaults):
    def __init__(self, context: ActorContext) -> None:
        super().__init__(context)
        self._group: _Group | None = None  # decisions written, not yet committed
        self.commits = {"groups": 0, "decisions": 0}  # group commits, and what they held
        self.outcomes = {"approve": 0, "reject": 0, "quorum_not_reached": 0}

    def _unrecorded(self, pendings: list[Any], error: TrustStoreUnavailable) -> None:
        """Decisions the store did not take: their callers get ``error`` (base.py)."""
        raise NotImplementedError

    def _open_group(self) -> _Group:
        if self._group is None:
            batch = contextlib.ExitStack()
            batch.enter_context(self._store_of().batch())  # BEGIN (may raise)
            self._group = _Group(batch, self.scores.copy(), [])
            self.send_self(_Commit())
        return self._group

    @property
    def group_open(self) -> bool:
        return self._group is not None

    @handles(_Commit)
    def commit(self, msg: _Commit) -> None:
        self.commit_group()

    def commit_group(self) -> None:
        """Commit the open group (if any), then answer its decisions' callers; if the
        store cannot take it, none of them is recorded and each caller gets
        ``trust_store_unavailable`` (the scores are put back as before the group)."""
        group, self._group = self._group, None
        if group is None:
            return
        try:
            group.batch.close()  # the commit
        except TrustStoreUnavailable as exc:
            self.scores = group.scores
            error = self.store_failed(exc, NOT_RECORDED)
            self._unrecorded([member.pending for member in group.members], error)
            return
        self.store_works()
        self.commits["groups"] += 1
        self.commits["decisions"] += len(group.members)
        for member in group.members:
            if member.answer is None:  # (a spoiled group does not commit: defensive)
                raise AssertionError("a decision whose write failed was committed")
            self.outcomes[member.outcome] += 1
            member.pending.reply(member.answer)
