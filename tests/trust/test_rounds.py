"""The detector's bookkeeping without actors: a round decides at the first quorum,
refuses once none can be made, scores late votes, and asks its reserve (quorum first)
only when those asked cannot decide alone; the vote log catches equivocation
across rounds; a decision's factors for the asset need f+1 agreeing validators."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.trust.errors import QuorumNotReached, VoteInvalid
from trustchain.actors.trust.rounds import Round, VoteLog, agreed_reasons, asset_factors
from trustchain.actors.trust.votes import Decision, Vote, sign_vote

N = 4  # f = 1, quorum 3
PRIVATE = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(1, N + 1)}
KEYS = {v: k.public_key() for v, k in PRIVATE.items()}
DIGEST = bytes(range(32))


def vote(validator: str, verdict: str = "approve", *reasons: str, digest: bytes = DIGEST) -> Vote:
    return sign_vote(PRIVATE[validator], validator, digest, verdict, reasons)  # type: ignore[arg-type]


def fresh_round() -> Round:
    return Round(DIGEST, KEYS, 1, frozenset(KEYS))


def test_a_round_decides_at_the_first_quorum_and_scores_the_late_vote_after() -> None:
    r = fresh_round()
    for v in ("v1", "v2"):
        r.add(v, vote(v))
        assert r.settle(frozenset()) is None
    r.add("v3", vote("v3"))
    decision = r.settle(frozenset())
    assert decision is not None and decision.outcome == "approve" and r.closed
    assert r.unscored(frozenset()) == dict.fromkeys(("v1", "v2", "v3"), "approve")
    r.add("v4", vote("v4", "reject", "work_invalid: late and wrong"))
    assert r.unscored(frozenset()) == {"v4": "reject"}
    assert r.unscored(frozenset()) == {} and r.complete


def test_a_split_round_is_refused_as_soon_as_no_quorum_can_be_made() -> None:
    r = fresh_round()
    r.add("v1", vote("v1"))
    r.add("v2", vote("v2", "reject", "time_proof_invalid: no"))
    assert r.settle(frozenset()) is None  # two still out: a quorum of 3 is possible
    r.add("v3", None, "actor_unavailable")  # failed to answer
    with pytest.raises(QuorumNotReached, match="cannot make a quorum") as refused:
        r.settle(frozenset())
    assert "no vote from 1 (1 actor_unavailable)" in refused.value.message
    assert refused.value.details["failed"] == {"v3": "actor_unavailable"}
    assert r.closed and r.decision is None


def quorum_first_round() -> Round:
    return Round(DIGEST, KEYS, 1, frozenset({"v1", "v2", "v3"}), reserve=frozenset({"v4"}))


def test_a_quorum_asked_first_decides_alone_when_it_agrees() -> None:
    r = quorum_first_round()
    for v in ("v1", "v2"):
        r.add(v, vote(v))
        assert r.settle(frozenset()) is None and not r.wants_more
    r.add("v3", vote("v3"))
    decision = r.settle(frozenset())
    assert decision is not None and len(decision.votes) == 3
    assert r.complete and r.reserve == {"v4"}  # never asked: not waited for


@pytest.mark.parametrize("third", ["dissent", "no vote"])
def test_a_dissent_or_a_missing_vote_among_those_asked_asks_the_reserve(third: str) -> None:
    r = quorum_first_round()
    r.add("v1", vote("v1"))
    assert r.settle(frozenset()) is None and not r.wants_more
    if third == "dissent":
        r.add("v2", vote("v2", "reject", "work_invalid: a liar"))
    else:
        r.add("v2", None, "actor_unavailable")
    assert r.settle(frozenset()) is None  # v3 and v4 can still make it: not refused
    assert r.wants_more and not r.closed
    assert r.widen() == {"v4"}
    assert r.asked == frozenset(KEYS) and not r.reserve and not r.wants_more
    for v in ("v3", "v4"):
        r.add(v, vote(v))
    decision = r.settle(frozenset())
    assert decision is not None and decision.outcome == "approve"
    assert {v.validator for v in decision.votes} == {"v1", "v3", "v4"}


def test_a_round_the_reserve_cannot_save_is_refused_at_once() -> None:
    r = quorum_first_round()
    r.add("v1", vote("v1"))
    r.add("v2", vote("v2", "reject", "work_invalid: no"))
    r.add("v3", None, "actor_unavailable")
    with pytest.raises(QuorumNotReached, match="1 validators still out cannot make a quorum"):
        r.settle(frozenset())
    assert r.closed and not r.wants_more
    # An ignored reserve does not count as help either.
    r = quorum_first_round()
    r.add("v1", vote("v1", "reject", "work_invalid: no"))
    with pytest.raises(QuorumNotReached):
        r.settle(frozenset({"v4", "v2"}))


def test_ignored_validators_do_not_count_and_the_deadline_refuses() -> None:
    r = fresh_round()
    for v in ("v1", "v2", "v3"):
        r.add(v, vote(v))
    with pytest.raises(QuorumNotReached):  # v3 ignored, v4 too: two votes count, of 3 needed
        r.settle(frozenset({"v3", "v4"}))
    r2 = fresh_round()
    r2.add("v1", vote("v1"))
    r2.add("v2", vote("v2"))
    assert r2.settle(frozenset()) is None
    refusal = r2.expire(frozenset(), 2.0)
    assert "within 2 s" in refusal.message and refusal.details["silent"] == ["v3", "v4"]
    assert r2.closed


def test_a_quarantined_validator_is_not_scored() -> None:
    r = fresh_round()
    for v in ("v1", "v2", "v3", "v4"):
        r.add(v, vote(v))
    assert r.settle(frozenset()) is not None
    assert "v4" not in r.unscored(frozenset({"v4"}))


def test_the_vote_log_catches_two_different_votes_on_one_digest_and_only_those() -> None:
    log = VoteLog()
    first = vote("v1")
    assert log.add(first, KEYS, epoch=7) is None
    assert log.add(first, KEYS, epoch=7) is None  # the same vote again: a retry
    caught = log.add(vote("v1", "reject", "work_invalid: changed"), KEYS, epoch=7)
    assert caught is not None and (caught.validator, caught.first) == ("v1", first)
    forged = Vote("v2", DIGEST, "approve", (), bytes(64))
    with pytest.raises(VoteInvalid):
        log.add(forged, KEYS, epoch=7)
    assert log.add(vote("v2"), KEYS, epoch=7) is None  # the forgery framed nobody
    with pytest.raises(VoteInvalid):
        log.add(Vote("v9", DIGEST, "approve", (), bytes(64)), KEYS, epoch=7)


def test_a_vote_repeating_a_verified_statement_under_a_forged_signature_is_refused() -> None:
    log = VoteLog()
    assert log.add(vote("v1"), KEYS, epoch=7) is None
    with pytest.raises(VoteInvalid):  # what v1 said, but not signed by v1: no evidence
        log.add(Vote("v1", DIGEST, "approve", (), bytes(64)), KEYS, epoch=7)


def test_a_round_checks_each_signature_once_trusting_only_what_its_caller_verified() -> None:
    forged = {v: Vote(v, DIGEST, "approve", (), bytes(64)) for v in ("v1", "v2", "v3")}
    unchecked = fresh_round()
    for v, bad in forged.items():
        unchecked.add(v, bad)
    with pytest.raises(QuorumNotReached, match="3 bad signature"):
        unchecked.settle(frozenset())
    # The caller says it verified them (the detector's VoteLog does): not checked again.
    # A lie here is the caller's bug; the test shows that no second check is made.
    trusted = fresh_round()
    for v, bad in forged.items():
        trusted.add(v, bad, verified=True)
    decision = trusted.settle(frozenset())
    assert decision is not None and decision.outcome == "approve"
    assert trusted.unscored(frozenset()) == dict.fromkeys(forged, "approve")


def test_the_vote_log_forgets_epochs_it_no_longer_keeps() -> None:
    log = VoteLog(keep_epochs=2)
    log.add(vote("v1"), KEYS, epoch=1)
    log.add(vote("v1", digest=bytes(32)), KEYS, epoch=3)
    assert len(log) == 1  # epoch 1 is gone; its digest could be voted on afresh
    assert log.add(vote("v1", "reject", "x: y"), KEYS, epoch=3) is None


def decision(outcome: str, *votes: Vote) -> Decision:
    return Decision(DIGEST, outcome, tuple(votes), ())  # type: ignore[arg-type]


def test_an_asset_is_charged_only_with_failures_f_plus_one_validators_agree_on() -> None:
    work = "work_invalid: too few zero bits"
    liar = vote("v1", "reject", work)
    honest = [vote(v, "reject", "time_proof_invalid: no") for v in ("v2", "v3")]
    rejected = decision("reject", liar, *honest)
    assert asset_factors(rejected, 1) == ["time_failures"]  # one liar's work_invalid: not
    assert [r.split(":")[0] for r in agreed_reasons(rejected, 1)] == ["time_proof_invalid"]
    signature = [vote(v, "reject", "asset_signature_invalid: not the asset's", work)
                 for v in ("v1", "v2", "v3")]  # fmt: skip
    assert asset_factors(decision("reject", *signature), 1) == ["signature_failures"]
    assert asset_factors(decision("approve", vote("v1"), vote("v2"), vote("v3")), 1) == [
        "successes"
    ]
