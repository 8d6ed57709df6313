"""The accepted-roots file: PEM beside the tiles, replaced whole, read back in order."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustchain.actors.ct import ChainValidator
from trustchain.actors.ct.roots import load_roots, roots_path, save_roots

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def root(name: str) -> bytes:
    """A self-signed CA certificate's DER."""
    key = ec.derive_private_key(len(name) + 7, ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def accepted(*ders: bytes) -> ChainValidator:
    chains = ChainValidator()
    for der in ders:
        chains.add_root(der)
    return chains


def test_the_file_lies_beside_the_tile_directory(tmp_path: Path) -> None:
    assert roots_path(tmp_path / "ct" / "tiles") == tmp_path / "ct" / "accepted-roots.pem"


def test_no_file_means_no_root_accepted(tmp_path: Path) -> None:
    assert load_roots(tmp_path / "accepted-roots.pem") == []


def test_saved_roots_load_back_as_der_in_order(tmp_path: Path) -> None:
    first, second = root("first root"), root("second")
    path = roots_path(tmp_path / "tiles")
    save_roots(path, accepted(first, second).roots.values())
    assert load_roots(path) == [first, second]
    pem = x509.load_pem_x509_certificates(path.read_bytes())  # plain PEM, as before
    assert [c.public_bytes(serialization.Encoding.DER) for c in pem] == [first, second]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_saving_replaces_the_file_whole(tmp_path: Path) -> None:
    first, second = root("first root"), root("second")
    path = tmp_path / "accepted-roots.pem"
    save_roots(path, accepted(first, second).roots.values())
    save_roots(path, accepted(second).roots.values())
    assert load_roots(path) == [second]


def test_an_empty_file_holds_no_roots(tmp_path: Path) -> None:
    path = tmp_path / "accepted-roots.pem"
    save_roots(path, [])  # the log was asked to accept an empty list
    assert path.read_bytes() == b""
    assert load_roots(path) == []
