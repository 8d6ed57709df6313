"""The detector's bookkeeping, sans-IO: one vote round, the votes seen, and what a
decision says about the asset.

A ``Round`` is one question (a request's digest, or a registration's) put to the
validators. Votes and failures to answer come in one at a time (``add``); after each,
``settle`` says whether the round is decided (``votes.decide`` with the votes so far),
cannot be any more (QuorumNotReached: even if every validator still out voted one way,
no verdict would reach the quorum), or must wait. Its deadline passing, ``expire``
refuses it.

A round may keep validators in ``reserve``: not asked at first, because a quorum of
those asked agreeing decides without them (the detector asks a quorum first, see
``actor.py``). Once those asked can no longer make a quorum alone (one dissented, or
gave no vote), ``settle`` sets ``wants_more`` and the caller asks the reserve
(``widen``); the round is refused only when the reserve could not save it either.
Once decided, votes that come later are still scored (``unscored``): a slow
validator that voted against the outcome loses trust like a prompt one.

A ``VoteLog`` keeps the first verified vote of each validator on each digest, for the
epochs kept (the detector's current one and the one before): a second, different,
validly signed vote of one validator on one digest is equivocation (``add`` returns the
evidence), whether it came in the same round or in another round on the same digest.
Votes whose signature does not verify are refused (``VoteInvalid``) and never frame
the validator they name.

``asset_factors`` turns a decision into the asset history's factors: a success, or the
failures that at least f+1 of the rejecting quorum agree on (so at least one honest
validator saw them: f liars cannot blacken an asset). A request whose asset signature
fails was not the asset's: only that (weightless) failure is recorded then.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519

from .errors import QuorumNotReached, VoteInvalid
from .scores import FACTOR_OF_ERROR, SUCCESSES
from .votes import Decision, Equivocation, Verdict, Vote, check_vote, decide, quorum, verified_votes

SIGNATURE_CODE = "asset_signature_invalid"


def reason_code(reason: str) -> str:
    """A vote's reason is ``"<error code>: <why>"``; its code."""
    return reason.split(":", 1)[0].strip()


@dataclass
class Round:
    """One question to the validators, from the first answer to the last late one."""

    digest: bytes
    validators: Mapping[str, ed25519.Ed25519PublicKey]  # all N, by validator id
    f: int
    asked: frozenset[str]  # the validator ids asked
    votes: list[Vote] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)
    decision: Decision | None = None
    refusal: QuorumNotReached | None = None
    scored: set[str] = field(default_factory=set)  # validators whose vote was scored
    failed: dict[str, str] = field(default_factory=dict)  # validator -> why it gave no vote
    verified: set[Vote] = field(default_factory=set)  # votes whose signature the caller checked
    reserve: frozenset[str] = frozenset()  # validator ids not asked yet (see the module)
    wants_more: bool = False  # those asked cannot decide alone: ask the reserve (``widen``)

    @property
    def needed(self) -> int:
        return quorum(len(self.validators), self.f)

    @property
    def closed(self) -> bool:
        return self.decision is not None or self.refusal is not None

    @property
    def complete(self) -> bool:
        """Every validator asked has answered (a vote or a failure)."""
        return self.answered >= self.asked

    def widen(self) -> frozenset[str]:
        """Ask the reserve too: the validator ids moved from it to ``asked``."""
        moved, self.reserve, self.wants_more = self.reserve, frozenset(), False
        self.asked |= moved
        return moved

    def add(
        self, validator: str, vote: Vote | None, failure: str = "no vote", verified: bool = False
    ) -> None:
        """``validator`` answered: with ``vote``, or None and why (an error's code, an
        unusable vote). ``verified``: the caller checked the vote's signature (a
        ``VoteLog`` did), so deciding and scoring do not check it again."""
        self.answered.add(validator)
        if vote is not None:
            self.votes.append(vote)
            if verified:
                self.verified.add(vote)
        else:
            self.failed[validator] = failure

    def _refusal(self, refusal: QuorumNotReached, why: str, **details: object) -> None:
        message = refusal.message.removesuffix("; wait for more votes, or retry the request")
        if self.failed:
            counts = Counter(self.failed.values())
            failures = ", ".join(f"{n} {code}" for code, n in sorted(counts.items()))
            message += f"; no vote from {len(self.failed)} ({failures})"
        self.refusal = QuorumNotReached(
            f"{message}; {why}: retry the request",
            **refusal.details, failed=dict(self.failed), **details,
        )  # fmt: skip

    def settle(self, ignored: frozenset[str]) -> Decision | None:
        """The decision if the votes so far make one (closing the round); None while it
        can still come; QuorumNotReached (closing the round) once it cannot."""
        if self.closed:
            return None
        try:
            self.decision = decide(
                self.digest, self.votes, self.validators, self.f, ignored, self.verified
            )
        except QuorumNotReached as refusal:
            best = max(refusal.details.get("counted", {}).values(), default=0)
            out = len((self.asked - self.answered) - ignored)
            spare = len(self.reserve - ignored)
            if best + out + spare < self.needed:
                self._refusal(refusal, f"{out + spare} validators still out cannot make a quorum")
                assert self.refusal is not None
                raise self.refusal from None
            self.wants_more = bool(spare) and best + out < self.needed
            return None
        return self.decision

    def expire(self, ignored: frozenset[str], deadline_s: float) -> QuorumNotReached:
        """The deadline passed undecided: the refusal (the round is closed)."""
        try:
            decide(self.digest, self.votes, self.validators, self.f, ignored, self.verified)
        except QuorumNotReached as refusal:
            missing = sorted(self.asked - self.answered)
            why = f"no quorum within {deadline_s:g} s ({len(missing)} validators had not answered)"
            self._refusal(refusal, why, silent=missing)
            assert self.refusal is not None
            return self.refusal
        raise AssertionError("expire() on a round that a settle() would have decided")

    def unscored(self, quarantined: frozenset[str]) -> dict[str, Verdict]:
        """The verified verdicts not yet scored against the decision (marked scored now),
        of every validator asked (those ignored too: so they can earn their way back),
        but the quarantined."""
        if self.decision is None:
            return {}
        verified = verified_votes(self.digest, self.votes, self.validators, self.verified)
        new = {
            validator: vote.verdict
            for validator, vote in verified.items()
            if validator not in self.scored and validator not in quarantined
        }
        self.scored |= new.keys()
        return new


