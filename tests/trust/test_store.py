"""The trust store on a real SQLite file: every record round-trips and survives
reopening; changes that belong together commit together or not at all; a full disk
(a real tmpfs, filled) is a typed fault that changes nothing, and the same store
writes again once space is back."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.trust.errors import NotRegistered, TrustStoreUnavailable
from trustchain.actors.trust.scores import (
    AssetHistory,
    ReplayGuard,
    ValidatorScore,
    proof_fingerprint,
    record_proof,
)
from trustchain.actors.trust.store import PendingChallenge, Registration, TrustStore
from trustchain.actors.trust.votes import (
    check_decision,
    check_equivocation,
    decide,
    find_equivocations,
    sign_vote,
)

from ..actors.test_faults import fill, mounted_tmpfs

DIGEST = hashlib.sha256(b"request").digest()
ASSET_KEY = bytes(range(32))
KEYS = {
    f"v{i}": ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"%d" % i).digest())
    for i in range(4)
}
PUBLIC = {v: k.public_key() for v, k in KEYS.items()}
STAKE = {"record": {"asset_key": ASSET_KEY.hex(), "amount": 100, "expires_at": 2_000_000_000},
         "signature": "3045"}  # fmt: skip


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "trust.sqlite3"


def reopened(store: TrustStore, path: Path) -> TrustStore:
    store.close()
    return TrustStore(path)


def registration(epoch: int = 7, commitment: bytes = b"\x01" * 32) -> Registration:
    return Registration(ASSET_KEY, epoch, STAKE, commitment, 1_700_000_000.5)


def test_the_file_is_in_wal_mode(path: Path) -> None:
    TrustStore(path).close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_registration_survives_reopening(path: Path) -> None:
    store = TrustStore(path)
    store.add_registration(registration())
    store = reopened(store, path)
    assert store.get_registration(ASSET_KEY, 7) == registration()
    assert store.get_registration(ASSET_KEY, 7).asset == ASSET_KEY.hex()
    store.close()


def test_registering_again_in_an_epoch_replaces_it_and_epochs_are_kept_apart(path) -> None:
    store = TrustStore(path)
    store.add_registration(registration(7))
    store.add_registration(registration(8))
    store.add_registration(registration(7, b"\x02" * 32))
    store = reopened(store, path)
    assert [(r.epoch, r.space_commitment[:1]) for r in store.registrations(ASSET_KEY)] == [
        (7, b"\x02"), (8, b"\x01"),
    ]  # fmt: skip
    store.close()


def test_a_registration_read_in_a_batch_that_rolls_back_is_not_remembered(path: Path) -> None:
    store = TrustStore(path)
    store.add_registration(registration(7))
    assert store.get_registration(ASSET_KEY, 7) == registration(7)  # read, and kept
    again = registration(7, b"\x02" * 32)
    with pytest.raises(RuntimeError), store.batch():
        store.add_registration(again)
        assert store.get_registration(ASSET_KEY, 7) == again  # the batch sees its write
        raise RuntimeError("a bug half way")
    assert store.get_registration(ASSET_KEY, 7) == registration(7)  # not the rolled back
    store.add_registration(again)
    assert store.get_registration(ASSET_KEY, 7) == again  # a write is read back
    store = reopened(store, path)
    assert store.get_registration(ASSET_KEY, 7) == again
    store.close()


def test_an_asset_not_registered_for_an_epoch_is_told_so() -> None:
    store = TrustStore()
    store.add_registration(registration(7))
    with pytest.raises(NotRegistered, match="epoch 8") as caught:
        store.get_registration(ASSET_KEY, 8)
    assert caught.value.code == "not_registered"
    assert store.registrations(bytes(32)) == []


def test_a_registration_needs_a_32_octet_asset_key() -> None:
    with pytest.raises(ValueError):
        Registration(b"short", 1, STAKE, b"", 0.0)


def test_validator_scores_survive_reopening(path: Path) -> None:
    store = TrustStore(path)
    scores = [ValidatorScore("v0", 0.9, agreed=4, dissented=1), ValidatorScore("v1", 1.0)]
    store.put_validator_scores(scores)
    store.put_validator_scores([ValidatorScore("v0", 0.91, agreed=5, dissented=1)])
    store = reopened(store, path)
    assert store.validator_scores() == [ValidatorScore("v0", 0.91, agreed=5, dissented=1),
                                        ValidatorScore("v1", 1.0)]  # fmt: skip
    assert store.get_validator_score("v2") is None
    store.close()


def test_a_quarantine_once_stored_is_not_overwritten(path: Path) -> None:
    store = TrustStore(path)
    caught = ValidatorScore("v1", 0.0, quarantined=True, agreed=2, quarantined_at_s=99.0)
    store.put_validator_scores([caught])
    store.put_validator_scores([ValidatorScore("v1", 0.8, agreed=3)])  # a stale copy
    store = reopened(store, path)
    assert store.get_validator_score("v1") == caught
    store.close()


def test_an_asset_history_survives_reopening(path: Path) -> None:
    store = TrustStore(path)
    asset = ASSET_KEY.hex()
    assert store.get_asset_history(asset) == AssetHistory(asset)
    history = record_proof(record_proof(AssetHistory(asset), "successes", 10.0), "rebound", 20.0)
    store.put_asset_history(history)
    store = reopened(store, path)
    assert store.get_asset_history(asset) == history
    store.close()


def _equivocation():
    first = sign_vote(KEYS["v2"], "v2", DIGEST, "approve")
    second = sign_vote(KEYS["v2"], "v2", DIGEST, "reject", ["work_invalid"])
    (found,) = find_equivocations([first, second], PUBLIC)
    return found


def test_evidence_is_kept_with_the_quarantine_and_still_checks_after_reopening(path) -> None:
    store = TrustStore(path)
    evidence = _equivocation()
    quarantined = ValidatorScore("v2", 0.0, quarantined=True, quarantined_at_s=5.0)
    assert store.add_equivocation(evidence, 5.0, quarantined) is True
    assert store.add_equivocation(evidence, 6.0) is False  # one per validator and digest
    store = reopened(store, path)
    assert store.equivocations() == [evidence]
    assert store.equivocations("v2") == [evidence] and store.equivocations("v0") == []
    check_equivocation(store.equivocations()[0], PUBLIC["v2"])
    assert store.get_validator_score("v2") == quarantined
    store.close()


def test_a_decision_and_the_scores_it_moved_survive_reopening(path: Path) -> None:
    store = TrustStore(path)
    votes = [sign_vote(KEYS[v], v, DIGEST, "approve") for v in ("v0", "v1", "v2")]
    votes.append(sign_vote(KEYS["v3"], "v3", DIGEST, "reject", ["time_proof_invalid"]))
    decision = decide(DIGEST, votes, PUBLIC, f=1)
    moved = [ValidatorScore("v3", 0.9, dissented=1)]
    assert store.get_decision(DIGEST) is None
    assert store.add_decision(decision, 42.0, moved) is True
    store = reopened(store, path)
    loaded = store.get_decision(DIGEST)
    assert loaded == decision
    check_decision(loaded, PUBLIC, f=1)
    assert store.get_validator_score("v3") == moved[0]
    store.close()


def test_a_decision_is_final_the_first_one_is_kept() -> None:
    store = TrustStore()
    approve = [sign_vote(KEYS[v], v, DIGEST, "approve") for v in ("v0", "v1", "v2")]
    reject = [sign_vote(KEYS[v], v, DIGEST, "reject", ["r"]) for v in ("v1", "v2", "v3")]
    first = decide(DIGEST, approve, PUBLIC, f=1)
    assert store.add_decision(first, 1.0)
    later = decide(DIGEST, reject, PUBLIC, f=1)
    assert store.add_decision(later, 2.0, [ValidatorScore("v0", 0.9, dissented=1)]) is False
    assert store.get_decision(DIGEST) == first
    assert store.get_validator_score("v0") is None  # nothing of the refused call written


def test_a_failed_change_writes_nothing_of_it(path: Path) -> None:
    store = TrustStore(path)
    decision = decide(
        DIGEST, [sign_vote(KEYS[v], v, DIGEST, "approve") for v in ("v0", "v1", "v2")], PUBLIC, 1
    )
    impossible = ValidatorScore("v0", 1.5)  # the schema refuses scores outside [0, 1]
    with pytest.raises(sqlite3.IntegrityError):
        store.add_decision(decision, 1.0, [ValidatorScore("v1", 1.0), impossible])
    store = reopened(store, path)
    assert store.get_decision(DIGEST) is None
    assert store.validator_scores() == []
    store.close()


def test_get_decision_wants_a_request_digest() -> None:
    with pytest.raises(ValueError):
        TrustStore().get_decision(b"short")


# -- pending space challenges -------------------------------------------------------------


def challenge(epoch: int = 7, asset_key: bytes = ASSET_KEY, tag: bytes = b"c") -> PendingChallenge:
    return PendingChallenge(asset_key, epoch, tag * 32, b"\x05" * 32, 64)


def test_a_challenge_given_survives_reopening_until_it_is_used_up(path: Path) -> None:
    store = TrustStore(path)
    assert store.get_challenge(ASSET_KEY, 7) is None
    store.put_challenge(challenge(), most=10)
    store = reopened(store, path)
    assert store.get_challenge(ASSET_KEY, 7) == challenge()
    assert store.use_challenge(challenge()) is True
    store = reopened(store, path)
    assert store.get_challenge(ASSET_KEY, 7) is None
    assert store.use_challenge(challenge()) is False
    store.close()


def test_a_new_challenge_replaces_the_assets_last_one_and_only_that_one_is_used_up() -> None:
    store = TrustStore()
    store.put_challenge(challenge(tag=b"a"), most=10)
    store.put_challenge(challenge(tag=b"b"), most=10)
    assert store.challenges_kept() == 1
    assert store.use_challenge(challenge(tag=b"a")) is False  # replaced meanwhile: kept
    assert store.get_challenge(ASSET_KEY, 7) == challenge(tag=b"b")


def test_challenges_of_past_epochs_are_dropped_and_at_most_most_are_kept() -> None:
    store = TrustStore()
    for i in range(3):
        store.put_challenge(challenge(epoch=6, asset_key=bytes([i]) * 32), most=3)
    store.put_challenge(challenge(epoch=7, asset_key=b"\x10" * 32), most=3)
    assert store.challenges_kept() == 1  # epoch 6 is over
    assets = [bytes([0x20 + i]) * 32 for i in range(4)]
    for asset in assets:
        store.put_challenge(challenge(epoch=7, asset_key=asset), most=3)
    assert store.challenges_kept() == 3
    kept = [a for a in [b"\x10" * 32, *assets] if store.get_challenge(a, 7) is not None]
    assert kept == assets[1:]  # the oldest given went first
    store.put_challenge(challenge(epoch=7, asset_key=assets[1], tag=b"n"), most=3)
    store.put_challenge(challenge(epoch=7, asset_key=b"\x30" * 32), most=3)
    assert store.get_challenge(assets[1], 7) is not None  # given again: newest now
    assert store.get_challenge(assets[2], 7) is None


# -- the replay guard's memory ------------------------------------------------------------


def test_the_replay_guard_over_the_store_remembers_across_reopening(path: Path) -> None:
    store = TrustStore(path)
    fp = proof_fingerprint("time", b"y")
    assert ReplayGuard(memory=store.fingerprints).check(fp, DIGEST, "a", 10) == "new"
    store = reopened(store, path)
    guard = ReplayGuard(memory=store.fingerprints)  # a restarted detector's
    assert guard.check(fp, DIGEST, "a", 10) == "replayed"
    assert guard.check(fp, hashlib.sha256(b"another").digest(), "a", 10) == "rebound"
    assert guard.check(fp, DIGEST, "b", 10) == "rebound"
    assert len(guard) == 1
    store.close()


def test_the_stored_fingerprints_are_pruned_to_the_epochs_kept(path: Path) -> None:
    store = TrustStore(path)
    guard = ReplayGuard(keep_epochs=2, memory=store.fingerprints)
    for epoch in (5, 6, 7):
        guard.check(proof_fingerprint("time", b"y%d" % epoch), DIGEST, "a", epoch)
    assert len(guard) == 2
    store = reopened(store, path)
    guard = ReplayGuard(keep_epochs=2, memory=store.fingerprints)
    assert guard.oldest_kept == 6
    assert guard.check(proof_fingerprint("time", b"y6"), DIGEST, "a", 6) == "replayed"
    store.close()


# -- one transaction for a decision and all it causes --------------------------------------


def _decision():
    votes = [sign_vote(KEYS[v], v, DIGEST, "approve") for v in ("v0", "v1", "v2")]
    return decide(DIGEST, votes, PUBLIC, f=1)


def _everything_a_decision_writes(store: TrustStore) -> None:
    store.add_decision(_decision(), 1.0, [ValidatorScore("v0", 0.99, agreed=1)])
    ReplayGuard(memory=store.fingerprints).check(proof_fingerprint("time", b"y"), DIGEST, "a", 7)
    store.put_asset_history(record_proof(AssetHistory(ASSET_KEY.hex()), "successes", 1.0))
    store.add_registration(registration())
    store.use_challenge(challenge())


def _nothing_of_it(store: TrustStore) -> None:
    assert store.get_decision(DIGEST) is None
    assert store.validator_scores() == []
    assert len(store.fingerprints) == 0
    assert store.get_asset_history(ASSET_KEY.hex()) == AssetHistory(ASSET_KEY.hex())
    assert store.registrations(ASSET_KEY) == []
    assert store.get_challenge(ASSET_KEY, 7) == challenge()


def test_a_batch_commits_a_decision_and_all_it_causes_together(path: Path) -> None:
    store = TrustStore(path)
    store.put_challenge(challenge(), most=10)
    with store.batch():
        _everything_a_decision_writes(store)
    store = reopened(store, path)
    assert store.get_decision(DIGEST) == _decision() and len(store.fingerprints) == 1
    assert store.get_registration(ASSET_KEY, 7) == registration()
    assert store.get_challenge(ASSET_KEY, 7) is None
    store.close()


def test_a_batch_that_raises_writes_nothing_of_it(path: Path) -> None:
    store = TrustStore(path)
    store.put_challenge(challenge(), most=10)
    with pytest.raises(RuntimeError), store.batch():
        _everything_a_decision_writes(store)
        raise RuntimeError("a crash before the commit")
    store = reopened(store, path)
    _nothing_of_it(store)
    store.close()


def test_a_write_that_failed_in_a_batch_spoils_it_even_if_swallowed(path: Path) -> None:
    store = TrustStore(path)
    store.put_challenge(challenge(), most=10)
    with pytest.raises(TrustStoreUnavailable, match="rolled back whole"), store.batch():
        _everything_a_decision_writes(store)
        try:
            store.put_validator_scores([ValidatorScore("v1", 1.5)])  # refused by the schema
        except sqlite3.IntegrityError:
            pass
        store.put_asset_history(AssetHistory("another"))  # refused too: the batch is spoilt
    store = reopened(store, path)
    _nothing_of_it(store)
    store.put_validator_scores([ValidatorScore("v1", 0.5)])  # the next write goes through
    store.close()


def test_a_bug_is_not_called_a_fault(path: Path) -> None:
    store = TrustStore(path)
    with pytest.raises(sqlite3.IntegrityError):
        store.put_validator_scores([ValidatorScore("v1", 1.5)])
    store.close()


# -- a full disk: a real one ---------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path / "small")


def test_on_a_full_disk_writes_are_a_typed_fault_that_changes_nothing_and_resume_after(
    small_disk: Path,
) -> None:
    store = TrustStore(small_disk / "trust.sqlite3")
    store.put_challenge(challenge(), most=10)
    filler = fill(small_disk)
    writes = [
        lambda: store.put_challenge(challenge(epoch=8), most=10),
        lambda: store.probe(2.0),
        lambda: store.add_equivocation(_equivocation(), 2.0),
        lambda: _everything_a_decision_writes(store),  # each write its own transaction
    ]
    for write in writes:
        with pytest.raises(TrustStoreUnavailable) as caught:
            write()
        assert caught.value.code == "trust_store_unavailable"
        assert caught.value.details["retry_after_s"] == 1
        assert "SQLITE_FULL" in caught.value.details["cause"]
    with pytest.raises(TrustStoreUnavailable), store.batch():
        _everything_a_decision_writes(store)
    _nothing_of_it(store)  # reads go on
    assert store.equivocations() == [] and store.get_challenge(ASSET_KEY, 8) is None
    filler.unlink()
    with store.batch():  # the same connection, no reopening
        _everything_a_decision_writes(store)
    store.probe(3.0)
    store = reopened(store, small_disk / "trust.sqlite3")
    assert store.get_decision(DIGEST) == _decision() and len(store.fingerprints) == 1
    store.close()
