"""Validators' signed votes, the quorum's decision, and equivocation as evidence.

Theory of operation. N = 3f+1 (or more) validators each check a request's proofs
and sign a vote, Ed25519 over ``formats.VOTE || frame(validator, digest, verdict,
frame_all(reasons))``. The detector decides a verdict once ``quorum(N, f)``
validators signed it: 2f+1 when N = 3f+1, and in general the least q with
2q > N + f, so that any two quorums share at least f+1 validators, one of them
honest, and two contradictory decisions cannot both be backed by signed votes
(plain 2f+1 loses that once N > 3f+1). The votes that make the quorum are kept
with the decision as evidence anyone can re-check (``check_decision``).

Invariants of ``decide``:
- a vote counts only if it is for this digest, from a known validator that is not
  ignored, and its signature verifies with that validator's key;
- each validator counts at most once: the same statement sent twice counts once,
  and a validator that signed two different statements for this digest
  (equivocation) counts for neither;
- at most one verdict can reach the quorum (the intersection argument above).

Equivocation: two validly signed votes from one validator for one digest that
say different things (verdict or reasons). The pair is self-contained evidence:
anyone holding the validator's public key can check it (``check_equivocation``).
Two signatures over the same statement are not equivocation.

A ``Vote`` is well-formed by construction (lengths, verdict, reasons bounds); its
signature is checked only by ``check_vote``. ``Vote.to_bytes`` is the signed
bytes followed by the 64-octet signature, so a vote can cross a process or a
network as is. Nothing here signs on anyone's behalf but ``sign_vote``, given a
key; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import fields
from .errors import QuorumNotReached, VoteInvalid
from .formats import DIGEST_BYTES, VOTE, frame, frame_all

Verdict = Literal["approve", "reject"]
VERDICTS: tuple[Verdict, ...] = ("approve", "reject")
SIGNATURE_BYTES = 64  # Ed25519
MAX_REASONS = 16  # reasons in one vote
MAX_REASON_BYTES = 256  # UTF-8 octets of one reason
MAX_VOTE_BYTES = 8192  # a serialized vote; the bounds above keep a valid one far below
_VALIDATOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def _check_statement(validator: object, digest: object, verdict: object, reasons: object) -> None:
    """VoteInvalid unless the fields are a statement a validator may sign."""
    if not isinstance(validator, str) or not _VALIDATOR_ID.fullmatch(validator):
        raise VoteInvalid(
            f"validator id {validator!r} is not 1-64 of A-Z a-z 0-9 . _ : - (starting "
            "alphanumeric); use the id the validator set names it by"
        )
    if not isinstance(digest, bytes) or len(digest) != DIGEST_BYTES:
        raise VoteInvalid(f"a vote's digest is {DIGEST_BYTES} octets (a request digest)")
    if verdict not in VERDICTS:
        raise VoteInvalid(f"verdict {verdict!r} is neither 'approve' nor 'reject'")
    if not isinstance(reasons, tuple) or len(reasons) > MAX_REASONS:
        raise VoteInvalid(f"a vote's reasons are a tuple of at most {MAX_REASONS} texts")
    for reason in reasons:
        if not isinstance(reason, str) or not reason or not reason.isprintable():
            raise VoteInvalid(f"reason {reason!r} is not a non-empty line of printable text")
        if len(reason.encode("utf-8")) > MAX_REASON_BYTES:
            raise VoteInvalid(f"a reason is at most {MAX_REASON_BYTES} UTF-8 octets; shorten it")


def vote_tbs(validator: str, digest: bytes, verdict: Verdict, reasons: Iterable[str]) -> bytes:
    """The bytes a validator signs: VOTE || frame(validator, digest, verdict, reasons)."""
    reasons = tuple(reasons)
    _check_statement(validator, digest, verdict, reasons)
    return VOTE + frame(validator, digest, verdict, frame_all(reasons))


@dataclass(frozen=True)
class Vote:
    """One validator's signed verdict on one request digest."""

    validator: str
    digest: bytes
    verdict: Verdict
    reasons: tuple[str, ...]
    signature: bytes

    def __post_init__(self) -> None:
        _check_statement(self.validator, self.digest, self.verdict, self.reasons)
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise VoteInvalid(f"a vote's signature is {SIGNATURE_BYTES} octets (Ed25519)")

    @property
    def statement(self) -> tuple[Verdict, tuple[str, ...]]:
        """What the vote says; two votes of one validator on one digest must agree on it."""
        return self.verdict, self.reasons

    def tbs(self) -> bytes:
        return vote_tbs(self.validator, self.digest, self.verdict, self.reasons)

    def to_bytes(self) -> bytes:
        """The signed bytes then the signature: self-contained, checkable anywhere."""
        return self.tbs() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> Vote:
        """Parse ``to_bytes`` output strictly (VoteInvalid); the signature is not checked."""
        if not isinstance(data, bytes) or len(data) > MAX_VOTE_BYTES:
            raise VoteInvalid(f"a serialized vote is bytes of at most {MAX_VOTE_BYTES} octets")
        if not data.startswith(VOTE):
            raise VoteInvalid("these bytes are not a vote (wrong domain separator)")
        body, signature = data[len(VOTE) : -SIGNATURE_BYTES], data[-SIGNATURE_BYTES:]
        reader = _Reader(body)
        validator, digest, verdict = reader.text(), reader.field(), reader.text()
        reasons_field = _Reader(reader.field())
        reader.end()
        count = reasons_field.count(MAX_REASONS)
        reasons = tuple(reasons_field.text() for _ in range(count))
        reasons_field.end()
        vote = cls(validator, digest, cast(Verdict, verdict), reasons, signature)
        if vote.to_bytes() != data:  # the parse above is exact; this keeps it honest
            raise VoteInvalid("a serialized vote is not in its one canonical form")
        return vote

    def to_json(self) -> dict[str, Any]:
        return {
            "validator": self.validator,
            "digest": self.digest.hex(),
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, obj: object) -> Vote:
        """Parse ``to_json`` output strictly (VoteInvalid); the signature is not checked."""
        got = fields.fields(
            obj, "a vote", ("validator", "digest", "verdict", "reasons", "signature"), VoteInvalid
        )
        reasons = got["reasons"]
        if not isinstance(reasons, list):
            raise VoteInvalid("a vote's reasons are a JSON list of texts")
        return cls(
            validator=got["validator"],
            digest=fields.hex_bytes(got["digest"], "a vote's digest", DIGEST_BYTES, VoteInvalid),
            verdict=got["verdict"],
            reasons=tuple(reasons),
            signature=fields.hex_bytes(
                got["signature"], "a vote's signature", SIGNATURE_BYTES, VoteInvalid
            ),
        )


