"""Trust scores: validators' penalties, recovery, quarantine and the minimum; assets'
factors with recency decay; the replay guard's answers and its bounded memory, the
same whether it remembers in a dict or in the trust store's table."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given
from hypothesis import strategies as st

from trustchain.actors.trust import errors
from trustchain.actors.trust.errors import RegistrationStale
from trustchain.actors.trust.scores import (
    DEFAULT_HALF_LIFE_S,
    FACTOR_OF_ERROR,
    FACTORS,
    PROOF_KINDS,
    WEIGHTS,
    AssetHistory,
    ReplayGuard,
    ValidatorRules,
    ValidatorScore,
    ValidatorScores,
    asset_trust,
    failure_factor,
    proof_fingerprint,
    quarantine,
    record_proof,
    score_from_factors,
)
from trustchain.actors.trust.store import TrustStore
from trustchain.actors.trust.votes import decide, sign_vote

DIGEST = hashlib.sha256(b"request").digest()
OTHER = hashlib.sha256(b"other").digest()

# -- validators ------------------------------------------------------------------------


def test_a_validator_starts_at_the_initial_score() -> None:
    assert ValidatorScores().get("v0") == ValidatorScore("v0", 1.0)
    assert ValidatorScores(ValidatorRules(initial=0.8)).get("v0").score == 0.8


def test_a_vote_against_the_outcome_costs_the_penalty() -> None:
    scores = ValidatorScores(ValidatorRules(penalty=0.1))
    changed = scores.record_outcome("approve", {"v0": "approve", "v1": "reject"})
    assert [s.validator for s in changed] == ["v0", "v1"]
    assert scores.get("v1") == ValidatorScore("v1", 0.9, dissented=1)
    assert scores.get("v0") == ValidatorScore("v0", 1.0, agreed=1)  # already at the cap


def test_a_vote_with_the_outcome_recovers_slowly_up_to_one() -> None:
    scores = ValidatorScores(ValidatorRules(penalty=0.1, recovery=0.01))
    scores.record_outcome("reject", {"v1": "approve"})
    for _ in range(5):
        scores.record_outcome("reject", {"v1": "reject"})
    assert scores.get("v1").score == 0.95
    for _ in range(20):
        scores.record_outcome("reject", {"v1": "reject"})
    assert scores.get("v1") == ValidatorScore("v1", 1.0, agreed=25, dissented=1)


def test_the_score_never_goes_below_zero_and_steps_land_on_round_numbers() -> None:
    scores = ValidatorScores(ValidatorRules(penalty=0.1))
    for i in range(1, 13):
        scores.record_outcome("approve", {"v2": "reject"})
        assert scores.get("v2").score == max(0.0, round(1.0 - 0.1 * i, 9))
    assert scores.get("v2").score == 0.0


def test_below_the_minimum_a_validator_is_ignored_and_can_earn_its_way_back() -> None:
    scores = ValidatorScores(ValidatorRules(penalty=0.1, recovery=0.01))
    for _ in range(5):
        scores.record_outcome("approve", {"v3": "reject", "v0": "approve"})
    assert scores.get("v3").score == 0.5
    assert scores.below(0.5) == frozenset()  # below means strictly under
    scores.record_outcome("approve", {"v3": "reject"})
    assert scores.below(0.5) == {"v3"}
    assert scores.below(0.3) == frozenset()
    for _ in range(9):  # its verified votes, though ignored, still score
        scores.record_outcome("approve", {"v3": "approve"})
    assert scores.below(0.5) == {"v3"}
    scores.record_outcome("approve", {"v3": "approve"})
    assert scores.get("v3").score == 0.5
    assert scores.below(0.5) == frozenset()


def test_equivocation_quarantines_at_once_for_good() -> None:
    scores = ValidatorScores()
    caught = scores.quarantine("v1", now_s=1000.0)
    assert caught == ValidatorScore("v1", 0.0, quarantined=True, quarantined_at_s=1000.0)
    assert scores.quarantine("v1", now_s=2000.0).quarantined_at_s == 1000.0
    assert scores.record_outcome("approve", {"v1": "approve"}) == []
    assert scores.get("v1").score == 0.0
    assert scores.below(0.0) == {"v1"}  # ignored whatever the minimum


def test_quarantine_keeps_the_counts() -> None:
    before = ValidatorScore("v1", 0.7, agreed=3, dissented=3)
    after = quarantine(before, 5.0)
    assert (after.agreed, after.dissented, after.score, after.quarantined) == (3, 3, 0.0, True)


def test_a_decision_scores_its_evidence_and_its_dissent() -> None:
    keys = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(4)}
    votes = [sign_vote(keys[v], v, DIGEST, "approve") for v in ("v0", "v1", "v2")]
    votes.append(sign_vote(keys["v3"], "v3", DIGEST, "reject", ["work_invalid"]))
    decision = decide(DIGEST, votes, {v: k.public_key() for v, k in keys.items()}, f=1)
    scores = ValidatorScores(ValidatorRules(initial=0.5, penalty=0.2, recovery=0.1))
    scores.record_decision(decision)
    assert {s.validator: s.score for s in scores.all()} == {
        "v0": 0.6, "v1": 0.6, "v2": 0.6, "v3": 0.3,
    }  # fmt: skip


def test_a_copy_of_the_scores_is_what_they_were_whatever_changes_after() -> None:
    scores = ValidatorScores(ValidatorRules(penalty=0.2), [ValidatorScore("v0", 0.8)])
    saved = scores.copy()
    scores.record_outcome("approve", {"v0": "reject", "v1": "approve"})
    scores.quarantine("v2", 1.0)
    assert saved.all() == [ValidatorScore("v0", 0.8)] and saved.rules == scores.rules
    assert scores.get("v0").score == 0.6


def test_rules_outside_zero_to_one_are_refused() -> None:
    for bad in ({"initial": 1.5}, {"penalty": -0.1}, {"recovery": 2.0}):
        with pytest.raises(ValueError):
            ValidatorRules(**bad)


@given(st.lists(st.tuples(st.sampled_from(["v0", "v1"]), st.booleans()), max_size=60))
def test_validator_scores_stay_within_zero_and_one(events) -> None:
    scores = ValidatorScores(ValidatorRules(penalty=0.15, recovery=0.05))
    for validator, agrees in events:
        scores.record_outcome("approve", {validator: "approve" if agrees else "reject"})
        assert 0.0 <= scores.get(validator).score <= 1.0


# -- assets ----------------------------------------------------------------------------

T0 = 1_700_000_000.0


def history(*events: tuple[str, float]) -> AssetHistory:
    h = AssetHistory("ab" * 32)
    for factor, at in events:
        h = record_proof(h, factor, at)
    return h


def test_an_asset_with_no_history_scores_one_half() -> None:
    trust = asset_trust(AssetHistory("ab" * 32), T0)
    assert trust.score == 0.5
    assert set(trust.factors) == set(FACTORS) and not any(trust.factors.values())


def test_successes_raise_an_assets_score_and_failures_lower_it() -> None:
    good = asset_trust(history(("successes", T0), ("successes", T0)), T0)
    assert good.score == pytest.approx(3 / 4)
    bad = asset_trust(history(("successes", T0), ("work_failures", T0)), T0)
    assert bad.score == pytest.approx(2 / 4)
    worse = asset_trust(history(("successes", T0), ("rebound", T0)), T0)
    assert worse.score == pytest.approx(2 / (2 + 1 + WEIGHTS["rebound"]))


def test_each_proof_kind_has_a_failure_factor() -> None:
    for kind in PROOF_KINDS:
        trust = asset_trust(history((failure_factor(kind), T0)), T0)
        assert trust.factors[f"{kind}_failures"] == 1.0
    with pytest.raises(ValueError):
        failure_factor("luck")  # type: ignore[arg-type]


def test_signature_failures_are_shown_but_weigh_nothing() -> None:
    trust = asset_trust(history(("signature_failures", T0), ("signature_failures", T0)), T0)
    assert trust.factors["signature_failures"] == 2.0
    assert trust.score == 0.5  # whoever sent them, it was not the asset


def test_stale_stake_and_replays_weigh_less_than_a_false_proof() -> None:
    def one(factor: str) -> float:
        return asset_trust(history((factor, T0)), T0).score

    assert one("work_failures") < one("stale_stake") < one("replayed") < 0.5
    assert one("rebound") < one("work_failures")


def test_old_events_weigh_less_halving_every_half_life() -> None:
    h = history(("work_failures", T0), ("successes", T0 + DEFAULT_HALF_LIFE_S))
    trust = asset_trust(h, T0 + DEFAULT_HALF_LIFE_S)
    assert trust.factors["work_failures"] == 0.5
    assert trust.factors["successes"] == 1.0
    later = asset_trust(h, T0 + 3 * DEFAULT_HALF_LIFE_S)
    assert later.factors == pytest.approx({**dict.fromkeys(FACTORS, 0.0),
                                            "work_failures": 0.125, "successes": 0.25})  # fmt: skip
    assert asset_trust(h, T0 + 100 * DEFAULT_HALF_LIFE_S).score == pytest.approx(0.5)


def test_a_clock_stepping_back_decays_nothing_and_adds_nothing() -> None:
    h = history(("successes", T0), ("successes", T0 - 3600))
    assert h.as_of_s == T0
    assert asset_trust(h, T0 - 7200).factors["successes"] == 2.0


def test_totals_count_every_event_without_decay() -> None:
    h = history(("replayed", T0), ("replayed", T0 + 10 * DEFAULT_HALF_LIFE_S))
    assert h.totals == {"replayed": 2}


def test_an_unknown_factor_is_refused() -> None:
    with pytest.raises(ValueError, match="factors"):
        record_proof(AssetHistory("a"), "charm", T0)


def test_the_trust_errors_map_to_factors() -> None:
    codes = {cls.code for cls in vars(errors).values() if isinstance(cls, type)}
    assert set(FACTOR_OF_ERROR) <= codes
    assert set(FACTOR_OF_ERROR.values()) <= set(FACTORS)


events_st = st.lists(
    st.tuples(st.sampled_from(FACTORS), st.floats(0, 30 * 86400)), max_size=30
).map(lambda events: sorted(events, key=lambda e: e[1]))


@given(events_st, st.floats(0, 60 * 86400))
def test_an_asset_score_is_explained_by_its_factors(events, later) -> None:
    h = history(*((f, T0 + at) for f, at in events))
    trust = asset_trust(h, T0 + later)
    assert 0.0 < trust.score < 1.0
    assert trust.score == score_from_factors(trust.factors)
    assert set(trust.factors) == set(FACTORS)


@given(events_st, st.sampled_from(FACTORS))
def test_a_success_never_lowers_a_score_and_a_weighed_failure_never_raises_it(events, factor):
    h = history(*((f, T0 + at) for f, at in events))
    now = T0 + 30 * 86400
    before = asset_trust(h, now).score
    after = asset_trust(record_proof(h, factor, now), now).score
    if factor == "successes":
        assert after >= before
    else:
        assert after <= before


# -- replays ---------------------------------------------------------------------------


Guard = Callable[..., ReplayGuard]


@pytest.fixture(params=["in memory", "in the store"])
def new_guard(request: pytest.FixtureRequest) -> Iterator[Guard]:
    """Makes guards that remember in a dict, or in a trust store (SQLite, in memory)."""
    if request.param == "in memory":
        yield ReplayGuard
        return
    stores: list[TrustStore] = []

    def stored(keep_epochs: int = 2) -> ReplayGuard:
        stores.append(TrustStore())
        return ReplayGuard(keep_epochs, memory=stores[-1].fingerprints)

    yield stored
    for store in stores:
        store.close()


def test_a_proof_is_new_then_replayed_with_its_digest_and_rebound_elsewhere(
    new_guard: Guard,
) -> None:
    guard = new_guard()
    fp = proof_fingerprint("work", DIGEST, 12345)
    assert guard.check(fp, DIGEST, "asset-a", epoch=10) == "new"
    assert guard.check(fp, DIGEST, "asset-a", epoch=10) == "replayed"
    assert guard.check(fp, OTHER, "asset-a", epoch=10) == "rebound"
    assert guard.check(fp, DIGEST, "asset-b", epoch=10) == "rebound"
    assert guard.check(fp, DIGEST, "asset-a", epoch=11) == "replayed"  # still kept
    assert len(guard) == 1


def test_fingerprints_differ_by_kind_and_fields() -> None:
    prints = {
        proof_fingerprint("work", DIGEST, 1),
        proof_fingerprint("work", DIGEST, 2),
        proof_fingerprint("work", OTHER, 1),
        proof_fingerprint("time", DIGEST, 1),
        proof_fingerprint("stake", b"record", 10),
        proof_fingerprint("stake", b"record", 11),
    }
    assert len(prints) == 6


def test_the_guard_forgets_epochs_older_than_it_keeps(new_guard: Guard) -> None:
    guard = new_guard(keep_epochs=2)
    old = proof_fingerprint("time", b"y-old")
    assert guard.check(old, DIGEST, "a", epoch=5) == "new"
    assert guard.check(proof_fingerprint("time", b"y6"), DIGEST, "a", epoch=6) == "new"
    assert len(guard) == 2
    assert guard.check(proof_fingerprint("time", b"y7"), DIGEST, "a", epoch=7) == "new"
    assert len(guard) == 2 and guard.oldest_kept == 6
    with pytest.raises(RegistrationStale, match="epoch 5"):
        guard.check(old, DIGEST, "a", epoch=5)


def test_the_guards_memory_is_bounded_by_the_epochs_kept(new_guard: Guard) -> None:
    guard = new_guard(keep_epochs=3)
    for epoch in range(50):
        for i in range(20):
            guard.check(proof_fingerprint("work", DIGEST, epoch * 100 + i), DIGEST, "a", epoch)
        assert len(guard) <= 3 * 20
    assert len(guard) == 60


def test_a_guard_keeps_at_least_one_epoch(new_guard: Guard) -> None:
    with pytest.raises(ValueError):
        new_guard(keep_epochs=0)


def test_a_proof_seen_again_in_a_later_epoch_still_counts_from_its_first_epoch(
    new_guard: Guard,
) -> None:
    guard = new_guard(keep_epochs=2)
    fp = proof_fingerprint("time", b"y")
    assert guard.check(fp, DIGEST, "a", epoch=5) == "new"
    assert guard.check(fp, OTHER, "a", epoch=6) == "rebound"
    assert guard.oldest_kept == 5
    guard.check(proof_fingerprint("time", b"z"), DIGEST, "a", epoch=7)
    assert guard.check(fp, OTHER, "a", epoch=7) == "new"  # forgotten with epoch 5