class VoteLog:
    """The first verified vote per (validator, digest), for the epochs kept."""

    def __init__(self, keep_epochs: int = 2) -> None:
        self.keep_epochs = keep_epochs
        self._first: dict[tuple[str, bytes], Vote] = {}
        self._by_epoch: dict[int, list[tuple[str, bytes]]] = {}

    def __len__(self) -> int:
        return len(self._first)

    def voted_on(self, digest: bytes, validators: Iterable[str]) -> bool:
        """Whether any of ``validators`` has a vote on ``digest`` here (a repeat)."""
        return any((validator, digest) in self._first for validator in validators)

    def add(
        self, vote: Vote, validators: Mapping[str, ed25519.Ed25519PublicKey], epoch: int
    ) -> Equivocation | None:
        """Remember ``vote`` (received in ``epoch``); the evidence if its validator
        signed another statement on its digest before. ``VoteInvalid`` if the signature
        does not verify with the named validator's key (or the validator is unknown).
        A vote ``add`` accepted is verified: its round need not check it again."""
        key = (vote.validator, vote.digest)
        first = self._first.get(key)
        if first is not None and first == vote:
            return None  # the same bytes again: verified when they first came
        public_key = validators.get(vote.validator)
        if public_key is None:
            raise VoteInvalid(f"a vote of unknown validator {vote.validator}")
        check_vote(vote, public_key)
        if first is not None:
            if first.statement == vote.statement:
                return None
            return Equivocation(vote.validator, vote.digest, first, vote)
        for old in [e for e in self._by_epoch if e <= epoch - self.keep_epochs]:
            for forgotten in self._by_epoch.pop(old):
                self._first.pop(forgotten, None)
        self._first[key] = vote
        self._by_epoch.setdefault(epoch, []).append(key)
        return None


def agreed_reasons(decision: Decision, f: int) -> list[str]:
    """The reasons (one text per code) that at least f+1 of the decision's matching
    votes give, in the order first given."""
    counts: Counter[str] = Counter()
    first_text: dict[str, str] = {}
    for vote in decision.votes:
        for code in {reason_code(r) for r in vote.reasons}:
            counts[code] += 1
        for reason in vote.reasons:
            first_text.setdefault(reason_code(reason), reason)
    return [text for code, text in first_text.items() if counts[code] >= f + 1]


def asset_factors(decision: Decision, f: int) -> list[str]:
    """What the decision adds to the asset's history (see the module's theory)."""
    if decision.outcome == "approve":
        return [SUCCESSES]
    codes = [reason_code(r) for r in agreed_reasons(decision, f)]
    if SIGNATURE_CODE in codes:
        return [FACTOR_OF_ERROR[SIGNATURE_CODE]]
    return [FACTOR_OF_ERROR[c] for c in codes if c in FACTOR_OF_ERROR]