def sign_vote(
    private_key: ed25519.Ed25519PrivateKey,
    validator: str,
    digest: bytes,
    verdict: Verdict,
    reasons: Iterable[str] = (),
) -> Vote:
    reasons = tuple(reasons)
    signature = private_key.sign(vote_tbs(validator, digest, verdict, reasons))
    return Vote(validator, digest, verdict, reasons, signature)


def check_vote(vote: Vote, public_key: ed25519.Ed25519PublicKey) -> None:
    """VoteInvalid unless ``vote``'s signature verifies with ``public_key``."""
    try:
        public_key.verify(vote.signature, vote.tbs())
    except InvalidSignature:
        raise VoteInvalid(
            f"the vote of {vote.validator} on {vote.digest.hex()[:16]}... does not verify "
            "with that validator's key: forged, altered, or signed with another key",
            validator=vote.validator,
        ) from None


# -- the quorum ------------------------------------------------------------------------


def quorum(n: int, f: int) -> int:
    """Matching votes needed among ``n`` validators tolerating ``f`` faults: 2f+1 when
    n = 3f+1; in general the least q with 2q > n + f (any two quorums share f+1)."""
    if f < 0 or n < 3 * f + 1:
        raise ValueError(
            f"{n} validators cannot tolerate {f} faults: N >= 3f+1 is needed "
            f"(at most {max(n - 1, 0) // 3} faults for {n})"
        )
    return (n + f) // 2 + 1


@dataclass(frozen=True)
class Decision:
    """The quorum's verdict on one digest, with the signed votes that make it."""

    digest: bytes
    outcome: Verdict
    votes: tuple[Vote, ...]  # the matching votes: the evidence
    dissent: tuple[Vote, ...]  # valid votes for the other verdict

    def __post_init__(self) -> None:
        if not isinstance(self.digest, bytes) or len(self.digest) != DIGEST_BYTES:
            raise VoteInvalid(f"a decision's digest is {DIGEST_BYTES} octets")
        if self.outcome not in VERDICTS:
            raise VoteInvalid(f"outcome {self.outcome!r} is neither 'approve' nor 'reject'")
        for votes in (self.votes, self.dissent):
            if not isinstance(votes, tuple) or not all(isinstance(v, Vote) for v in votes):
                raise VoteInvalid("a decision's votes and dissent are tuples of votes")

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest.hex(),
            "outcome": self.outcome,
            "votes": [vote.to_json() for vote in self.votes],
            "dissent": [vote.to_json() for vote in self.dissent],
        }

    @classmethod
    def from_json(cls, obj: object) -> Decision:
        """Parse strictly (VoteInvalid); ``check_decision`` then re-verifies it."""
        got = fields.fields(
            obj, "a decision", ("digest", "outcome", "votes", "dissent"), VoteInvalid
        )
        votes, dissent = got["votes"], got["dissent"]
        if not isinstance(votes, list) or not isinstance(dissent, list):
            raise VoteInvalid("a decision's votes and dissent are JSON lists")
        return cls(
            digest=fields.hex_bytes(
                got["digest"], "a decision's digest", DIGEST_BYTES, VoteInvalid
            ),
            outcome=got["outcome"],
            votes=tuple(Vote.from_json(v) for v in votes),
            dissent=tuple(Vote.from_json(v) for v in dissent),
        )


