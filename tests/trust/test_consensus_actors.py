"""The four-proof consensus through the real actors: validators and the detector under
a supervisor of their own, the stake authority's key in a real SoftHSM (HSMActor), the
trust state in SQLite, and Byzantine validators (``byzantine.py``).

Each tree runs on a FakeClock (the detector's deadline, a slow validator's delay):
a test moves time only when it waits for a deadline, once the round is open
(``rounds_open``), so nothing here sleeps and hopes. The proofs are small (work 8
bits, VDF t = 256 in RSA-2048, 32 plotted blocks of scrypt N = 16, 4 opened) so
that the whole file runs in seconds; they are real proofs all the same.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from loguru import logger

from trustchain.actors.detector import (
    Decide,
    Evidence,
    GetTrustParams,
    RegisterAsset,
    RegistrationStatus,
    SpaceChallenge,
    TrustScores,
    ValidateAssetTrust,
)
from trustchain.actors.trust import requests, space
from trustchain.actors.trust.errors import (
    ProofReplayed,
    QuorumNotReached,
    SpaceProofInvalid,
    StakeInvalid,
)
from trustchain.actors.trust.store import TrustStore
from trustchain.actors.trust.votes import (
    Equivocation,
    check_decision,
    check_equivocation,
    quorum,
)
from trustchain.supervisors import (
    InvalidRequest,
    RestartChild,
    TrustChainError,
)

from .byzantine import (
    BEHAVIOURS,
    SLOW_S,
    Crash,
    KillProcess,
    LateAnswers,
    Misbehave,
)
from .conftest import ASSET as ASSET
from .conftest import ASSET_ID as ASSET_ID
from .conftest import ASSET_KEY as ASSET_KEY
from .consensus import (
    approved,
    bad_nonce,
    codes,
    consensus,
    refused,
    wait_until,
)

# -- up to f Byzantine validators of each behaviour ------------------------------------


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.parametrize("n", [4, 7, 10])
def test_with_up_to_f_byzantine_validators_every_decision_is_the_honest_one(
    trees, hsm, tmp_path, plot, n, behaviour
) -> None:
    f = (n - 1) // 3
    tree = consensus(trees, hsm, tmp_path, n, dict.fromkeys(range(1, f + 1),
                                                            BEHAVIOURS[behaviour]))  # fmt: skip
    assert tree.register(plot).unwrap()["registered"] is True
    keys = tree.validator_keys()
    good = [tree.prove(f"csr-{i}".encode()) for i in range(3)]
    answers = tree.send_many([Decide(f"csr-{i}".encode(), good[i]) for i in range(3)])
    for answer in answers:
        decision = approved(answer)
        check_decision(decision, keys, f)
        assert len(decision.votes) >= quorum(n, f)
    other = tree.prove(b"csr-forged")
    forged = dataclasses.replace(other, work_nonce=bad_nonce(other, b"csr-forged", 8))
    assert codes(tree.decide(b"csr-forged", forged)) == ["work_invalid"]

    if behaviour == "equivocating":  # the same request again: each equivocator is caught
        refused(tree.decide(b"csr-0", good[0]), ProofReplayed)
        wait_until(lambda: len(tree.ask(Evidence())) == f, "the equivocations caught")
        evidence = [Equivocation.from_json(e) for e in tree.ask(Evidence())]
        assert sorted(e.validator for e in evidence) == tree.names[:f]
        for e in evidence:
            check_equivocation(e, keys[e.validator])
        scores = {s["validator"]: s for s in tree.ask(TrustScores())}
        assert all(scores[name]["quarantined"] for name in tree.names[:f])
        assert tree.status()["alerts"]["equivocation"] == f
        assert approved(tree.decide(b"csr-after")).votes  # decisions go on without them
    else:
        assert tree.ask(Evidence()) == []
    if behaviour == "slow":  # their votes come after the answers, and are scored still
        slow = tree.names[:f]
        asked = 5  # the registration, three requests, the forgery
        wait_until(lambda: all(tree.registry.ask(name, LateAnswers()) == asked for name in slow),
                   "every late answer scheduled")  # fmt: skip
        tree.clock.advance(SLOW_S)
        wait_until(lambda: all(s["agreed"] >= 5 for s in tree.ask(TrustScores())
                               if s["validator"] in slow), "the late votes scored")  # fmt: skip
    trust = tree.ask(ValidateAssetTrust(ASSET_ID))
    factors = trust["factors"]  # (a slow run's are 5 s old: decayed a little)
    assert factors["work_failures"] == pytest.approx(1.0, abs=1e-4)  # f liars never count
    assert factors["successes"] >= 3.99  # the registration and three requests


# -- more than f: refuse rather than decide wrongly ------------------------------------


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("quorum_first", [False, True])
def test_with_more_than_f_liars_the_detector_refuses_rather_than_decides_wrongly(
    trees, hsm, tmp_path, plot, n, quorum_first
) -> None:
    f = (n - 1) // 3
    liars = range(1, f + 2)
    accepting = consensus(trees, hsm, tmp_path / "a", n, dict.fromkeys(liars, BEHAVIOURS[
        "always_accept"]), quorum_first=quorum_first)  # fmt: skip
    assert accepting.register(plot).unwrap()["registered"]
    other = accepting.prove(b"forged")
    forged = dataclasses.replace(other, work_nonce=bad_nonce(other, b"forged", 8))
    error = refused(accepting.decide(b"forged", forged), QuorumNotReached)  # at once: a split
    assert error.details["counted"]["approve"] <= f + 1

    rejecting = consensus(trees, hsm, tmp_path / "r", n, dict.fromkeys(liars, BEHAVIOURS[
        "always_reject"]), quorum_first=quorum_first)  # fmt: skip
    rejecting.misbehave(False)  # the asset registers while they behave
    assert rejecting.register(plot).unwrap()["registered"]
    rejecting.misbehave(True)
    refused(rejecting.decide(b"a valid request"), QuorumNotReached)
    assert rejecting.status()["decisions"]["approve"] == 1  # the registration only


@pytest.mark.parametrize("behaviour", ["silent", "slow"])
def test_with_more_than_f_silent_or_slow_the_deadline_refuses(
    trees, hsm, tmp_path, plot, behaviour
) -> None:
    tree = consensus(trees, hsm, tmp_path, 4, dict.fromkeys((1, 2), BEHAVIOURS[behaviour]))
    tree.misbehave(False)
    assert tree.register(plot).unwrap()["registered"]
    tree.misbehave(True)
    csr = b"a valid request"
    late = tree.send_past_deadline(Decide(csr, tree.prove(csr)), answers=2)  # the honest two
    error = refused(late, QuorumNotReached)
    assert "within 2 s" in error.message and sorted(error.details["silent"]) == tree.names[:2]
    assert tree.status()["decisions"]["quorum_not_reached"] == 1


def test_more_than_f_equivocators_are_all_caught_and_nothing_is_decided_on_their_word(
    trees, hsm, tmp_path, plot
) -> None:
    tree = consensus(trees, hsm, tmp_path, 4, dict.fromkeys((1, 2), BEHAVIOURS["equivocating"]))
    assert tree.register(plot).unwrap()["registered"]
    proofs = tree.prove(b"twice")
    approved(tree.decide(b"twice", proofs))
    refused(tree.decide(b"twice", proofs), QuorumNotReached)  # two honest votes left of four
    assert sorted(e["validator"] for e in tree.ask(Evidence())) == tree.names[:2]


# -- a validator crashing under load ------------------------------------------------------


@pytest.mark.parametrize("crash", [Crash(), KillProcess()], ids=["actor", "kill-9-process"])
def test_a_validator_crashing_under_a_stream_of_decisions_does_not_stop_them(
    trees, hsm, tmp_path, plot, crash
) -> None:
    tree = consensus(trees, hsm, tmp_path, 4)
    assert tree.register(plot).unwrap()["registered"]
    requests_ = [Decide(f"load-{i}".encode(), tree.prove(f"load-{i}".encode())) for i in range(40)]
    victim = tree.names[1]
    answers = []
    for i, message in enumerate(requests_):
        if i == 15:
            tree.registry.tell(victim, crash, lambda _result: None)
        answers.append(tree.tell(message))
    for answer in answers:
        assert answer.done.wait(30)
        approved(answer.got[0])
    wait_until(lambda: tree.registry.lookup(victim).health()["state"] == "running", "restart")
    assert tree.registry.lookup(victim).restarts == 1
    before = {s["validator"]: s["agreed"] for s in tree.ask(TrustScores())}[victim]
    approved(tree.decide(b"after the restart"))
    wait_until(lambda: {s["validator"]: s["agreed"] for s in tree.ask(TrustScores())}[victim]
               > before, "the restarted validator's vote")  # fmt: skip


# -- registration and requests end to end -------------------------------------------------


def test_registration_and_requests_end_to_end_each_forgery_refused_with_its_code(
    trees, hsm, tmp_path, plot
) -> None:
    tree = consensus(trees, hsm, tmp_path, 4, epoch_s=3 * 86_400)  # a stake of a day ends
    params = tree.ask(GetTrustParams())
    authority = serialization.load_pem_public_key(params["authority_key"].encode())
    assert isinstance(authority, ec.EllipticCurvePublicKey)
    assert requests.ConsensusParams.from_json(params["params"]) == tree.params
    assert (params["epoch"], params["quorum"]) == (tree.epoch, 3)

    # The stake, signed in the HSM with the authority's key.
    stake = tree.grant(days=1)
    record = requests.stake.SignedStake.from_json(stake)
    authority.verify(record.signature, record.record.tbs(), ec.ECDSA(hashes.SHA256()))

    # Registration forgeries: refused before any vote, or by the validators' vote.
    refused(tree.send(RegisterAsset(ASSET_ID, stake, {})), SpaceProofInvalid)  # no challenge
    refused(tree.send(SpaceChallenge(ASSET_ID, plot.root.hex(), 8)), SpaceProofInvalid)
    refused(tree.send(SpaceChallenge("AB" * 32, plot.root.hex(), 32)), InvalidRequest)
    refused(tree.register(plot, {"record": {}, "signature": "00"}), StakeInvalid)
    other_plot = space.plot(os.urandom(32), 32, space.SpaceParams(cost=16, min_blocks=32))
    refused(tree.register(plot, stake, lambda _: other_plot_proof(other_plot)), SpaceProofInvalid)
    assert codes(tree.register(plot, tree.grant(amount=1))) == ["stake_invalid"]
    other_asset = ed25519.Ed25519PrivateKey.generate()
    theirs = tree.grant(asset=requests.asset_key_of(other_asset).hex())
    assert codes(tree.register(plot, theirs)) == ["stake_invalid"]
    assert codes(tree.register(plot, tree.grant(), flip_a_block)) == ["space_proof_invalid"]
    assert not tree.ask(RegistrationStatus(ASSET_ID))["registered"]

    registered = tree.register(plot, stake).unwrap()
    assert registered == {"asset": ASSET_ID, "epoch": tree.epoch, "registered": True,
                          "votes": registered["votes"]} and registered["votes"] >= 3  # fmt: skip
    status = tree.ask(RegistrationStatus(ASSET_ID))
    assert status["registered"] and status["stake_expires_at"] == record.record.expires_at

    # Requests: the valid one approved; each forgery refused with its code.
    csr = b"the CSR"
    valid = tree.prove(csr)
    decision = approved(tree.decide(csr, valid))
    check_decision(decision, tree.validator_keys(), tree.f)
    forgeries: dict[str, tuple[bytes, requests.RequestProofs]] = {}
    p = tree.prove(b"work")
    forgeries["work_invalid"] = b"work", dataclasses.replace(p, work_nonce=bad_nonce(p, b"work", 8))
    p = tree.prove(b"time")
    forgeries["time_proof_invalid"] = b"time", dataclasses.replace(p, vdf_output=p.vdf_proof)
    p = tree.prove(b"signature")
    forgeries["asset_signature_invalid"] = (
        b"signature",
        dataclasses.replace(p, signature=requests.sign_digest(other_asset, p.digest(b"signature"))),
    )
    forgeries["bound to another request"] = b"another CSR", tree.prove(b"bound")
    forgeries["registration_stale"] = b"old", tree.prove(b"old", epoch=tree.epoch - 1)
    forgeries["not_registered"] = b"stranger", tree.prove(b"stranger", key=other_asset)
    got = {what: codes(tree.decide(c, proofs)) for what, (c, proofs) in forgeries.items()}
    assert got["work_invalid"] == ["work_invalid"]
    assert got["time_proof_invalid"] == ["time_proof_invalid"]
    assert got["asset_signature_invalid"] == ["asset_signature_invalid"]
    assert {"asset_signature_invalid", "time_proof_invalid"} <= set(got["bound to another request"])
    assert "registration_stale" in got["registration_stale"]
    assert got["not_registered"] == ["not_registered"]
    error = refused(tree.decide(csr, valid), ProofReplayed)  # the same request again
    assert error.code == "proof_replayed"
    forged_again = dataclasses.replace(valid, vdf_output=valid.vdf_proof)  # approved digest
    error = refused(tree.decide(csr, forged_again), QuorumNotReached)  # no second vote
    assert "already_voted" in error.message  # refused once two of four said so
    assert set(error.details["failed"].values()) == {"already_voted"}

    store = TrustStore(tree.config.database)  # a second reader of the detector's database
    try:
        for c, proofs in forgeries.values():
            kept = store.get_decision(proofs.digest(c))
            assert kept is not None and kept.outcome == "reject"
    finally:
        store.close()
    factors = tree.ask(ValidateAssetTrust(ASSET_ID))["factors"]
    assert factors["successes"] == 2.0  # the registration and the request
    assert (factors["work_failures"], factors["time_failures"]) == (1.0, 1.0)
    assert factors["signature_failures"] == 2.0 and factors["replayed"] == 1.0
    assert factors["stake_failures"] == 0.0  # refused registrations are not held against it
    alerts = tree.status()["alerts"]
    assert alerts["proof_replayed"] == 1
    assert alerts["asset_proof_failed"] == 7  # 3 registrations, 4 requests with failures

    # A day later the stake has expired (the epoch has not): refused, and counted.
    tree.clock.advance(86_400)
    assert codes(tree.decide(b"late")) == ["stake_expired"]
    assert tree.ask(ValidateAssetTrust(ASSET_ID))["factors"]["stale_stake"] == 1.0


def other_plot_proof(other: space.Plot) -> dict[str, Any]:
    return space.answer_challenge(other, os.urandom(32), 4).to_json()


def flip_a_block(proof: dict[str, Any]) -> dict[str, Any]:
    """The proof with its first opened block changed (and its path left as it was)."""
    first = dict(proof["openings"][0])
    block = bytearray(bytes.fromhex(first["block"]))
    block[0] ^= 1
    first["block"] = block.hex()
    return {**proof, "openings": [first, *proof["openings"][1:]]}


# -- durable state --------------------------------------------------------------------------


def test_scores_evidence_and_registrations_survive_restarts_of_the_detector(
    trees, hsm, tmp_path, plot
) -> None:
    seen: list[dict[str, Any]] = []
    sink = logger.add(lambda m: seen.append(m.record["extra"]), level="WARNING",
                      filter=lambda r: "event" in r["extra"])  # fmt: skip
    try:
        tree = consensus(trees, hsm, tmp_path, 4, {1: BEHAVIOURS["equivocating"]})
        assert tree.register(plot).unwrap()["registered"]
        proofs = tree.prove(b"once")
        approved(tree.decide(b"once", proofs))
        refused(tree.decide(b"once", proofs), ProofReplayed)
        codes(tree.decide(b"time", dataclasses.replace(tree.prove(b"time"), vdf_output=2)))
    finally:
        logger.remove(sink)
    assert {"event": "trust.equivocation", "validator": tree.names[0],
            "digest": proofs.digest(b"once").hex()} in seen  # fmt: skip

    def state() -> tuple[Any, ...]:
        asked = (TrustScores(), Evidence(), RegistrationStatus(ASSET_ID),
                 ValidateAssetTrust(ASSET_ID))  # fmt: skip
        return tuple(tree.ask(message) for message in asked)

    before = state()
    assert before[0][0]["quarantined"] and len(before[1]) == 1
    tree.registry.ask(f"trust-{tree.uid}", RestartChild(tree.detector))
    assert state() == before
    tree.stop()  # the whole subtree, and again from cold
    trees.remove(tree)
    again = consensus(trees, hsm, tmp_path, 4, uid=tree.uid, clock=tree.clock)
    assert (again.ask(TrustScores()), again.ask(Evidence())) == before[:2]
    assert again.ask(RegistrationStatus(ASSET_ID)) == before[2]
    decision = approved(again.decide(b"after"))
    assert tree.names[0] not in {v.validator for v in decision.votes}  # still quarantined
    refused(again.decide(b"once", proofs), ProofReplayed)  # the store remembers the decision


# -- scores: below the minimum, and back ----------------------------------------------------


def test_a_validator_that_keeps_dissenting_is_ignored_then_earns_its_way_back(
    trees, hsm, tmp_path, plot
) -> None:
    tree = consensus(trees, hsm, tmp_path, 4, {1: BEHAVIOURS["always_reject"]})
    liar = tree.names[0]
    assert tree.register(plot).unwrap()["registered"]  # its first dissent: 0.9

    def score() -> dict[str, Any]:
        return {s["validator"]: s for s in tree.ask(TrustScores())}[liar]

    for i in range(5):  # 0.8 ... 0.4: below 0.5 after the fifth request
        approved(tree.decide(f"dissent-{i}".encode()))
        wait_until(lambda i=i: score()["dissented"] == i + 2, "its vote scored")
    assert score()["ignored"] and tree.status()["ignored"] == [liar]
    assert tree.status()["alerts"]["validator_below_minimum"] == 1
    tree.registry.ask(liar, Misbehave(False))  # it behaves: still asked, scored, not counted
    for i in range(10):
        decision = approved(tree.decide(f"behave-{i}".encode()))
        assert liar not in {v.validator for v in decision.votes}
        wait_until(lambda i=i: score()["agreed"] == i + 1, "its vote scored")
    assert score()["score"] == pytest.approx(0.5) and not score()["ignored"]
    assert tree.status()["ignored"] == []


# -- untrusted input --------------------------------------------------------------------------


def test_malformed_registrations_are_refused_with_typed_errors_never_a_crash(
    trees, hsm, tmp_path, plot
) -> None:
    tree = consensus(trees, hsm, tmp_path, 4)
    stake = tree.grant()
    got = tree.ask(SpaceChallenge(ASSET_ID, plot.root.hex(), plot.n))
    good = space.answer_challenge(plot, bytes.fromhex(got["challenge"]), got["k"]).to_json()
    opening = good["openings"][0]
    broken_stakes = [{}, {**stake, "extra": 1}, {"record": [], "signature": stake["signature"]},
                     {**stake, "record": {**stake["record"], "amount": 2**70}},
                     {**stake, "record": {**stake["record"], "amount": -1}},
                     {**stake, "signature": "0" * 3}]  # fmt: skip
    broken_proofs = [{}, {**good, "openings": "no"}, {**good, "openings": [1, 2]},
                     {**good, "n": 0}, {**good, "n": 2**41},
                     {**good, "openings": [{**opening, "index": 2**60}]},
                     {**good, "openings": [{**opening, "block": "x"}]},
                     {**good, "openings": [{**opening, "path": ["00" * 31]}]}]  # fmt: skip
    messages = [RegisterAsset(ASSET_ID, s, good) for s in broken_stakes]
    messages += [RegisterAsset(ASSET_ID, stake, p) for p in broken_proofs]
    for answer in tree.send_many(messages):
        refused(answer, TrustChainError)
        assert answer.error.code in ("stake_invalid", "space_proof_invalid"), answer.error
    assert all(tree.registry.lookup(name).restarts == 0 for name in [*tree.names, tree.detector])
    assert tree.register(plot, stake).unwrap()["registered"]  # and the real one goes through
