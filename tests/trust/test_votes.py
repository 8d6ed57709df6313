"""Votes, the quorum's decision and equivocation: what counts, what is refused, and the
Byzantine properties (hypothesis) of counting with up to f and more than f faults."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustchain.actors.trust import formats
from trustchain.actors.trust.errors import QuorumNotReached, VoteInvalid
from trustchain.actors.trust.votes import (
    MAX_REASON_BYTES,
    MAX_REASONS,
    MAX_VOTE_BYTES,
    Decision,
    Equivocation,
    Vote,
    check_decision,
    check_equivocation,
    check_vote,
    decide,
    find_equivocations,
    quorum,
    sign_vote,
    verified_votes,
    vote_tbs,
)


def _key(seed: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest())


IDS = [f"v{i}" for i in range(10)]
OUTSIDER = "x0"  # a validator id no validator set here holds
KEYS = {v: _key(v) for v in [*IDS, OUTSIDER]}
PUBLIC = {v: k.public_key() for v, k in KEYS.items()}
MALLORY = _key("mallory")  # knows no validator's key
DIGEST = hashlib.sha256(b"request").digest()
OTHER_DIGEST = hashlib.sha256(b"another request").digest()


def validators(n: int) -> dict[str, ed25519.Ed25519PublicKey]:
    return {v: PUBLIC[v] for v in IDS[:n]}


def vote(validator: str, verdict: str = "approve", reasons=(), digest: bytes = DIGEST) -> Vote:
    return sign_vote(KEYS[validator], validator, digest, verdict, reasons)  # type: ignore[arg-type]


def forged(validator: str, verdict: str = "reject", digest: bytes = DIGEST) -> Vote:
    return sign_vote(MALLORY, validator, digest, verdict)  # type: ignore[arg-type]


# -- a vote ----------------------------------------------------------------------------


def test_a_vote_signs_the_separator_and_the_framed_statement() -> None:
    v = vote("v0", "reject", ["work_invalid", "stake_expired"])
    expected = formats.VOTE + formats.frame(
        "v0", DIGEST, "reject", formats.frame_all(["work_invalid", "stake_expired"])
    )
    assert vote_tbs("v0", DIGEST, "reject", ("work_invalid", "stake_expired")) == expected
    PUBLIC["v0"].verify(v.signature, expected)
    check_vote(v, PUBLIC["v0"])


def test_a_vote_checked_with_another_key_or_altered_is_invalid() -> None:
    v = vote("v0")
    with pytest.raises(VoteInvalid):
        check_vote(v, PUBLIC["v1"])
    for altered in (
        dataclasses.replace(v, verdict="reject"),
        dataclasses.replace(v, reasons=("extra",)),
        dataclasses.replace(v, digest=OTHER_DIGEST),
        dataclasses.replace(v, validator="v1"),
        dataclasses.replace(v, signature=bytes(64)),
    ):
        with pytest.raises(VoteInvalid):
            check_vote(altered, PUBLIC[altered.validator])


@pytest.mark.parametrize(
    "changes",
    [
        {"validator": ""},
        {"validator": "v 1"},
        {"validator": "-v"},
        {"validator": "v" * 65},
        {"digest": b"short"},
        {"digest": bytearray(32)},
        {"verdict": "maybe"},
        {"verdict": True},
        {"reasons": ["a list"]},
        {"reasons": ("",)},
        {"reasons": ("two\nlines",)},
        {"reasons": ("x" * (MAX_REASON_BYTES + 1),)},
        {"reasons": ("é" * (MAX_REASON_BYTES // 2 + 1),)},  # counted in UTF-8 octets
        {"reasons": ("r",) * (MAX_REASONS + 1)},
        {"reasons": (1,)},
        {"signature": b""},
        {"signature": bytes(63)},
    ],
)
def test_a_malformed_vote_cannot_be_made(changes) -> None:
    fields = {"validator": "v0", "digest": DIGEST, "verdict": "approve", "reasons": ()}
    fields["signature"] = bytes(64)
    with pytest.raises(VoteInvalid):
        Vote(**(fields | changes))


def test_the_largest_vote_fits_its_serialized_bound() -> None:
    reasons = ("x" * MAX_REASON_BYTES,) * MAX_REASONS
    v = sign_vote(KEYS["v0"], "v" * 64, DIGEST, "reject", reasons)
    assert len(v.to_bytes()) <= MAX_VOTE_BYTES
    assert Vote.from_bytes(v.to_bytes()) == v


reasons_st = st.lists(
    st.text(
        st.characters(categories=["L", "N", "P"], include_characters=" "), min_size=1, max_size=30
    ),
    max_size=4,
).map(tuple)


@given(st.sampled_from(IDS), st.sampled_from(["approve", "reject"]), reasons_st)
def test_a_vote_round_trips_through_bytes_and_json(validator, verdict, reasons) -> None:
    v = vote(validator, verdict, reasons)
    assert Vote.from_bytes(v.to_bytes()) == v
    assert Vote.from_json(v.to_json()) == v
    check_vote(Vote.from_bytes(v.to_bytes()), PUBLIC[validator])


@given(st.binary(max_size=300))
def test_any_bytes_parse_to_a_vote_or_vote_invalid(data) -> None:
    for candidate in (data, formats.VOTE + data):
        try:
            parsed = Vote.from_bytes(candidate)
        except VoteInvalid:
            continue
        assert parsed.to_bytes() == candidate


@given(st.data())
def test_a_serialized_vote_cut_extended_or_flipped_is_refused_or_fails_its_check(data) -> None:
    raw = vote("v3", "reject", ("space_proof_invalid",)).to_bytes()
    i = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    for mutated in (raw[:i], raw + b"\x00", raw[:i] + bytes([raw[i] ^ (1 << bit)]) + raw[i + 1 :]):
        try:
            parsed = Vote.from_bytes(mutated)
        except VoteInvalid:
            continue
        with pytest.raises(VoteInvalid):
            check_vote(parsed, PUBLIC.get(parsed.validator, PUBLIC["v3"]))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda j: j | {"extra": 1},
        lambda j: {k: v for k, v in j.items() if k != "reasons"},
        lambda j: j | {"digest": j["digest"].upper()},
        lambda j: j | {"digest": " " + j["digest"][1:]},
        lambda j: j | {"signature": j["signature"][:-2]},
        lambda j: j | {"reasons": "work_invalid"},
        lambda j: j | {"verdict": "APPROVE"},
        lambda j: j | {"validator": 7},
        lambda j: [j],
    ],
)
def test_vote_json_is_parsed_strictly(mutate) -> None:
    with pytest.raises(VoteInvalid):
        Vote.from_json(mutate(vote("v0", "reject", ("r",)).to_json()))


def test_from_bytes_refuses_wrong_separator_trailing_bytes_and_bad_text() -> None:
    raw = vote("v0").to_bytes()
    with pytest.raises(VoteInvalid, match="domain separator"):
        Vote.from_bytes(formats.WORK + raw[len(formats.VOTE) :])
    with pytest.raises(VoteInvalid):
        Vote.from_bytes(raw[:-64] + b"\x00" + raw[-64:])
    bad_utf8 = formats.VOTE + b"\x00\x00\x00\x02\xc3\x28" + raw[len(formats.VOTE) + 6 :]
    with pytest.raises(VoteInvalid):
        Vote.from_bytes(bad_utf8)
    many = formats.VOTE + formats.frame("v0", DIGEST, "approve")
    many += formats.frame((MAX_REASONS + 1).to_bytes(4, "big")) + bytes(64)
    with pytest.raises(VoteInvalid, match="at most"):
        Vote.from_bytes(many)
    with pytest.raises(VoteInvalid):
        Vote.from_bytes(b"x" * (MAX_VOTE_BYTES + 1))


# -- the quorum ------------------------------------------------------------------------


def test_the_quorum_is_2f_plus_1_of_3f_plus_1_and_intersects_in_f_plus_1_beyond() -> None:
    assert [quorum(3 * f + 1, f) for f in range(5)] == [1, 3, 5, 7, 9]
    for n in range(1, 30):
        for f in range(0, (n - 1) // 3 + 1):
            q = quorum(n, f)
            assert 2 * q - n >= f + 1  # two quorums share an honest validator
            assert q <= n - f  # the honest alone can reach it
    with pytest.raises(ValueError, match="3f"):
        quorum(3, 1)
    with pytest.raises(ValueError):
        quorum(4, -1)


def test_three_of_four_matching_votes_decide_and_are_kept_as_evidence() -> None:
    votes = [vote("v2"), vote("v0"), vote("v3", "reject", ["work_invalid"]), vote("v1")]
    decision = decide(DIGEST, votes, validators(4), f=1)
    assert decision.outcome == "approve"
    assert [v.validator for v in decision.votes] == ["v0", "v1", "v2"]
    assert [v.validator for v in decision.dissent] == ["v3"]
    check_decision(decision, validators(4), f=1)


def test_a_reject_quorum_decides_reject() -> None:
    votes = [vote(v, "reject", ["time_proof_invalid"]) for v in ("v0", "v1", "v2")]
    assert decide(DIGEST, votes, validators(4), f=1).outcome == "reject"


def test_two_votes_of_four_are_no_quorum_and_the_error_says_what_arrived() -> None:
    votes = [vote("v0"), vote("v1"), forged("v2", "approve"), vote("v3", "reject")]
    with pytest.raises(QuorumNotReached) as caught:
        decide(DIGEST, votes, validators(4), f=1)
    err = caught.value
    assert "2 approve, 1 reject" in err.message and "3 matching votes needed" in err.message
    assert "1 bad signature" in err.message
    assert err.details["counted"] == {"approve": 2, "reject": 1}
    assert err.details["needed"] == 3
    assert err.code == "quorum_not_reached"


def test_forged_votes_are_not_counted() -> None:
    votes = [vote("v0"), forged("v1", "approve"), forged("v2", "approve"), vote("v3")]
    with pytest.raises(QuorumNotReached):
        decide(DIGEST, votes, validators(4), f=1)
    unsigned = dataclasses.replace(vote("v1"), signature=bytes(64))
    with pytest.raises(QuorumNotReached):
        decide(DIGEST, [vote("v0"), unsigned, vote("v3")], validators(4), f=1)


def test_a_forged_vote_does_not_block_the_genuine_one_after_it() -> None:
    votes = [forged("v0"), vote("v0"), vote("v1"), vote("v2")]
    assert decide(DIGEST, votes, validators(4), f=1).outcome == "approve"


def test_votes_on_another_digest_are_not_counted() -> None:
    votes = [vote("v0"), vote("v1"), vote("v2", digest=OTHER_DIGEST)]
    with pytest.raises(QuorumNotReached, match="1 other digest"):
        decide(DIGEST, votes, validators(4), f=1)


def test_votes_of_unknown_validators_are_not_counted() -> None:
    votes = [vote("v0"), vote("v1"), vote("v7")]  # v7 is not among the four
    with pytest.raises(QuorumNotReached, match="1 unknown validator"):
        decide(DIGEST, votes, validators(4), f=1)


def test_votes_of_ignored_validators_are_not_counted_but_they_stay_in_n() -> None:
    votes = [vote(v) for v in ("v0", "v1", "v2", "v3")]
    with pytest.raises(QuorumNotReached, match="2 ignored validator"):
        decide(DIGEST, votes, validators(4), f=1, ignored=frozenset({"v0", "v1"}))
    decision = decide(DIGEST, votes, validators(4), f=1, ignored=frozenset({"v0"}))
    assert "v0" not in {v.validator for v in decision.votes}


def test_a_validator_voting_twice_the_same_counts_once() -> None:
    v0 = vote("v0")
    with pytest.raises(QuorumNotReached, match="2 duplicate"):
        decide(DIGEST, [v0, v0, Vote.from_bytes(v0.to_bytes()), vote("v1")], validators(4), f=1)


def test_an_equivocating_validator_counts_for_neither_side() -> None:
    votes = [vote("v0"), vote("v1"), vote("v2"), vote("v2", "reject")]
    with pytest.raises(QuorumNotReached, match="equivocation"):
        decide(DIGEST, votes, validators(4), f=1)
    assert set(verified_votes(DIGEST, votes, validators(4))) == {"v0", "v1"}


def test_more_validators_than_3f_plus_1_need_more_than_2f_plus_1() -> None:
    votes = [vote(v) for v in ("v0", "v1", "v2")] + [vote(v, "reject") for v in ("v3", "v4", "v5")]
    with pytest.raises(QuorumNotReached, match="4 matching votes needed"):
        decide(DIGEST, votes, validators(6), f=1)


def test_too_few_validators_for_f_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="3f"):
        decide(DIGEST, [], validators(6), f=2)


def test_a_decision_round_trips_through_json_and_rechecks() -> None:
    votes = [vote(v) for v in ("v0", "v1", "v2", "v4", "v6")] + [vote("v5", "reject", ["r"])]
    decision = decide(DIGEST, votes, validators(7), f=2)
    again = Decision.from_json(decision.to_json())
    assert again == decision
    check_decision(again, validators(7), f=2)


def test_a_tampered_decision_fails_its_check() -> None:
    decision = decide(DIGEST, [vote(v) for v in ("v0", "v1", "v2")], validators(4), f=1)
    v0, v1, _ = decision.votes
    elsewhere = vote("v2", digest=OTHER_DIGEST)
    cases = {
        "short": dataclasses.replace(decision, votes=(v0, v1)),
        "twice": dataclasses.replace(decision, votes=(v0, v1, v1)),
        "forged": dataclasses.replace(decision, votes=(v0, v1, forged("v3", "approve"))),
        "other digest": dataclasses.replace(decision, votes=(v0, v1, elsewhere)),
        "unknown": dataclasses.replace(decision, votes=(v0, v1, vote("v9"))),
        "flipped": dataclasses.replace(decision, outcome="reject"),
        "dissent": dataclasses.replace(decision, dissent=(vote("v3"),)),
    }  # fmt: skip
    with pytest.raises(QuorumNotReached):
        check_decision(cases.pop("short"), validators(4), f=1)
    for name, bad in cases.items():
        with pytest.raises(VoteInvalid):
            check_decision(bad, validators(4), f=1)
            pytest.fail(name)


def test_decision_json_is_parsed_strictly() -> None:
    good = decide(DIGEST, [vote(v) for v in ("v0", "v1", "v2")], validators(4), f=1).to_json()
    for bad in (good | {"outcome": "abstain"}, good | {"votes": {}}, good | {"x": 1}, None):
        with pytest.raises(VoteInvalid):
            Decision.from_json(bad)


# -- equivocation ----------------------------------------------------------------------


def test_two_different_signed_votes_are_equivocation_anyone_can_check() -> None:
    first, second = vote("v1"), vote("v1", "reject", ["work_invalid"])
    found = find_equivocations([vote("v0"), first, vote("v2"), second], validators(4))
    assert found == [Equivocation("v1", DIGEST, first, second)]
    check_equivocation(found[0], PUBLIC["v1"])
    assert Equivocation.from_json(found[0].to_json()) == found[0]
    with pytest.raises(VoteInvalid):
        check_equivocation(found[0], PUBLIC["v0"])


def test_same_verdict_with_other_reasons_is_equivocation() -> None:
    votes = [vote("v1", "reject", ["a"]), vote("v1", "reject", ["b"])]
    assert len(find_equivocations(votes, validators(4))) == 1


def test_the_same_vote_twice_or_votes_on_two_digests_are_not_equivocation() -> None:
    votes = [vote("v1"), vote("v1"), vote("v1", "reject", digest=OTHER_DIGEST)]
    assert find_equivocations(votes, validators(4)) == []


def test_a_forged_vote_cannot_frame_a_validator_as_equivocating() -> None:
    votes = [vote("v1"), forged("v1", "reject"), vote("v9", "reject")]
    assert find_equivocations(votes, validators(4)) == []


def test_evidence_that_does_not_hold_is_refused() -> None:
    a, b = vote("v1"), vote("v1", "reject")
    for bad in (
        Equivocation("v1", DIGEST, a, a),
        Equivocation("v1", DIGEST, a, forged("v1")),
        Equivocation("v1", DIGEST, a, vote("v1", "reject", digest=OTHER_DIGEST)),
        Equivocation("v2", DIGEST, a, b),
        Equivocation("v1", OTHER_DIGEST, a, b),
    ):
        with pytest.raises(VoteInvalid):
            check_equivocation(bad, PUBLIC["v1"])


# -- Byzantine properties --------------------------------------------------------------

BEHAVIOURS = ("always-accept", "always-reject", "random", "equivocating", "silent")
NOISE = ("forged", "unsigned", "other-digest", "unknown", "duplicate")


@st.composite
def rounds(draw, *, at_most_f: bool):
    """A round of votes: honest validators voting the honest verdict (some votes lost),
    Byzantine ones behaving as drawn, plus forged and misdirected noise, shuffled."""
    n = draw(st.sampled_from([4, 7, 10]))
    f = (n - 1) // 3
    members = IDS[:n]
    byzantine_count = draw(st.integers(0, f) if at_most_f else st.integers(f + 1, n))
    byzantine = draw(st.permutations(members))[:byzantine_count]
    honest_verdict = draw(st.sampled_from(["approve", "reject"]))
    votes: list[Vote] = []
    equivocators: set[str] = set()
    for v in byzantine:
        behaviour = draw(st.sampled_from(BEHAVIOURS))
        if behaviour == "always-accept":
            votes.append(vote(v, "approve"))
        elif behaviour == "always-reject":
            votes.append(vote(v, "reject", ["lying"]))
        elif behaviour == "random":
            votes.append(vote(v, draw(st.sampled_from(["approve", "reject"])), draw(reasons_st)))
        elif behaviour == "equivocating":
            first = draw(st.sampled_from(["approve", "reject"]))
            votes.append(vote(v, first))
            votes.append(vote(v, "reject" if first == "approve" else "approve", ["second"]))
            equivocators.add(v)
    honest = [v for v in members if v not in byzantine]
    arrived = [v for v in honest if draw(st.booleans())]
    votes += [
        vote(v, honest_verdict, [] if honest_verdict == "approve" else ["honest"]) for v in arrived
    ]
    dishonest = "reject" if honest_verdict == "approve" else "approve"
    for kind in draw(st.lists(st.sampled_from(NOISE), max_size=6)):
        target = draw(st.sampled_from(members))
        if kind == "forged":
            votes.append(forged(target, dishonest))
        elif kind == "unsigned":
            votes.append(dataclasses.replace(vote(target, dishonest), signature=bytes(64)))
        elif kind == "other-digest":
            votes.append(vote(target, dishonest, digest=OTHER_DIGEST))
        elif kind == "unknown":
            votes.append(vote(draw(st.sampled_from([*IDS[n:], OUTSIDER])), dishonest))
        elif votes:
            votes.append(draw(st.sampled_from(votes)))  # a copy of one already sent
    order = draw(st.permutations(votes))
    return n, f, honest_verdict, len(arrived), order, equivocators  # fmt: skip


def _check_counted(decision: Decision, votes: list[Vote], n: int, f: int) -> None:
    """Every counted vote is one that was sent, genuine, on this digest, one per validator."""
    sent = {v.to_bytes() for v in votes}
    counted = decision.votes + decision.dissent
    assert len({v.validator for v in counted}) == len(counted)
    for v in counted:
        assert v.to_bytes() in sent and v.digest == DIGEST
        check_vote(v, PUBLIC[v.validator])
    assert len(decision.votes) >= quorum(n, f) == 2 * f + 1
    check_decision(decision, validators(n), f)


_fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_fast
@given(rounds(at_most_f=True))
def test_with_at_most_f_byzantine_the_honest_verdict_wins_and_only_it(round_) -> None:
    n, f, honest_verdict, honest_arrived, votes, _ = round_
    try:
        decision = decide(DIGEST, votes, validators(n), f)
    except QuorumNotReached:
        assert honest_arrived < 2 * f + 1, "2f+1 honest votes arrived: the quorum must form"
        return
    assert decision.outcome == honest_verdict
    _check_counted(decision, votes, n, f)


@_fast
@given(rounds(at_most_f=False))
def test_with_more_than_f_byzantine_a_decision_is_still_backed_by_a_quorum(round_) -> None:
    n, f, _, _, votes, equivocators = round_
    try:
        decision = decide(DIGEST, votes, validators(n), f)
    except QuorumNotReached:
        return
    _check_counted(decision, votes, n, f)
    assert not equivocators & {v.validator for v in decision.votes + decision.dissent}


@_fast
@given(st.booleans().flatmap(lambda at_most_f: rounds(at_most_f=at_most_f)))
def test_every_equivocation_in_the_input_is_found(round_) -> None:
    n, _, _, _, votes, equivocators = round_
    found = find_equivocations(votes, validators(n))
    assert {e.validator for e in found} == equivocators
    for e in found:
        check_equivocation(e, PUBLIC[e.validator])