@dataclass
class _Sifted:
    valid: dict[str, Vote]  # one counted vote per validator
    equivocators: set[str]
    discarded: Counter[str]  # why votes were not counted -> how many


def _sift(
    digest: bytes,
    votes: Iterable[Vote],
    validators: Mapping[str, ed25519.Ed25519PublicKey],
    ignored: frozenset[str],
    checked: Collection[Vote] = (),
) -> _Sifted:
    out = _Sifted({}, set(), Counter())
    for vote in votes:
        if vote.digest != digest:
            out.discarded["other digest"] += 1
        elif vote.validator not in validators:
            out.discarded["unknown validator"] += 1
        elif vote.validator in ignored:
            out.discarded["ignored validator"] += 1
        elif (first := out.valid.get(vote.validator)) is not None and first == vote:
            out.discarded["duplicate"] += 1  # the same bytes again: verified already
        else:
            try:
                if vote not in checked:
                    check_vote(vote, validators[vote.validator])
            except VoteInvalid:
                out.discarded["bad signature"] += 1
                continue
            if first is None:
                out.valid[vote.validator] = vote
            elif first.statement == vote.statement:
                out.discarded["duplicate"] += 1
            else:
                out.equivocators.add(vote.validator)
                out.discarded["equivocation"] += 1
    for validator in out.equivocators:
        del out.valid[validator]
        out.discarded["equivocation"] += 1
    return out


def verified_votes(
    digest: bytes,
    votes: Iterable[Vote],
    validators: Mapping[str, ed25519.Ed25519PublicKey],
    checked: Collection[Vote] = (),
) -> dict[str, Vote]:
    """One verified vote per validator for ``digest`` (equivocators left out): what the
    detector scores validators by, including those ``decide`` ignores. Votes in
    ``checked`` were verified by the caller (their signatures are not checked again)."""
    return _sift(digest, votes, validators, frozenset(), checked).valid


def decide(
    digest: bytes,
    votes: Iterable[Vote],
    validators: Mapping[str, ed25519.Ed25519PublicKey],
    f: int,
    ignored: frozenset[str] = frozenset(),
    checked: Collection[Vote] = (),
) -> Decision:
    """The verdict ``quorum(N, f)`` counted votes agree on (QuorumNotReached if none).

    ``ignored`` names validators whose votes do not count (quarantined, or below the
    minimum trust score); they still belong to N, the size of ``validators``. Votes in
    ``checked`` were verified by the caller (the detector verifies each vote once, as it
    arrives); the others' signatures are checked here.
    """
    needed = quorum(len(validators), f)
    if not isinstance(digest, bytes) or len(digest) != DIGEST_BYTES:
        raise ValueError(f"a request digest is {DIGEST_BYTES} octets")
    sifted = _sift(digest, votes, validators, ignored, checked)
    by_validator = sorted(sifted.valid.values(), key=lambda vote: vote.validator)
    by_verdict = {v: [vote for vote in by_validator if vote.verdict == v] for v in VERDICTS}
    reached = [v for v in VERDICTS if len(by_verdict[v]) >= needed]
    assert len(reached) <= 1, "two quorums on one digest: the quorum size is wrong"
    if not reached:
        counted = ", ".join(f"{len(by_verdict[v])} {v}" for v in VERDICTS)
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(sifted.discarded.items()))
        raise QuorumNotReached(
            f"no quorum on request {digest.hex()[:16]}...: {counted} counted of "
            f"{len(validators)} validators, {needed} matching votes needed (f={f})"
            + (f"; not counted: {skipped}" if skipped else "")
            + "; wait for more votes, or retry the request",
            digest=digest.hex(),
            counted={v: len(by_verdict[v]) for v in VERDICTS},
            needed=needed,
            not_counted=dict(sifted.discarded),
        )
    outcome = reached[0]
    dissent = [vote for v in VERDICTS if v != outcome for vote in by_verdict[v]]
    return Decision(digest, outcome, tuple(by_verdict[outcome]), tuple(dissent))


