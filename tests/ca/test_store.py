"""The SQLite store: unique serials, revocation, CRL numbers, CA certificates,
and failed calls that change nothing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from trustchain.actors.ca import (
    AlreadyRevoked,
    CAStore,
    DuplicateSerial,
    RevokedEntry,
    UnknownRevocationReason,
    UnknownSerial,
    ca_name,
    intermediate_tbs,
    new_serial,
    parse_serial,
    serial_hex,
)

LABEL = "ca-intermediate"


@pytest.fixture
def store():
    db = CAStore(":memory:")
    yield db
    db.close()


def issued_count(store: CAStore) -> int:
    return store._db.execute("SELECT count(*) FROM issued").fetchone()[0]


def test_serials_have_one_canonical_hex_text():
    assert serial_hex(0x00AB) == "ab"
    assert parse_serial("0x00AB") == parse_serial("00:ab") == parse_serial("AB") == 0xAB
    for bad in ("zz", "", "0"):
        with pytest.raises(UnknownSerial):
            parse_serial(bad)


def test_issued_certificate_is_recorded_with_its_names_dates_and_der(kit, store):
    cert = kit.chain("ec-p256").issue_for("ec-p256", f"a.{kit.ZONE}", f"b.{kit.ZONE}")
    record = store.record_issued(cert, LABEL)
    assert record == store.get(cert.serial_number)
    assert record.names == (f"a.{kit.ZONE}", f"b.{kit.ZONE}")
    assert record.status == "issued" and record.revoked_at is None and record.reason is None
    assert record.not_before == cert.not_valid_before_utc
    assert record.not_after == cert.not_valid_after_utc
    assert record.certificate == cert
    assert record.ca_label == LABEL


def test_a_serial_recorded_twice_is_refused_by_the_database_and_changes_nothing(kit, store):
    chain = kit.chain("ec-p256")
    first = chain.issue_for("ec-p256", serial=0xABC)
    store.record_issued(first, LABEL)
    second = chain.issue_for("ec-p256", f"other.{kit.ZONE}", serial=0xABC)
    with pytest.raises(DuplicateSerial) as error:
        store.record_issued(second, "another-label")
    assert error.value.code == "duplicate_serial"
    assert issued_count(store) == 1
    assert store.get(0xABC).certificate == first


def test_unknown_serial_is_an_error(store):
    for serial in (0x1234, 0, -5):
        with pytest.raises(UnknownSerial):
            store.get(serial)
        with pytest.raises(UnknownSerial):
            store.revoke(serial, "superseded", datetime.now(UTC))


def test_revocation_records_time_and_reason_once(kit, store):
    cert = kit.chain("ec-p256").issue_for("ec-p256")
    store.record_issued(cert, LABEL)
    now = datetime.now(UTC).replace(microsecond=0)
    record = store.revoke(cert.serial_number, "keyCompromise", now)
    assert (record.status, record.revoked_at, record.reason) == ("revoked", now, "key_compromise")
    with pytest.raises(AlreadyRevoked):
        store.revoke(cert.serial_number, "superseded", now + timedelta(hours=1))
    assert store.get(cert.serial_number) == record


def test_revocation_with_an_unknown_reason_changes_nothing(kit, store):
    cert = kit.chain("ec-p256").issue_for("ec-p256")
    store.record_issued(cert, LABEL)
    with pytest.raises(UnknownRevocationReason):
        store.revoke(cert.serial_number, "because", datetime.now(UTC))
    assert store.get(cert.serial_number).status == "issued"


def test_revoked_entries_are_per_ca_sorted_and_can_drop_long_expired_ones(kit, store):
    chain = kit.chain("ec-p256")
    now = datetime.now(UTC).replace(microsecond=0)
    certs = [chain.issue_for("ec-p256", serial=s) for s in (0x30, 0x10, 0x20, 0x40)]
    for cert in certs[:3]:
        store.record_issued(cert, LABEL)
    store.record_issued(certs[3], "other-ca")
    for cert in certs:
        store.revoke(cert.serial_number, "superseded", now)
    store.record_issued(chain.issue_for("ec-p256", serial=0x50), LABEL)  # not revoked
    assert store.revoked_entries(LABEL) == [
        RevokedEntry(serial, now, "superseded") for serial in (0x10, 0x20, 0x30)
    ]
    assert [e.serial for e in store.revoked_entries("other-ca")] == [0x40]
    after_expiry = certs[0].not_valid_after_utc + timedelta(seconds=1)
    assert store.revoked_entries(LABEL, expired_before=after_expiry) == []


def test_crl_numbers_increase_per_issuer_and_survive_reopening(tmp_path):
    path = tmp_path / "ca.sqlite3"
    store = CAStore(path)
    assert [store.next_crl_number(LABEL) for _ in range(3)] == [1, 2, 3]
    assert store.next_crl_number("ca-root") == 1
    store.close()
    reopened = CAStore(path)
    assert reopened.next_crl_number(LABEL) == 4
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_issued_records_survive_reopening(kit, tmp_path):
    path = tmp_path / "ca.sqlite3"
    cert = kit.chain("ec-p256").issue_for("ec-p256")
    store = CAStore(path)
    store.record_issued(cert, LABEL)
    store.close()
    reopened = CAStore(path)
    assert reopened.get(cert.serial_number).certificate == cert
    reopened.close()


def test_ca_certificates_are_listed_by_role_and_the_current_intermediate_is_chosen(kit, store):
    chain = kit.chain("ec-p256")
    now = datetime.now(UTC)
    successor = kit.sign(
        intermediate_tbs(
            subject=ca_name("Successor", "TrustChain", "US"),
            public_key=kit.key("ec-p256", 3).public_key(),
            issuer_cert=chain.root,
            serial=new_serial(),
            now=now - timedelta(minutes=1),  # issued after the chain's (now - 5 min)
            validity=timedelta(days=60),
            crl_url="http://ca.example.com/root.crl",
        ),
        chain.root_key,
    )
    root = store.add_ca_certificate("root", "ca-root", chain.root)
    old = store.add_ca_certificate("intermediate", LABEL, chain.intermediate)
    new = store.add_ca_certificate("intermediate", "ca-intermediate-2", successor)
    store.add_ca_certificate("intermediate", LABEL, chain.intermediate)  # again: no change
    assert [r.fingerprint for r in store.list_ca_certificates("root")] == [root.fingerprint]
    assert store.list_ca_certificates("intermediate") == [old, new]
    assert store.current_intermediate(now) == new
    store.set_ca_active(new.fingerprint, False)
    assert store.current_intermediate(now) == old
    assert store.current_intermediate(now + timedelta(days=40)) is None  # old one expired


def test_a_failed_transaction_is_rolled_back(kit, store):
    cert = kit.chain("ec-p256").issue_for("ec-p256")
    with pytest.raises(sqlite3.IntegrityError), store._transaction() as db:
        db.execute("INSERT INTO crl_numbers VALUES ('x', 1)")
        db.execute("INSERT INTO crl_numbers VALUES ('x', 2)")
    assert store._db.execute("SELECT count(*) FROM crl_numbers").fetchone()[0] == 0
    store.record_issued(cert, LABEL)  # the store is usable afterwards
    assert issued_count(store) == 1


def test_a_batch_is_recorded_in_one_transaction_refusing_only_duplicates(kit, store):
    chain = kit.chain("ec-p256")
    store.record_issued(chain.issue_for("ec-p256", serial=0x10), LABEL)
    certs = [chain.issue_for("ec-p256", serial=s) for s in (0x11, 0x10, 0x12)]
    decision = {"outcome": "approve", "votes": ["a signed vote"]}
    batch = [(c, LABEL, [f"www.{kit.ZONE}"], decision if i == 0 else None)
             for i, c in enumerate(certs)]  # fmt: skip
    outcomes = store.record_issued_batch(batch)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], DuplicateSerial)
    assert issued_count(store) == 3
    assert store.get(0x12).names == store.get(0x10).names == (f"www.{kit.ZONE}",)
    assert store.get(0x11).decision == decision  # kept with the issuance
    assert store.get(0x12).decision is None


def test_a_request_id_finds_the_certificate_recorded_for_it_the_first_one_kept(kit, store):
    chain = kit.chain("ec-p256")
    certs = [chain.issue_for("ec-p256", serial=s) for s in (0x21, 0x22, 0x23)]
    batch = [(c, LABEL, [f"www.{kit.ZONE}"], None) for c in certs]
    assert store.record_issued_batch(batch, ["order-a", None, "order-b"]) == [None] * 3
    assert store.issued_for("order-a").serial == 0x21
    assert store.issued_for("order-b").serial == 0x23
    assert store.issued_for("order-c") is None
    again = chain.issue_for("ec-p256", serial=0x24)
    store.record_issued_batch([(again, LABEL, [f"www.{kit.ZONE}"], None)], ["order-a"])
    assert store.issued_for("order-a").serial == 0x21  # the first certificate keeps the id


def test_final_certificates_owed_to_the_log_are_kept_until_it_has_them(kit, store):
    chain = kit.chain("ec-p256")
    store.record_issued(chain.issue_for("ec-p256", serial=0x30), LABEL)  # owes nothing
    certs = [chain.issue_for("ec-p256", serial=s) for s in (0x33, 0x31, 0x32)]
    batch = [(c, LABEL, [f"www.{kit.ZONE}"], None) for c in certs]
    assert store.record_issued_batch(batch, log_finals=True) == [None] * 3
    owed = store.finals_to_log(10)
    assert [serial for serial, _, _ in owed] == [0x33, 0x31, 0x32]  # in the order recorded
    assert owed[0][1] == certs[0].public_bytes(serialization.Encoding.DER)
    assert {label for _, _, label in owed} == {LABEL}
    assert [serial for serial, _, _ in store.finals_to_log(2)] == [0x33, 0x31]
    store.finals_logged([(0x31, 7), (0x33, 5)])
    assert [serial for serial, _, _ in store.finals_to_log(10)] == [0x32]
    assert store.count_finals_to_log() == 1
    assert store.get(0x33).final_leaf_index == 5 and store.get(0x31).final_leaf_index == 7
    assert store.get(0x32).final_leaf_index is None and store.get(0x30).final_leaf_index is None
    # a duplicate serial is refused and owes nothing more
    again = store.record_issued_batch(batch[:1], log_finals=True)
    assert isinstance(again[0], DuplicateSerial) and store.count_finals_to_log() == 1
