"""Key types, algorithm identifiers, and the remote-signing private key adapter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from trustchain.actors.ca import (
    SignatureAlgorithm,
    ecdsa_der_from_raw,
    key_type_of,
    local_signer,
    remote_signing_key,
    signature_algorithm_for,
)
from trustchain.actors.der import signature_algorithm_of


def self_signed_builder(public_key) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "adapter test")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("ec-p256", "ec-p256"), ("ec-p384", "ec-p384"), ("ec-p521", "ec-p521"),
     ("rsa-2048", "rsa-2048"), ("ed25519", "ed25519")],
)  # fmt: skip
def test_key_types_have_their_policy_names(kit, kind, expected):
    assert key_type_of(kit.key(kind).public_key()) == expected


@pytest.mark.parametrize(
    ("kind", "algorithm"),
    [("ec-p256", SignatureAlgorithm.ECDSA_SHA256), ("ec-p384", SignatureAlgorithm.ECDSA_SHA384),
     ("rsa-2048", SignatureAlgorithm.RSA_PKCS1_SHA256)],
)  # fmt: skip
def test_algorithm_identifiers_are_the_bytes_cryptography_signs_with(kit, kind, algorithm):
    key = kit.key(kind)
    assert signature_algorithm_for(key.public_key()) is algorithm
    cert = self_signed_builder(key.public_key()).sign(key, algorithm.hash)
    assert signature_algorithm_of(cert.tbs_certificate_bytes) == algorithm.algorithm_identifier
    assert cert.signature_algorithm_oid == algorithm.oid


@pytest.mark.parametrize("kind", ["ec-p521", "ed25519", "rsa-1024"])
def test_keys_a_ca_must_not_use_have_no_signature_algorithm(kit, kind):
    with pytest.raises(ValueError):
        signature_algorithm_for(kit.key(kind).public_key())


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa-2048"])
def test_remote_key_signs_certificates_and_crls_through_the_callable(kit, kind):
    real = kit.key(kind)
    calls: list[tuple[int, str]] = []

    def signer(data: bytes, hash_name: str) -> bytes:
        calls.append((len(data), hash_name))
        return local_signer(real)(data, hash_name)

    remote = remote_signing_key(real.public_key(), signer)
    algorithm = signature_algorithm_for(real.public_key())
    cert = self_signed_builder(real.public_key()).sign(remote, algorithm.hash)
    cert.verify_directly_issued_by(cert)
    now = datetime.now(UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .sign(remote, algorithm.hash)
    )
    assert crl.is_signature_valid(real.public_key())
    assert [name for _, name in calls] == [algorithm.hash_name] * 2
    assert calls[0][0] == len(cert.tbs_certificate_bytes)  # the data, not a digest


def test_remote_key_holds_no_private_material(kit):
    remote = remote_signing_key(kit.key("ec-p256").public_key(), lambda d, h: b"")
    assert isinstance(remote, ec.EllipticCurvePrivateKey)
    with pytest.raises(TypeError):
        remote.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(TypeError):
        remote.sign(b"x", ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_remote_rsa_key_refuses_pss(kit):
    remote = remote_signing_key(kit.key("rsa-2048").public_key(), lambda d, h: b"")
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH)
    with pytest.raises(TypeError):
        remote.sign(b"x", pss, hashes.SHA256())


def test_raw_pkcs11_ecdsa_signature_converts_to_der(kit):
    key = kit.key("ec-p256")
    der_signature = key.sign(b"data", ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der_signature)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert ecdsa_der_from_raw(raw) == der_signature
    with pytest.raises(ValueError):
        ecdsa_der_from_raw(raw[:-1])
