"""Domain control records (trust.domain_control) in the trust store: what ACME issuance's
gate finds, and what it does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.trust.domain_control import DomainControlRecord, Wanted, identifiers_of
from trustchain.actors.trust.errors import TrustStoreUnavailable
from trustchain.actors.trust.store import TrustStore
from trustchain.actors.trust.votes import Decision, check_decision, sign_vote
from trustchain.actors.validator.messages import challenge_digest

KEYS = {f"v{i}": ed25519.Ed25519PrivateKey.generate() for i in range(1, 5)}
TOKEN = "t" * 43
KEY_AUTHORIZATION = TOKEN + ".thumbprint-of-the-account-key-xxxxxxxxxxxxxx"


def approval(identifier: str, kind: str = "http-01", type_: str = "dns") -> Decision:
    digest = challenge_digest(kind, type_, identifier, TOKEN, KEY_AUTHORIZATION)
    votes = tuple(sign_vote(KEYS[v], v, digest, "approve") for v in ("v1", "v2", "v3"))
    return Decision(digest, "approve", votes, ())


def record(identifier: str, at: float, *, account: str = "acct-1", kind: str = "http-01",
           type_: str = "dns", life: float = 100.0) -> DomainControlRecord:  # fmt: skip
    return DomainControlRecord(account, type_, identifier, kind,
                               approval(identifier, kind, type_), at, at + life)  # fmt: skip


def test_each_name_asks_for_its_identifier_a_wildcard_for_its_base_name_through_dns():
    assert identifiers_of(["WWW.Trust.Example.com", "*.trust.example.com", "2001:DB8::0:1"]) == [
        Wanted("WWW.Trust.Example.com", "dns", "www.trust.example.com", False),
        Wanted("*.trust.example.com", "dns", "trust.example.com", True),
        Wanted("2001:DB8::0:1", "ip", "2001:db8::1", False),
    ]


def test_a_record_is_found_for_its_account_until_it_expires(tmp_path: Path):
    store = TrustStore(tmp_path / "trust.sqlite3")
    store.add_domain_control(record("www.trust.example.com", at=1_000.0))
    (wanted,) = identifiers_of(["www.trust.example.com"])
    found = store.find_domain_control("acct-1", wanted, 1_050.0)
    assert found is not None and found.kind == "http-01"
    public = {v: k.public_key() for v, k in KEYS.items()}
    check_decision(found.decision, public, 1)  # the evidence checks again with the keys
    assert store.find_domain_control("acct-2", wanted, 1_050.0) is None  # another account
    assert store.find_domain_control("acct-1", wanted, 1_100.0) is None  # expired
    other = identifiers_of(["api.trust.example.com"])[0]
    assert store.find_domain_control("acct-1", other, 1_050.0) is None
    store.close()
    again = TrustStore(tmp_path / "trust.sqlite3")  # durable
    assert again.find_domain_control("acct-1", wanted, 1_050.0) is not None
    assert again.domain_control_count(1_050.0) == 1


def test_a_wildcard_needs_its_base_name_proved_through_dns01():
    store = TrustStore()
    store.add_domain_control(record("trust.example.com", at=0.0, kind="http-01"))
    (wildcard,) = identifiers_of(["*.trust.example.com"])
    (plain,) = identifiers_of(["trust.example.com"])
    assert store.find_domain_control("acct-1", plain, 1.0) is not None
    assert store.find_domain_control("acct-1", wildcard, 1.0) is None
    store.add_domain_control(record("trust.example.com", at=2.0, kind="dns-01"))
    found = store.find_domain_control("acct-1", wildcard, 3.0)
    assert found is not None and found.kind == "dns-01"


def test_expired_records_are_dropped_as_new_ones_come():
    store = TrustStore()
    store.add_domain_control(record("a.trust.example.com", at=0.0, life=10.0))
    store.add_domain_control(record("b.trust.example.com", at=5.0, life=10.0))
    assert store.domain_control_count(6.0) == 2
    store.add_domain_control(record("c.trust.example.com", at=20.0, life=10.0))
    assert store._db.execute("SELECT COUNT(*) FROM domain_control").fetchone()[0] == 1


def test_a_record_written_in_a_batch_that_fails_is_not_kept():
    store = TrustStore()
    with pytest.raises(TrustStoreUnavailable), store.batch():
        store.add_domain_control(record("a.trust.example.com", at=0.0))
        store._spoil()  # a later write of the same decision failed
    (wanted,) = identifiers_of(["a.trust.example.com"])
    assert store.find_domain_control("acct-1", wanted, 1.0) is None
