"""The detector's machinery: its start, vote rounds, scores, evidence and alerts.

``ByzantineDetectorActor`` (``actor.py``) is made of this base and its parts; the
theory of operation is written there. Here: the start (the store, the stake
authority's key from the HSM, every validator's key, each a request), ``open_round``
(put a question to the validators, answer the caller once the round is decided or
refused), what every vote that comes in is used for (the round, equivocation,
scores), and the alerts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import outcome
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from loguru import logger

from trustchain.actors.detector.grouping import NOT_RECORDED, GroupCommit, Member
from trustchain.actors.hsm.messages import EnsureKey
from trustchain.actors.trust.errors import (
    NotApproved,
    QuorumNotReached,
    TrustStoreUnavailable,
    VoteInvalid,
)
from trustchain.actors.trust.params import consensus_params, faults_tolerated
from trustchain.actors.trust.rounds import (
    Round,
    VoteLog,
    agreed_reasons,
    asset_factors,
    reason_code,
)
from trustchain.actors.trust.scores import ReplayGuard, ValidatorScores, record_proof
from trustchain.actors.trust.stake import authority_key_from_spki
from trustchain.actors.trust.store import TrustStore
from trustchain.actors.trust.votes import Decision, Equivocation, Vote, quorum
from trustchain.actors.validator.messages import GetValidatorKey
from trustchain.config import TrustConfig
from trustchain.supervisors import ActorContext, Message, TrustChainError, handles
from trustchain.supervisors.registry import Reply

EQUIVOCATION = "equivocation"
VALIDATOR_BELOW_MINIMUM = "validator_below_minimum"
ASSET_PROOF_FAILED = "asset_proof_failed"
PROOF_REPLAYED = "proof_replayed"
PROOF_REBOUND = "proof_rebound"
UPSTREAM_DISAGREED = "upstream_disagreed"
ALERT_KINDS = (EQUIVOCATION, VALIDATOR_BELOW_MINIMUM, ASSET_PROOF_FAILED, PROOF_REPLAYED,
               PROOF_REBOUND, UPSTREAM_DISAGREED)  # fmt: skip
LATE_VOTES_FOR = 4.0  # after its deadline a round waits this many deadlines for late votes
# quorum first: once a round's first vote is in, the others asked have as long again as
# it took (at least this) before the reserve is asked as well
STRAGGLER_MIN_S = 0.005
MIN_RETRY_S = 0.01  # asking a validator for its key again, at the least

# Once decided: record what the decision says about the asset and give the caller's
# answer (or raise a TrustChainError); ``first`` is False when the digest was decided before.
Conclude = Callable[[Decision, bool], Any]


@dataclass(frozen=True)
class _AskKey(Message):
    """Ask a validator for its key again (it was not running at the first try)."""

    name: str
    attempt: int


@dataclass(frozen=True)
class _Deadline(Message):
    round_id: int


@dataclass(frozen=True)
class _Forget(Message):
    round_id: int


@dataclass(frozen=True)
class _Straggling(Message):
    """A quorum-first round's validators asked have not all answered in time: ask the
    reserve too."""

    round_id: int


@dataclass
class _Pending:
    round: Round
    reply: Reply
    conclude: Conclude
    timeout_s: float  # its deadline, from when it opened
    question: Message  # what the validators are asked (the reserve too, if it must be)
    opened_s: float  # monotonic
    straggling_set: bool = False  # the _Straggling timer is set (at the first answer)


class DetectorBase(GroupCommit):
    def __init__(
        self, context: ActorContext, config: TrustConfig, validators: list[str], hsm: str = "hsm"
    ) -> None:
        super().__init__(context)
        if not validators or len(set(validators)) != len(validators):
            raise ValueError(f"the detector needs distinct validator names, not {validators}")
        self.config = config
        self.validator_names = list(validators)
        self.hsm = hsm
        self.params = consensus_params(config)
        self.f = faults_tolerated(len(validators))
        self.store: TrustStore | None = None
        self.scores = ValidatorScores()
        self.authority_spki = b""
        self.authority_key: ec.EllipticCurvePublicKey | None = None
        self.keys: dict[str, ed25519.Ed25519PublicKey] = {}  # by validator id
        self.ids: dict[str, str] = {}  # actor name -> validator id
        self.vote_log = VoteLog()
        self.replays = ReplayGuard()
        self._rounds: dict[int, _Pending] = {}
        self._round_ids = itertools.count(1)
        self._rotation = itertools.count()  # who is asked first, quorum first
        self._running = False
        self.alerts = dict.fromkeys(ALERT_KINDS, 0)
        self.last_alert: dict[str, Any] | None = None

    # Start: the store, the authority's key, the validators' keys ---------------------

    def setup(self) -> None:
        self.config.database.parent.mkdir(parents=True, exist_ok=True)
        self.store = TrustStore(self.config.database)
        self.scores = ValidatorScores(scores=self.store.validator_scores())
        self.starting()
        ensure = EnsureKey(self.config.stake_authority_key, "ec-p256")
        self.request(self.hsm, ensure, self._have_authority)

    def cleanup(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def _have_authority(self, result: outcome.Outcome) -> None:
        info = result.unwrap()  # an error fails the start, with its reason
        self.authority_key = authority_key_from_spki(info.public_key_der)
        self.authority_spki = info.public_key_der
        for name in self.validator_names:
            self._ask_key(name, 0)

    def _ask_key(self, name: str, attempt: int) -> None:
        self.request(name, GetValidatorKey(), lambda result: self._have_key(name, attempt, result))

    @handles(_AskKey)
    def ask_key(self, msg: _AskKey) -> None:
        self._ask_key(msg.name, msg.attempt)

    def _have_key(self, name: str, attempt: int, result: outcome.Outcome) -> None:
        if isinstance(result, outcome.Error) and isinstance(result.error, TrustChainError):
            delay = max(MIN_RETRY_S, self.context.backoff.delay(attempt))
            logger.info("detector: {} has no key for us yet ({}); again in {:.3f} s",
                        name, result.error, delay)  # fmt: skip
            self.after(delay, _AskKey(name, attempt + 1))
            return
        answer = result.unwrap()
        validator = answer["validator"]
        key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(answer["public_key"]))
        if validator in self.keys and self.ids.get(name) != validator:
            raise ValueError(f"two validators call themselves {validator!r}")
        self.ids[name] = validator
        self.keys[validator] = key
        if not self._running and len(self.ids) == len(self.validator_names):
            self._running = True
            logger.info("detector: {} validators, f = {}, quorum {}", len(self.keys), self.f,
                        self.quorum)  # fmt: skip
            self.ready()

    # Who counts -------------------------------------------------------------------

    @property
    def quorum(self) -> int:
        return quorum(len(self.validator_names), self.f)

    def ignored(self) -> frozenset[str]:
        """Validators whose votes do not count: quarantined, or below the minimum."""
        return self.scores.below(self.config.min_trust_score)

    def quarantined(self) -> frozenset[str]:
        return frozenset(s.validator for s in self.scores.all() if s.quarantined)

    def _store(self) -> TrustStore:
        assert self.store is not None
        return self.store

    # Rounds ---------------------------------------------------------------------------

    def open_round(
        self, digest: bytes, question: Message, conclude: Conclude, timeout_s: float | None = None
    ) -> None:
        """Put ``question`` to the validators but the quarantined (a quorum of them first,
        ``trust.quorum_first``: see ``_first_asked``), and answer the current request
        (deferred) with ``conclude(decision, first)`` once the votes decide, or with
        ``quorum_not_reached`` once they cannot or the deadline passes (``timeout_s``, by
        default ``trust.decision_timeout_s``)."""
        timeout_s = self.config.decision_timeout_s if timeout_s is None else timeout_s
        reply = self.defer()
        quarantined = self.quarantined()
        candidates = [n for n in self.validator_names if self.ids[n] not in quarantined]
        asked = self._first_asked(digest, candidates)
        ids = frozenset(self.ids[n] for n in asked)
        reserve = frozenset(self.ids[n] for n in candidates) - ids
        round_ = Round(digest, self.keys, self.f, ids, reserve=reserve)
        round_id = next(self._round_ids)
        pending = _Pending(round_, reply, conclude, timeout_s, question, self.clock.monotonic())
        self._rounds[round_id] = pending
        self._settle(pending)  # too few validators left to ask: refused at once
        if round_.closed:
            self._rounds.pop(round_id)
            return
        for name in asked:
            self.request(name, question, self._answer_of(round_id, name))
        self.after(timeout_s, _Deadline(round_id))

    def _first_asked(self, digest: bytes, candidates: list[str]) -> list[str]:
        """Who is asked at once: everyone, or with ``trust.quorum_first`` a quorum of the
        validators whose votes count, in turn (each round starts one further along the
        list), and those ignored (their votes are scored, so they can earn their way
        back). The others are the round's reserve, asked when those cannot decide alone
        (a dissent, a failure) or are slow (``_Straggling``). Each check costs a validator
        about a millisecond of CPU: asking a quorum first saves N - quorum of them per
        question (a quarter at N = 4) while all is well. A question asked before (a
        validator voted on its digest: the same request again, where an equivocator
        shows) goes to everyone, so that every validator asked the first time is asked
        again and a second, different vote is caught."""
        if not self.config.quorum_first or self.vote_log.voted_on(
            digest, (self.ids[n] for n in candidates)
        ):
            return candidates
        ignored = self.ignored()
        counted = [n for n in candidates if self.ids[n] not in ignored]
        if len(counted) <= self.quorum:
            return candidates
        start = next(self._rotation) % len(counted)
        first = set((counted[start:] + counted[:start])[: self.quorum])
        return [n for n in candidates if n in first or self.ids[n] in ignored]

    def _widen(self, round_id: int, pending: _Pending) -> None:
        """Ask the round's reserve too."""
        moved = pending.round.widen()
        for name in self.validator_names:
            if self.ids[name] in moved:
                self.request(name, pending.question, self._answer_of(round_id, name))

    @handles(_Straggling)
    def straggling(self, msg: _Straggling) -> None:
        pending = self._rounds.get(msg.round_id)
        if pending is not None and not pending.round.closed and pending.round.reserve:
            self._widen(msg.round_id, pending)

    def _answer_of(self, round_id: int, name: str) -> Callable[[outcome.Outcome], None]:
        return lambda result: self._answered(round_id, name, result)

    def _answered(self, round_id: int, name: str, result: outcome.Outcome) -> None:
        vote, failure = None, "unusable vote"
        if isinstance(result, outcome.Value):
            vote = self._take_vote(name, result.value)
        elif isinstance(result, outcome.Error):
            logger.debug("detector: {} gave no vote: {}", name, result.error)
            failure = getattr(result.error, "code", type(result.error).__name__)
        pending = self._rounds.get(round_id)
        if pending is None:
            return  # a round long over: the vote served equivocation detection only
        round_ = pending.round
        round_.add(self.ids[name], vote, failure, verified=True)  # _take_vote verified it
        if round_.decision is not None:
            self._score(round_)  # a late vote
        else:
            self._settle(pending)
            if round_.wants_more:
                self._widen(round_id, pending)
            elif round_.reserve and not round_.closed and not pending.straggling_set:
                pending.straggling_set = True
                took = self.clock.monotonic() - pending.opened_s
                self.after(max(STRAGGLER_MIN_S, took), _Straggling(round_id))
        if round_.closed and round_.complete:
            self._rounds.pop(round_id, None)

    def _take_vote(self, name: str, data: Any) -> Vote | None:
        """The vote in a validator's answer, logged (VoteLog); None if unusable."""
        try:
            vote = Vote.from_bytes(data)
            evidence = self.vote_log.add(vote, self.keys, self.params.epoch(self.clock.time()))
        except VoteInvalid as exc:
            logger.warning("detector: an unusable vote from {}: {}", name, exc.message)
            return None
        if evidence is not None:
            self._caught(evidence)
        return vote

    def _settle(self, pending: _Pending) -> None:
        try:
            decision = pending.round.settle(self.ignored())
        except QuorumNotReached as refusal:
            self._refuse(pending, refusal)
            return
        if decision is not None:
            self._decided(pending, decision)

    def _decided(self, pending: _Pending, decision: Decision) -> None:
        """Record the decision and all it causes (scores, the asset's history, the
        proof's fingerprint, a registration) in the open group's transaction; its
        caller is answered once the group commits (``commit_group``)."""
        try:
            group = self._open_group()
        except TrustStoreUnavailable as exc:  # the transaction could not even begin
            self._unrecorded([pending], self.store_failed(exc, NOT_RECORDED))
            return
        answer: outcome.Outcome | None
        try:
            store = self._store()
            changed = self._score(pending.round, persist=False)
            first = store.add_decision(decision, self.clock.time(), changed)
            if not first:
                store.put_validator_scores(changed)  # decided before: the first stays
            try:
                answer = outcome.Value(pending.conclude(decision, first))
            except TrustStoreUnavailable:
                raise
            except TrustChainError as exc:
                answer = outcome.Error(exc)
        except TrustStoreUnavailable:
            answer = None  # the group's transaction is spoiled: it fails whole at commit
        group.members.append(Member(pending, answer, decision.outcome))

    def _unrecorded(self, pendings: list[Any], error: TrustStoreUnavailable) -> None:
        """Decisions the store did not take count for nothing: their rounds go (their
        late votes are not scored either) and their callers get the error."""
        gone = {id(p) for p in pendings}
        self._rounds = {i: p for i, p in self._rounds.items() if id(p) not in gone}
        for pending in pendings:
            pending.reply(outcome.Error(error))

    def _refuse(self, pending: _Pending, refusal: QuorumNotReached) -> None:
        self.outcomes["quorum_not_reached"] += 1
        logger.info("detector: {}", refusal.message)
        pending.reply(outcome.Error(refusal))

    @handles(_Deadline)
    def deadline(self, msg: _Deadline) -> None:
        pending = self._rounds.get(msg.round_id)
        if pending is None:
            return
        round_ = pending.round
        if not round_.closed:
            self._settle(pending)
        if not round_.closed:
            self._refuse(pending, round_.expire(self.ignored(), pending.timeout_s))
        if round_.complete:
            self._rounds.pop(msg.round_id, None)
        else:  # wait a while for late votes (scored, and checked for equivocation)
            self.after(LATE_VOTES_FOR * pending.timeout_s, _Forget(msg.round_id))

    @handles(_Forget)
    def forget(self, msg: _Forget) -> None:
        self._rounds.pop(msg.round_id, None)

    def rounds_open(self, most: int = 32) -> list[dict[str, Any]]:
        """Rounds not yet decided nor refused (the oldest ``most``): who answered."""
        open_ = [p.round for p in self._rounds.values() if not p.round.closed][:most]
        return [{"digest": r.digest.hex(), "asked": len(r.asked), "answered": len(r.answered)}
                for r in open_]  # fmt: skip

    # Scores, evidence, the asset's history ----------------------------------------------

    def _score(self, round_: Round, persist: bool = True) -> list[Any]:
        """Score the decided round's verified votes not yet scored; alert for a validator
        that falls below the minimum. Returns the changed scores (stored if ``persist``)."""
        assert round_.decision is not None
        before = self.ignored()
        verdicts = round_.unscored(self.quarantined())
        changed = self.scores.record_outcome(round_.decision.outcome, verdicts)
        if changed and persist:
            self.keep_scores(changed)  # (held in memory if the store fails: faults.py)
        for validator in sorted(self.ignored() - before - self.quarantined()):
            score = self.scores.get(validator).score
            self.alert(VALIDATOR_BELOW_MINIMUM,
                       f"validator {validator} scores {score:.3f}, below the minimum "
                       f"{self.config.min_trust_score:g}: its votes are not counted until it "
                       "recovers", validator=validator)  # fmt: skip
        return changed

    def _caught(self, evidence: Equivocation) -> None:
        # The open group's fate first: a group that fails puts the scores back as they
        # were when it opened, which must not undo this quarantine.
        self.commit_group()
        now = self.clock.time()
        quarantined = self.scores.quarantine(evidence.validator, now)
        if self.keep_evidence(evidence, now, quarantined):  # (held if the store fails)
            self.alert(EQUIVOCATION,
                       f"validator {evidence.validator} signed two different votes on "
                       f"{evidence.digest.hex()[:16]}...: quarantined, its votes never counted "
                       "again; the evidence is kept (trustchain trust evidence)",
                       validator=evidence.validator, digest=evidence.digest.hex())  # fmt: skip

    def record_asset(self, asset: str, factors: list[str]) -> None:
        """Add ``factors`` (one event each, now) to the asset's history."""
        if not factors:
            return
        store = self._store()
        history = store.get_asset_history(asset)
        now = self.clock.time()
        for factor in factors:
            history = record_proof(history, factor, now)
        store.put_asset_history(history)

    def alert_failures(self, asset: str, decision: Decision) -> None:
        """An asset's proofs failed (reasons f+1 rejecting validators agree on): an alert."""
        failures = asset_factors(decision, self.f) if decision.outcome == "reject" else []
        if failures:
            reasons = "; ".join(agreed_reasons(decision, self.f))
            self.alert(ASSET_PROOF_FAILED,
                       f"asset {asset}'s proofs failed ({', '.join(failures)}): {reasons}",
                       asset=asset)  # fmt: skip

    def not_approved(self, decision: Decision, what: str) -> NotApproved:
        reasons = agreed_reasons(decision, self.f)
        why = "; ".join(reasons) or "no reason given by f+1 of them"
        return NotApproved(
            f"the validators refused {what} ({len(decision.votes)} of "
            f"{len(self.validator_names)} voted reject): {why}",
            reasons=[reason_code(r) for r in reasons],
            decision=decision.to_json(),
        )

    # Alerts --------------------------------------------------------------------------

    def alert(self, kind: str, text: str, **fields: Any) -> None:
        """A detection: a WARNING line with the stable event name ``trust.<kind>``, a
        counter (``get_trust_status``, ``/metrics``) and the last alert."""
        self.alerts[kind] += 1
        self.last_alert = {"kind": kind, "text": text, "at": self.clock.time()}
        logger.bind(event=f"trust.{kind}", **fields).warning("trust alert [{}]: {}", kind, text)
