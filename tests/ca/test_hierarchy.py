"""Hierarchy with in-memory keys and a real SQLite store: what ensure() creates and
replaces at start."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ca.hierarchy import Hierarchy, has_directory_name_constraint
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
    return Hierarchy(config, CAStore(config.database), keys.public_key, keys.sign)


def test_a_first_start_makes_a_root_and_an_intermediate_without_directory_names(
    tmp_path: Path,
) -> None:
    keys = Keys()
    h = hierarchy(tmp_path, keys)
    h.ensure(datetime.now(UTC))
    assert h.current.key_label == "ca-intermediate"
    assert not has_directory_name_constraint(h.current.certificate)
    assert (tmp_path / "root.pem").exists()


def test_a_legacy_intermediate_is_replaced_at_start_and_kept_for_its_leaves(
    tmp_path: Path,
) -> None:
    keys = Keys()
    h = hierarchy(tmp_path, keys)
    h.ensure(datetime.now(UTC))
    root = h.store.list_ca_certificates("root")[-1]
    legacy = with_directory_name_constraint(h.current.certificate, keys.keys[root.key_label])
    h.store.add_ca_certificate("intermediate", h.current.key_label, legacy)
    assert has_directory_name_constraint(
        h.store.current_intermediate(datetime.now(UTC)).certificate
    )

    again = hierarchy(tmp_path, keys)  # the next start
    again.ensure(datetime.now(UTC))
    assert not has_directory_name_constraint(again.current.certificate)
    assert again.current.key_label == "ca-intermediate-3"
    labels = [r.key_label for r in again.store.list_ca_certificates("intermediate")]
    assert labels == ["ca-intermediate", "ca-intermediate", "ca-intermediate-3"]
    assert legacy.fingerprint(hashes.SHA256()).hex() in {
        r.fingerprint for r in again.store.list_ca_certificates("intermediate")
    }  # still known: CRLs and chains for what it issued

    third = hierarchy(tmp_path, keys)  # and no further rotation after that
    third.ensure(datetime.now(UTC))
    assert third.current.key_label == "ca-intermediate-3"
