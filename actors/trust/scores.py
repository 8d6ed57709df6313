"""Trust scores for validators and assets, and the replay guard: pure, time passed in.

Validators (``ValidatorScores``). A score in [0, 1], starting at
``ValidatorRules.initial``. After each decision every validator whose verified
vote is known moves: a vote against the outcome loses ``penalty``, a vote with it
gains ``recovery`` (capped at 1). Recovery is slower than the penalty, so a
validator that dissents more often than recovery/(penalty+recovery) of the time
(about 1 in 11 with the defaults) drifts down. Equivocation quarantines at once:
score 0, ``quarantined`` set, kept, and never recovers (an operator clears it,
outside this module). ``below(min_trust_score)`` names the validators the
detector ignores. Feed it the verified votes of ignored validators too
(``votes.verified_votes``): otherwise a validator once below the minimum could
never earn its way back.

Assets (``asset_trust``). A Beta reputation (Josang and Ismail, 2002) over the
asset's proof history, with exponential recency decay:

    score = (1 + successes) / (2 + successes + sum(WEIGHTS[k] * count[k]))

each count halving every ``half_life_s``. An asset with no history scores 0.5;
the score is computed from the very ``factors`` returned, so it is explained by
them. Record only what the asset itself did: a request whose asset signature
fails was not made by that asset, so signature failures are shown but weigh 0
(anyone could otherwise lower any asset's score), and only proofs checked after
the asset signature verified count as the asset's failures.

Replays (``ReplayGuard``). Remembers the fingerprints of proofs that verified,
with the digest and asset they came with, per epoch: the same proof again with
the same digest and asset is ``replayed`` (perhaps a retry); with another digest
or asset it is ``rebound`` (an attempt to reuse someone's proof). Memory is
bounded by epochs: a request digest binds its epoch, so proofs older than the
epochs kept are stale anyway and are forgotten (``RegistrationStale`` if asked).
Within an epoch memory grows with the proofs accepted, which the proof of work
prices. Only remember proofs that verified: otherwise whoever sees a genuine
proof first could present it wrongly and have its genuine use called rebound.
What the guard remembers lives in a ``FingerprintMemory``: a dict by default
(``InMemoryFingerprints``), or the trust store's table (``TrustStore.fingerprints``),
so that a detector's restart forgets nothing; the guard's logic is the same on both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from .errors import RegistrationStale
from .formats import REPLAY_FINGERPRINT, frame
from .votes import Decision, Verdict

# -- validators ------------------------------------------------------------------------

DEFAULT_MIN_TRUST_SCORE = 0.5
_DIGITS = 9  # scores are rounded so that repeated steps land on the numbers people expect


@dataclass(frozen=True)
class ValidatorRules:
    """How validator scores move."""

    initial: float = 1.0  # a validator's score before any decision
    penalty: float = 0.1  # lost for a vote against the decided outcome
    recovery: float = 0.01  # gained for a vote with the decided outcome (capped at 1)

    def __post_init__(self) -> None:
        for name in ("initial", "penalty", "recovery"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"validator score rule {name} must be within [0, 1]")


@dataclass(frozen=True)
class ValidatorScore:
    validator: str
    score: float
    quarantined: bool = False
    agreed: int = 0  # votes with the decided outcome
    dissented: int = 0  # votes against it
    quarantined_at_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "validator": self.validator,
            "score": self.score,
            "quarantined": self.quarantined,
            "agreed": self.agreed,
            "dissented": self.dissented,
            "quarantined_at_s": self.quarantined_at_s,
        }


def score_vote(
    current: ValidatorScore, verdict: Verdict, outcome: Verdict, rules: ValidatorRules
) -> ValidatorScore:
    """``current`` after one vote on a decided digest; a quarantined score stays 0."""
    if current.quarantined:
        return current
    if verdict == outcome:
        score = min(1.0, current.score + rules.recovery)
        return replace(current, score=round(score, _DIGITS), agreed=current.agreed + 1)
    score = max(0.0, current.score - rules.penalty)
    return replace(current, score=round(score, _DIGITS), dissented=current.dissented + 1)


def quarantine(current: ValidatorScore, now_s: float) -> ValidatorScore:
    """Caught equivocating: score 0 for good; the first quarantine's time is kept."""
    if current.quarantined:
        return current
    return replace(current, score=0.0, quarantined=True, quarantined_at_s=now_s)