def check_decision(
    decision: Decision, validators: Mapping[str, ed25519.Ed25519PublicKey], f: int
) -> None:
    """Re-verify a stored decision: every vote known, signed, for its digest, one per
    validator, on the right side; and enough matching votes (QuorumNotReached)."""
    needed = quorum(len(validators), f)
    seen: set[str] = set()
    for vote in decision.votes + decision.dissent:
        if vote.validator not in validators:
            raise VoteInvalid(f"the decision holds a vote of unknown validator {vote.validator}")
        if vote.validator in seen:
            raise VoteInvalid(f"the decision counts validator {vote.validator} twice")
        seen.add(vote.validator)
        if vote.digest != decision.digest:
            raise VoteInvalid(f"the decision holds a vote of {vote.validator} on another digest")
        check_vote(vote, validators[vote.validator])
    if any(vote.verdict != decision.outcome for vote in decision.votes):
        raise VoteInvalid("the decision's evidence holds a vote against its outcome")
    if any(vote.verdict == decision.outcome for vote in decision.dissent):
        raise VoteInvalid("the decision's dissent holds a vote for its outcome")
    if len(decision.votes) < needed:
        raise QuorumNotReached(
            f"the decision holds {len(decision.votes)} matching votes; {needed} are needed "
            f"among {len(validators)} validators (f={f})",
            digest=decision.digest.hex(),
            needed=needed,
        )


# -- equivocation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Equivocation:
    """Two validly signed, different votes of one validator on one digest."""

    validator: str
    digest: bytes
    first: Vote
    second: Vote

    def to_json(self) -> dict[str, Any]:
        return {
            "validator": self.validator,
            "digest": self.digest.hex(),
            "first": self.first.to_bytes().hex(),
            "second": self.second.to_bytes().hex(),
        }

    @classmethod
    def from_json(cls, obj: object) -> Equivocation:
        """Parse strictly (VoteInvalid); ``check_equivocation`` then verifies it."""
        got = fields.fields(
            obj, "an equivocation", ("validator", "digest", "first", "second"), VoteInvalid
        )
        votes = []
        for name in ("first", "second"):
            text = got[name]
            if not isinstance(text, str) or len(text) > 2 * MAX_VOTE_BYTES:
                raise VoteInvalid(f"{name} is a serialized vote in hex")
            try:
                votes.append(Vote.from_bytes(bytes.fromhex(text)))
            except ValueError:
                raise VoteInvalid(f"{name} is not hex") from None
        validator = got["validator"]
        if not isinstance(validator, str):
            raise VoteInvalid("validator is text")
        digest = fields.hex_bytes(
            got["digest"], "an equivocation's digest", DIGEST_BYTES, VoteInvalid
        )
        return cls(validator, digest, first=votes[0], second=votes[1])


def find_equivocations(
    votes: Iterable[Vote], validators: Mapping[str, ed25519.Ed25519PublicKey]
) -> list[Equivocation]:
    """One Equivocation per (validator, digest) that signed two different statements,
    in the order found. Only votes that verify with a known key count: anyone can
    make an unsigned vote, and it must not frame the validator it names."""
    first: dict[tuple[str, bytes], Vote] = {}
    found: dict[tuple[str, bytes], Equivocation] = {}
    for vote in votes:
        key = (vote.validator, vote.digest)
        if key in found or vote.validator not in validators or first.get(key) == vote:
            continue
        earlier = first.get(key)
        if earlier is not None and earlier.statement == vote.statement:
            continue
        try:
            check_vote(vote, validators[vote.validator])
        except VoteInvalid:
            continue
        if earlier is None:
            first[key] = vote
        else:
            found[key] = Equivocation(vote.validator, vote.digest, earlier, vote)
    return list(found.values())


def check_equivocation(evidence: Equivocation, public_key: ed25519.Ed25519PublicKey) -> None:
    """VoteInvalid unless ``evidence`` proves its validator signed two different
    statements on its digest."""
    for vote in (evidence.first, evidence.second):
        if vote.validator != evidence.validator or vote.digest != evidence.digest:
            raise VoteInvalid("the evidence's votes are not both its validator's on its digest")
    if evidence.first.statement == evidence.second.statement:
        raise VoteInvalid("the evidence's two votes say the same thing: not equivocation")
    check_vote(evidence.first, public_key)
    check_vote(evidence.second, public_key)


# -- strict parsing of untrusted input -------------------------------------------------


class _Reader:
    """Reads ``formats.frame`` fields back, refusing anything short, long or trailing."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise VoteInvalid("a serialized vote is truncated")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def count(self, most: int) -> int:
        n = int.from_bytes(self._take(4), "big")
        if n > most:
            raise VoteInvalid(f"a serialized vote lists {n} items; at most {most} are allowed")
        return n

    def field(self) -> bytes:
        return self._take(int.from_bytes(self._take(4), "big"))

    def text(self) -> str:
        try:
            return self.field().decode("utf-8")
        except UnicodeDecodeError:
            raise VoteInvalid("a serialized vote holds text that is not UTF-8") from None

    def end(self) -> None:
        if self._pos != len(self._data):
            raise VoteInvalid("a serialized vote has bytes left over")
