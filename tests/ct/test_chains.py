"""ChainValidator: which submitted chains a log accepts (no actor, no I/O)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustchain.actors.ct import ChainValidator, InvalidChain, LogEntryType, issuer_key_hash
from trustchain.actors.ct.chains import MAX_CHAIN, POISON

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _cert(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
    poison: bool = False,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if poison:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Hierarchy:
    root: bytes
    intermediate: bytes
    leaf: bytes
    precert: bytes
    intermediate_cert: x509.Certificate


@pytest.fixture(scope="module")
def pki() -> Hierarchy:
    root_key, ca_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("root", root_key, None, root_key, ca=True)
    intermediate = _cert("intermediate", ca_key, root, root_key, ca=True)
    leaf = _cert("leaf", leaf_key, intermediate, ca_key, ca=False)
    precert = _cert("leaf", leaf_key, intermediate, ca_key, ca=False, poison=True)
    return Hierarchy(_der(root), _der(intermediate), _der(leaf), _der(precert), intermediate)


@pytest.fixture
def chains(pki: Hierarchy) -> ChainValidator:
    validator = ChainValidator()
    validator.add_root(pki.root)
    return validator


def test_a_chain_ending_at_an_accepted_root_is_returned_up_to_it(chains, pki) -> None:
    chain = chains.check([pki.leaf, pki.intermediate, pki.root], precert=False)
    assert [_der(c) for c in chain] == [pki.leaf, pki.intermediate, pki.root]


def test_a_chain_ending_under_an_accepted_root_needs_no_root(chains, pki) -> None:
    chain = chains.check([pki.leaf, pki.intermediate], precert=False)
    assert [_der(c) for c in chain] == [pki.leaf, pki.intermediate]


def test_certificates_after_the_accepted_root_are_not_logged(chains, pki) -> None:
    entry = chains.entry([pki.leaf, pki.intermediate, pki.root, pki.leaf], precert=False)
    assert entry.entry_type is LogEntryType.X509_ENTRY
    assert entry.chain == (pki.intermediate, pki.root)


def test_a_precert_entry_names_its_issuers_key(chains, pki) -> None:
    entry = chains.entry([pki.precert, pki.intermediate], precert=True)
    spki = pki.intermediate_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert entry.entry_type is LogEntryType.PRECERT_ENTRY
    assert entry.issuer_key_hash == issuer_key_hash(spki)


@pytest.mark.parametrize(
    ("chain", "precert", "error"),
    [
        ([], False, "the chain is empty"),
        (["leaf"] * (MAX_CHAIN + 1), False, f"more than {MAX_CHAIN} certificates"),
        (["leaf", b"not DER"], False, r"chain\[1\] is not a DER X\.509 certificate"),
        (["precert", "intermediate"], False, "use add-pre-chain"),
        (["leaf", "intermediate"], True, "needs a precertificate"),
        (["leaf", "root"], False, r"chain\[0\] is not signed by chain\[1\]"),
        (["leaf"], False, "does not lead to a root this log accepts"),
    ],
)
def test_a_bad_chain_is_refused_saying_why(chains, pki, chain, precert, error) -> None:
    ders = [getattr(pki, c) if isinstance(c, str) else c for c in chain]
    with pytest.raises(InvalidChain, match=error) as refused:
        chains.check(ders, precert=precert)
    assert refused.value.code == "invalid_chain"


def test_a_precertificate_needs_its_issuer_after_it(pki) -> None:
    chains = ChainValidator()
    chains.add_root(pki.precert)  # odd, but a precert that is itself accepted has no issuer
    with pytest.raises(InvalidChain, match="needs the issuing CA after the precert"):
        chains.check([pki.precert], precert=True)


def test_no_root_accepted_means_no_chain_accepted(pki) -> None:
    with pytest.raises(InvalidChain, match="does not lead to a root"):
        ChainValidator().check([pki.leaf, pki.intermediate, pki.root], precert=False)


def test_a_root_that_is_not_der_is_refused(chains) -> None:
    with pytest.raises(InvalidChain, match=r"root is not a DER X\.509 certificate"):
        chains.add_root(b"junk")


def test_only_ca_links_are_remembered_the_leaf_is_always_verified(chains, pki) -> None:
    chains.check([pki.leaf, pki.intermediate, pki.root], precert=False)
    assert len(chains._verified_links) == 1  # intermediate -> root, not leaf -> intermediate
    other = _cert(
        "leaf", ec.generate_private_key(ec.SECP256R1()), pki.intermediate_cert,
        ec.generate_private_key(ec.SECP256R1()), ca=False,
    )  # fmt: skip
    with pytest.raises(InvalidChain, match=r"chain\[0\] is not signed by chain\[1\]"):
        chains.check([_der(other), pki.intermediate, pki.root], precert=False)


def test_poison_is_the_rfc6962_oid() -> None:
    assert POISON.dotted_string == "1.3.6.1.4.1.11129.2.4.3"