class ValidatorScores:
    """Every validator's score; methods return the scores they changed (to store)."""

    def __init__(
        self, rules: ValidatorRules | None = None, scores: Iterable[ValidatorScore] = ()
    ) -> None:
        self.rules = rules or ValidatorRules()
        self._scores = {s.validator: s for s in scores}

    def get(self, validator: str) -> ValidatorScore:
        return self._scores.get(validator) or ValidatorScore(validator, self.rules.initial)

    def copy(self) -> ValidatorScores:
        """An independent copy (the scores are immutable values): to put back if what
        changed them cannot be recorded."""
        return ValidatorScores(self.rules, self._scores.values())

    def all(self) -> list[ValidatorScore]:
        return [self._scores[v] for v in sorted(self._scores)]

    def record_outcome(
        self, outcome: Verdict, verdicts: Mapping[str, Verdict]
    ) -> list[ValidatorScore]:
        """Score each validator's (verified) verdict against the decided outcome."""
        changed = []
        for validator in sorted(verdicts):
            before = self.get(validator)
            after = score_vote(before, verdicts[validator], outcome, self.rules)
            if after != before:
                self._scores[validator] = after
                changed.append(after)
        return changed

    def record_decision(self, decision: Decision) -> list[ValidatorScore]:
        """``record_outcome`` for the votes a decision counted (evidence and dissent)."""
        votes = decision.votes + decision.dissent
        return self.record_outcome(decision.outcome, {v.validator: v.verdict for v in votes})

    def quarantine(self, validator: str, now_s: float) -> ValidatorScore:
        after = quarantine(self.get(validator), now_s)
        self._scores[validator] = after
        return after

    def below(self, min_trust_score: float = DEFAULT_MIN_TRUST_SCORE) -> frozenset[str]:
        """The validators to ignore: quarantined, or scoring under ``min_trust_score``.
        A validator never scored has ``rules.initial``."""
        low = {v for v, s in self._scores.items() if s.quarantined or s.score < min_trust_score}
        return frozenset(low)


# -- assets ----------------------------------------------------------------------------

ProofKind = Literal["work", "time", "stake", "space", "signature"]
PROOF_KINDS: tuple[ProofKind, ...] = ("work", "time", "stake", "space", "signature")
SUCCESSES = "successes"
STALE_STAKE = "stale_stake"
REPLAYED = "replayed"
REBOUND = "rebound"
FACTORS: tuple[str, ...] = (
    SUCCESSES, *(f"{kind}_failures" for kind in PROOF_KINDS), STALE_STAKE, REPLAYED, REBOUND,
)  # fmt: skip

WEIGHTS: Mapping[str, float] = {
    "work_failures": 1.0,  # a proof that does not hold: one failure each
    "time_failures": 1.0,
    "stake_failures": 1.0,  # a stake record that is not valid (not merely expired)
    "space_failures": 1.0,
    "signature_failures": 0.0,  # not the asset's doing: anyone can send a bad signature
    STALE_STAKE: 0.5,  # an expired stake record: often an honest lapse
    REPLAYED: 0.25,  # the same request again: often a retry (or a third party's replay)
    REBOUND: 3.0,  # someone else's proof, or one made for another request: cheating
}
DEFAULT_HALF_LIFE_S = 7 * 24 * 3600.0  # a week-old event weighs half

# The consensus's typed errors (their codes), as the factor each counts against.
FACTOR_OF_ERROR: Mapping[str, str] = {
    "work_invalid": "work_failures",
    "time_proof_invalid": "time_failures",
    "stake_invalid": "stake_failures",
    "stake_expired": STALE_STAKE,
    "space_proof_invalid": "space_failures",
    "asset_signature_invalid": "signature_failures",
}


def failure_factor(kind: ProofKind) -> str:
    if kind not in PROOF_KINDS:
        raise ValueError(f"proof kind {kind!r} is none of {', '.join(PROOF_KINDS)}")
    return f"{kind}_failures"


def _decayed(value: float, since_s: float, now_s: float, half_life_s: float) -> float:
    """``value`` as of ``now_s``; a clock that steps back decays nothing."""
    return value * 0.5 ** (max(0.0, now_s - since_s) / half_life_s)


@dataclass(frozen=True)
class AssetHistory:
    """An asset's proof history as decayed counts (all as of ``as_of_s``) and totals.

    Treat the mappings as read-only: ``record_proof`` returns a new history."""

    asset: str
    as_of_s: float = 0.0
    counts: Mapping[str, float] = field(default_factory=dict)  # decayed, as of as_of_s
    totals: Mapping[str, int] = field(default_factory=dict)  # ever, never decayed

    def to_json(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "as_of_s": self.as_of_s,
            "counts": dict(self.counts),
            "totals": dict(self.totals),
        }


def record_proof(
    history: AssetHistory,
    factor: str,
    now_s: float,
    half_life_s: float = DEFAULT_HALF_LIFE_S,
) -> AssetHistory:
    """``history`` with one more event of ``factor`` at ``now_s``."""
    if factor not in FACTORS:
        raise ValueError(f"{factor!r} is none of the asset trust factors: {', '.join(FACTORS)}")
    as_of = max(history.as_of_s, now_s)
    since = history.as_of_s
    counts = {k: _decayed(v, since, as_of, half_life_s) for k, v in history.counts.items()}
    counts[factor] = counts.get(factor, 0.0) + 1.0
    totals = dict(history.totals)
    totals[factor] = totals.get(factor, 0) + 1
    return AssetHistory(history.asset, as_of, counts, totals)


@dataclass(frozen=True)
class AssetTrust:
    score: float
    factors: dict[str, float]  # decayed count of each of FACTORS

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "factors": dict(self.factors)}


