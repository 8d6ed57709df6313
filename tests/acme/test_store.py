"""actors/acme/store.py on real SQLite files: records come back as they were written,
across a reopen; a batch is all or nothing; a fault of the file is a typed
``AcmeStoreUnavailable`` with nothing changed; a bug in a statement is not."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from trustchain.actors.acme.records import (
    PENDING,
    PROCESSING,
    VALID,
    Account,
    Authorization,
    Certificate,
    Challenge,
    Order,
)
from trustchain.actors.acme.store import AcmeStore, AcmeStoreUnavailable

JWK = {"kty": "EC", "crv": "P-256", "x": "x" * 43, "y": "y" * 43}


def account(id_: str = "acct1", thumbprint: str = "tp1") -> Account:
    return Account(id_, JWK, thumbprint, ("mailto:a@example.com",), VALID, 10.0, True, "eab")


def authz(id_: str = "az1", status: str = VALID, validated: float | None = 20.0) -> Authorization:
    return Authorization(id_, "acct1", ("dns", "example.com"), True, status, 1.0, 100.0,
                         validated, {"votes": ["AA=="]})  # fmt: skip


def order(id_: str = "o1", authzs: tuple[str, ...] = ("az1",)) -> Order:
    return Order(id_, "acct1", PENDING, (("dns", "*.example.com"),), authzs, "default", 5.0,
                 50.0, {"type": "x"}, "csr", None, "aki.serial")  # fmt: skip


def certificate(id_: str = "c1", serial: str = "abc", issued: float = 30.0) -> Certificate:
    return Certificate(id_, serial, f"AKI.{id_}", "acct1", "o1", "PEM", ("a.example.com",),
                       issued, 30.0, 90.0)  # fmt: skip


def test_records_come_back_as_written_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "acme" / "acme.sqlite3"  # the directory is made
    store = AcmeStore(path)
    challenge = Challenge("ch1", "az1", "dns-01", "t" * 43, PENDING)
    with store.batch():
        store.put_account(account())
        store.put_authorization(authz())
        store.put_challenge(challenge)
        store.put_order(order())
        store.put_certificate(certificate())
    store.close()
    store = AcmeStore(path)
    assert store.account("acct1") == account()
    assert store.account_by_thumbprint("tp1") == account()
    assert store.authorization("az1") == authz()
    assert store.challenge("ch1") == challenge
    assert store.challenges_of("az1") == [challenge] == store.challenges_in(PENDING)
    assert store.order("o1") == order()
    assert store.orders_with("az1") == [order()] == store.orders_of("acct1")
    assert store.certificate("c1") == certificate() == store.certificate_by_serial("ABC")
    assert store.certificate_by_cert_id("AKI.c1") == certificate()
    assert store.order_replacing("aki.serial") == order()


def test_a_record_written_again_keeps_its_place_in_listings(tmp_path: Path) -> None:
    store = AcmeStore(tmp_path / "a.sqlite3")
    for id_ in ("z", "a", "m"):
        store.put_order(order(id_))
    store.put_order(order("z", ("az2", "az3")))
    assert [o.id for o in store.orders_of("acct1")] == ["z", "a", "m"]
    assert store.order("z").authorizations == ("az2", "az3")  # type: ignore[union-attr]


def test_reusable_authorizations_are_valid_recent_and_unexpired(tmp_path: Path) -> None:
    store = AcmeStore(tmp_path / "a.sqlite3")
    store.put_authorization(authz("old", validated=5.0))
    store.put_authorization(authz("new", validated=25.0))
    store.put_authorization(authz("pending", status=PENDING, validated=None))
    found = store.reusable_authorization("acct1", ("dns", "example.com"), True, 10.0, 50.0)
    assert found is not None and found.id == "new"
    assert store.reusable_authorization("acct1", ("dns", "example.com"), False, 0, 50.0) is None
    assert store.reusable_authorization("acct1", ("dns", "example.com"), True, 0, 100.0) is None


def test_windows_count_what_is_newer_than_since(tmp_path: Path) -> None:
    store = AcmeStore(tmp_path / "a.sqlite3")
    for i, created in enumerate([1.0, 2.0, 3.0]):
        store.put_order(Order(f"o{i}", "acct1", PENDING, (), (), "default", created, 99.0))
        store.put_certificate(certificate(f"c{i}", f"{i + 1:x}", issued=created))
    assert store.orders_created_since("acct1", 1.0) == [2.0, 3.0]
    assert store.certificates_named_since("a.example.com", 1.5) == [2.0, 3.0]
    assert store.counts() == {"accounts": 0, "orders": {"pending": 3}, "authorizations": {},
                              "challenges": {}, "certificates": 3}  # fmt: skip


def test_a_batch_is_all_or_nothing(tmp_path: Path) -> None:
    store = AcmeStore(tmp_path / "a.sqlite3")
    with pytest.raises(RuntimeError), store.batch():
        store.put_account(account())
        raise RuntimeError("a bug half way")
    assert store.account("acct1") is None


def test_an_account_read_inside_a_batch_that_rolls_back_is_not_remembered(
    tmp_path: Path,
) -> None:
    store = AcmeStore(tmp_path / "a.sqlite3")
    store.put_account(account())
    assert store.account("acct1") == account()  # read, and kept
    deactivated = dataclasses.replace(account(), status="deactivated")
    with pytest.raises(RuntimeError), store.batch():
        store.put_account(deactivated)
        assert store.account("acct1") == deactivated  # the batch sees its own write
        raise RuntimeError("a bug half way")
    assert store.account("acct1") == account()  # rolled back: not the uncommitted one
    store.put_account(deactivated)
    assert store.account("acct1") == deactivated  # a write is read back, not the kept one
    assert AcmeStore(tmp_path / "a.sqlite3").account("acct1") == deactivated


def test_a_read_only_database_is_unavailable_and_changes_nothing(tmp_path: Path) -> None:
    store = AcmeStore(tmp_path / "a.sqlite3")
    store.put_account(account())
    store._db.execute("PRAGMA query_only = ON")  # writes fail as SQLITE_READONLY
    with pytest.raises(AcmeStoreUnavailable) as caught:
        store.put_account(account("acct2", "tp2"))
    assert caught.value.code == "acme_store_unavailable" and caught.value.details["cause"]
    with pytest.raises(AcmeStoreUnavailable), store.batch():
        store.put_order(order())
    with pytest.raises(AcmeStoreUnavailable):
        store.probe(1.0)
    store._db.execute("PRAGMA query_only = OFF")
    store.probe(2.0)
    assert store.account("acct2") is None and store.order("o1") is None


def test_a_failed_write_spoils_its_batch_even_when_swallowed(tmp_path: Path) -> None:
    store = AcmeStore(tmp_path / "a.sqlite3")
    with pytest.raises(AcmeStoreUnavailable), store.batch():
        store.put_account(account())
        store._db.execute("PRAGMA query_only = ON")
        try:
            store.put_order(order())
        except AcmeStoreUnavailable:
            pass
        store._db.execute("PRAGMA query_only = OFF")
    assert store.account("acct1") is None


def test_a_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(AcmeStoreUnavailable):
        AcmeStore(tmp_path / "dir.sqlite3")


def test_a_bug_in_a_statement_is_not_a_fault_of_the_disk(tmp_path: Path) -> None:
    store = AcmeStore(tmp_path / "a.sqlite3")
    store.put_account(account())
    with pytest.raises(sqlite3.IntegrityError):  # one key, one account: the core checks first
        store.put_account(account("acct2", "tp1"))


def test_pruning_forgets_what_expired_and_keeps_what_a_kept_order_names(tmp_path: Path) -> None:
    store = AcmeStore(tmp_path / "acme.sqlite3")
    later = dataclasses.replace(authz("az2"), expires=1_000.0)
    with store.batch():
        store.put_account(account())
        for a in (authz("az1"), later):  # az1 expires at 100, az2 at 1,000
            store.put_authorization(a)
            store.put_challenge(Challenge(f"ch-{a.id}", a.id, "http-01", "t" * 43, PENDING))
        store.put_order(order("o1"))  # expires at 50
        store.put_order(dataclasses.replace(order("o2", ("az1", "az2")), expires=1_000.0))
        store.put_order(dataclasses.replace(order("o3", ()), status=PROCESSING))  # issuing
        store.put_certificate(certificate("c1"))  # not after 90
        store.put_certificate(dataclasses.replace(certificate("c2", "def"), not_after=5_000.0))

    assert store.prune(before=200.0) == {
        "orders": 1, "authorizations": 0, "challenges": 0, "certificates": 1}  # fmt: skip
    assert store.order("o1") is None and store.order("o2") is not None
    assert store.authorization("az1") is not None  # expired, but o2 still names it
    assert store.certificate("c1") is None and store.certificate("c2") is not None
    assert store.certificates_named_since("a.example.com", 0.0) == [30.0]  # c2's name only

    assert store.prune(before=2_000.0) == {
        "orders": 1, "authorizations": 2, "challenges": 2, "certificates": 0}  # fmt: skip
    assert store.challenges_of("az1") == [] and store.challenges_of("az2") == []
    assert store.order("o3") is not None  # being issued: never forgotten under it
    assert store.account("acct1") == account()  # accounts stay
