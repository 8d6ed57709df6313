"""Hierarchy with in-memory keys and a real SQLite store: what create_missing() creates
and replaces at start, and the two-step (TBS out, signature in) CRLs and rotation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ca import SignatureInvalid
from trustchain.actors.ca.hierarchy import (
    Hierarchy,
    create_missing,
    has_directory_name_constraint,
)
from trustchain.actors.ca.store import CAStore
from trustchain.config import CaConfig

from .test_certs import with_directory_name_constraint

ZONE = "pki.example.com"


class Keys:
    """An HSM stand-in for the domain core: P-256 keys by label, made on first use."""

    def __init__(self) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}

    def public_key(self, label: str) -> ec.EllipticCurvePublicKey:
        key = self.keys.setdefault(label, ec.generate_private_key(ec.SECP256R1()))
        return key.public_key()

    def sign(self, label: str, data: bytes, hash_name: str) -> bytes:
        return self.keys[label].sign(data, ec.ECDSA(hashes.SHA256()))


def hierarchy(tmp_path: Path, keys: Keys) -> Hierarchy:
    config = CaConfig(permitted_zones=[ZONE], database=tmp_path / "ca.sqlite3",
                      crl_dir=tmp_path / "crl")  # fmt: skip
    return Hierarchy(config, CAStore(config.database))


def started(tmp_path: Path, keys: Keys, now: datetime | None = None) -> Hierarchy:
    h = hierarchy(tmp_path, keys)
    create_missing(h, now or datetime.now(UTC), keys.public_key, keys.sign)
    return h


def test_a_first_start_makes_a_root_and_an_intermediate_without_directory_names(
    tmp_path: Path,
) -> None:
    keys = Keys()
    h = started(tmp_path, keys)
    assert h.current.key_label == "ca-intermediate"
    assert h.root.key_label == "ca-root"
    assert not has_directory_name_constraint(h.current.certificate)
    assert h.missing(datetime.now(UTC)) is None
    written = {p.name for p in tmp_path.iterdir()}
    assert written <= {"ca.sqlite3", "ca.sqlite3-wal", "ca.sqlite3-shm"}  # only the store


def test_a_legacy_intermediate_is_replaced_at_start_and_kept_for_its_leaves(
    tmp_path: Path,
) -> None:
    keys = Keys()
    h = started(tmp_path, keys)
    root = h.store.list_ca_certificates("root")[-1]
    legacy = with_directory_name_constraint(h.current.certificate, keys.keys[root.key_label])
    h.store.add_ca_certificate("intermediate", h.current.key_label, legacy)
    assert has_directory_name_constraint(
        h.store.current_intermediate(datetime.now(UTC)).certificate
    )

    again = started(tmp_path, keys)  # the next start
    assert not has_directory_name_constraint(again.current.certificate)
    assert again.current.key_label == "ca-intermediate-3"
    labels = [r.key_label for r in again.store.list_ca_certificates("intermediate")]
    assert labels == ["ca-intermediate", "ca-intermediate", "ca-intermediate-3"]
    assert legacy.fingerprint(hashes.SHA256()).hex() in {
        r.fingerprint for r in again.store.list_ca_certificates("intermediate")
    }  # still known: CRLs and chains for what it issued

    third = started(tmp_path, keys)  # and no further rotation after that
    assert third.current.key_label == "ca-intermediate-3"


def sign(keys: Keys, new: object) -> bytes:
    return keys.sign(new.signer, new.tbs.der, new.tbs.hash_name)  # type: ignore[attr-defined]


def test_a_crl_is_a_tbs_out_and_a_signature_in_and_no_file(tmp_path: Path) -> None:
    keys = Keys()
    now = datetime.now(UTC)
    h = started(tmp_path, keys, now)
    label = h.current.key_label
    assert h.live_labels(now) == ["ca-root", label]
    new = h.new_crl(label, now)
    assert new.signer == label and new.crl_number == 1
    assert h.crls == {}  # nothing until the signature comes back
    crl = h.add_crl(new, sign(keys, new))
    assert crl is not None and h.crls[label] is crl and h.crl_number(label) == 1
    assert crl.is_signature_valid(keys.keys[label].public_key())
    files = h.crl_files(label)
    assert files == {
        h.config.crl_dir / f"{label}.crl": crl.public_bytes(serialization.Encoding.DER),
        h.config.crl_dir / f"{label}.pem": crl.public_bytes(serialization.Encoding.PEM),
    }
    assert not h.config.crl_dir.exists()  # the actor writes them, not the core


def test_a_crl_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    keys = Keys()
    now = datetime.now(UTC)
    h = started(tmp_path, keys, now)
    new = h.new_crl(h.current.key_label, now)
    wrong = keys.sign("ca-root", new.tbs.der, new.tbs.hash_name)
    with pytest.raises(SignatureInvalid):
        h.add_crl(new, wrong)
    assert h.crls == {}


def test_an_older_crl_signed_late_never_replaces_a_newer_one(tmp_path: Path) -> None:
    keys = Keys()
    now = datetime.now(UTC)
    h = started(tmp_path, keys, now)
    label = h.current.key_label
    first, second = h.new_crl(label, now), h.new_crl(label, now + timedelta(seconds=1))
    assert (first.crl_number, second.crl_number) == (1, 2)
    assert h.add_crl(second, sign(keys, second)) is not None
    assert h.add_crl(first, sign(keys, first)) is None
    assert h.crl_number(label) == 2


def test_a_rotation_is_a_tbs_for_the_root_to_sign_then_the_new_intermediate_issues(
    tmp_path: Path,
) -> None:
    keys = Keys()
    now = datetime.now(UTC)
    h = started(tmp_path, keys, now)
    label = h.next_intermediate_label()
    assert label == "ca-intermediate-2"
    new = h.new_intermediate(now, label, keys.public_key(label))
    assert new.signer == "ca-root" and new.role == "intermediate"
    record = h.add_ca_certificate(new, sign(keys, new))
    assert h.current.key_label == "ca-intermediate"  # not before load()
    crl = h.new_crl(record.key_label, now)  # its first CRL can be made at once
    assert h.add_crl(crl, sign(keys, crl)) is not None
    h.load(now)
    assert h.current.key_label == label
    cert = h.current.certificate
    assert cert.issuer == h.root.certificate.subject
    cert.verify_directly_issued_by(h.root.certificate)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert x509.BasicConstraints in [e.value.__class__ for e in cert.extensions]