def score_from_factors(factors: Mapping[str, float]) -> float:
    """The Beta reputation: (1 + successes) / (2 + successes + weighted failures)."""
    good = factors.get(SUCCESSES, 0.0)
    bad = sum(weight * factors.get(name, 0.0) for name, weight in WEIGHTS.items())
    return round((1.0 + good) / (2.0 + good + bad), _DIGITS)


def asset_trust(
    history: AssetHistory, now_s: float, half_life_s: float = DEFAULT_HALF_LIFE_S
) -> AssetTrust:
    """The asset's score at ``now_s`` and the factors it is computed from."""
    factors = {
        name: round(_decayed(history.counts.get(name, 0.0), history.as_of_s, now_s, half_life_s), 6)
        for name in FACTORS
    }
    return AssetTrust(score_from_factors(factors), factors)


# -- replays ---------------------------------------------------------------------------

Seen = Literal["new", "replayed", "rebound"]


def proof_fingerprint(kind: str, *fields: bytes | int | str) -> bytes:
    """What a proof is remembered by: SHA-256 over its kind and identifying fields, e.g.
    ("work", digest, nonce), ("time", VDF output), ("stake", stake record bytes, epoch).
    Put the epoch in a registration proof's fields: the same stake record presented
    again in a later epoch is a new registration, not a replay."""
    return hashlib.sha256(REPLAY_FINGERPRINT + frame(kind, *fields)).digest()


@dataclass(frozen=True)
class FirstSeen:
    """Where a proof was first seen: the request digest and asset it came with, its epoch."""

    digest: bytes
    asset: str
    epoch: int


class FingerprintMemory(Protocol):
    """What a ``ReplayGuard`` remembers, wherever it is kept."""

    def __len__(self) -> int: ...

    def newest_epoch(self) -> int | None:
        """The newest epoch the guard has seen a proof of (None: none yet)."""
        ...

    def advance(self, newest: int, oldest_kept: int) -> None:
        """``newest`` is the newest epoch now; forget fingerprints of epochs before
        ``oldest_kept``."""
        ...

    def first_seen(self, fingerprint: bytes) -> FirstSeen | None: ...

    def remember(self, fingerprint: bytes, first: FirstSeen) -> None: ...


class InMemoryFingerprints:
    """A ``FingerprintMemory`` in a dict: gone when its owner is."""

    def __init__(self) -> None:
        self._seen: dict[bytes, FirstSeen] = {}
        self._by_epoch: dict[int, list[bytes]] = {}
        self._newest: int | None = None

    def __len__(self) -> int:
        return len(self._seen)

    def newest_epoch(self) -> int | None:
        return self._newest

    def advance(self, newest: int, oldest_kept: int) -> None:
        self._newest = newest
        for old in [e for e in self._by_epoch if e < oldest_kept]:
            for fingerprint in self._by_epoch.pop(old):
                del self._seen[fingerprint]

    def first_seen(self, fingerprint: bytes) -> FirstSeen | None:
        return self._seen.get(fingerprint)

    def remember(self, fingerprint: bytes, first: FirstSeen) -> None:
        self._seen[fingerprint] = first
        self._by_epoch.setdefault(first.epoch, []).append(fingerprint)


def replay_verdict(first: FirstSeen | None, digest: bytes, asset: str) -> Seen:
    """A verified proof first seen as ``first`` (None: never), now with ``digest`` and
    ``asset``: new, replayed (the same request again) or rebound (another one)."""
    if first is None:
        return "new"
    return "replayed" if (first.digest, first.asset) == (digest, asset) else "rebound"


class ReplayGuard:
    """Proof fingerprints of the last ``keep_epochs`` epochs and where they were first
    seen, kept in ``memory`` (in memory unless given one)."""

    def __init__(self, keep_epochs: int = 2, memory: FingerprintMemory | None = None) -> None:
        if keep_epochs < 1:
            raise ValueError("keep at least the current epoch")
        self.keep_epochs = keep_epochs
        self.memory: FingerprintMemory = InMemoryFingerprints() if memory is None else memory

    def __len__(self) -> int:
        return len(self.memory)

    @property
    def oldest_kept(self) -> int | None:
        newest = self.memory.newest_epoch()
        return None if newest is None else newest - self.keep_epochs + 1

    def check(self, fingerprint: bytes, digest: bytes, asset: str, epoch: int) -> Seen:
        """Whether a verified proof is new (remembered from now on), replayed (seen with
        this digest and asset) or rebound (seen with another digest or asset)."""
        newest = self.memory.newest_epoch()
        if newest is None or epoch > newest:
            self.memory.advance(epoch, epoch - self.keep_epochs + 1)
        oldest = self.oldest_kept
        if oldest is not None and epoch < oldest:
            raise RegistrationStale(
                f"a proof of epoch {epoch} is older than the epochs kept ({oldest} onward); "
                "register and prove again in the current epoch",
                epoch=epoch,
            )
        first = self.memory.first_seen(fingerprint)
        if first is None:
            self.memory.remember(fingerprint, FirstSeen(digest, asset, epoch))
        return replay_verdict(first, digest, asset)
