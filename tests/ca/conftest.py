"""Fixtures for the CA domain tests: in-memory keys, a CA chain per key type,
CSRs, and pkilint run through its Python API (as its CLIs do).

Keys and chains are built once per session (RSA key generation is the slow
part); every signature goes through ``local_signer`` and ``assemble``, i.e. the
same TBS -> raw signature -> DER path the HSM actor uses.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from trustchain.actors.ca import (
    ApprovedRequest,
    IssuancePolicy,
    SubscriberKey,
    ToBeSigned,
    assemble,
    ca_name,
    check_request,
    intermediate_tbs,
    leaf_tbs,
    local_signer,
    new_csr,
    new_key,
    new_serial,
    parse_csr,
    root_tbs,
)
from trustchain.config import SUBSCRIBER_KEY_TYPES

ZONE = "pki.example.com"
CRL_URL = "http://ca.example.com/intermediate.crl"
CA_ISSUERS_URL = "http://ca.example.com/intermediate.cer"
PrivateKey = CertificateIssuerPrivateKeyTypes
ROOT_CRL_URL = "http://ca.example.com/root.crl"


def _generate(kind: str) -> PrivateKey:
    """``new_key``, plus the types the CA must refuse ("ec-p521", "rsa-1024")."""
    if kind == "ec-p521":
        return ec.generate_private_key(ec.SECP521R1())
    if kind.startswith("rsa-") and kind not in SUBSCRIBER_KEY_TYPES:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[4:]))
    return new_key(kind)


@functools.cache
def make_key(kind: str, slot: int = 0) -> PrivateKey:
    """A private key per (kind, slot), made once: "ec-p256", "rsa-2048", "ed25519", ..."""
    return _generate(kind)


def sign_and_assemble(tbs: ToBeSigned, private_key: PrivateKey) -> x509.Certificate:
    assert isinstance(private_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    signature = local_signer(private_key)(tbs.der, tbs.hash_name)
    return assemble(tbs.der, tbs.algorithm, signature, issuer_public_key=private_key.public_key())


def pem(obj: x509.Certificate | x509.CertificateRevocationList) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def make_csr(
    key: PrivateKey,
    names: list[x509.GeneralName] | None = None,
    common_name: str | None = None,
) -> bytes:
    """A PEM CSR (``new_csr``); ``names`` become the SAN extension (absent when None)."""
    assert isinstance(key, SubscriberKey)
    return new_csr(key, names, common_name=common_name)


def dns_csr(key: PrivateKey, *names: str) -> bytes:
    return make_csr(key, [x509.DNSName(n) for n in names])


@dataclass
class Chain:
    """A root and an intermediate whose keys sign in memory."""

    root_key: PrivateKey
    root: x509.Certificate
    intermediate_key: PrivateKey
    intermediate: x509.Certificate

    def issue(
        self,
        approved: ApprovedRequest,
        now: datetime | None = None,
        serial: int | None = None,
        **options: Any,
    ) -> x509.Certificate:
        tbs = leaf_tbs(
            approved,
            self.intermediate,
            serial or new_serial(),
            now or datetime.now(UTC),
            CRL_URL,
            ca_issuers_url=CA_ISSUERS_URL,
            **options,
        )
        return sign_and_assemble(tbs, self.intermediate_key)

    def issue_for(
        self, leaf_kind: str = "ec-p256", *names: str, **options: Any
    ) -> x509.Certificate:
        policy = IssuancePolicy(permitted_zones=(ZONE,), allow_ipv6_sans=True)
        csr = parse_csr(dns_csr(make_key(leaf_kind), *(names or (f"www.{ZONE}",))))
        return self.issue(check_request(csr, policy), **options)

    def write(self, directory: Path) -> tuple[Path, Path]:
        root, intermediate = directory / "root.pem", directory / "intermediate.pem"
        root.write_bytes(pem(self.root))
        intermediate.write_bytes(pem(self.intermediate))
        return root, intermediate


def build_chain(kind: str, *, zones: tuple[str, ...] | None = None) -> Chain:
    now = datetime.now(UTC)
    root_key, intermediate_key = make_key(kind, 1), make_key(kind, 2)
    root = sign_and_assemble(
        root_tbs(
            subject=ca_name(f"TrustChain Test Root {kind}", "TrustChain", "US"),
            public_key=root_key.public_key(),
            serial=new_serial(),
            now=now - timedelta(minutes=5),
        ),
        root_key,
    )
    intermediate = sign_and_assemble(
        intermediate_tbs(
            subject=ca_name(f"TrustChain Test Issuing CA {kind}", "TrustChain", "US"),
            public_key=intermediate_key.public_key(),
            issuer_cert=root,
            serial=new_serial(),
            now=now - timedelta(minutes=5),
            validity=timedelta(days=30),
            permitted_zones=zones,
            crl_url=ROOT_CRL_URL,
            ca_issuers_url="http://ca.example.com/root.cer",
        ),
        root_key,
    )
    return Chain(root_key, root, intermediate_key, intermediate)


@functools.cache
def chain_of(kind: str = "ec-p256", zones: tuple[str, ...] | None = None) -> Chain:
    """A chain per CA key kind (and name constraints), built once."""
    return build_chain(kind, zones=zones)


@pytest.fixture
def policy() -> IssuancePolicy:
    return IssuancePolicy(permitted_zones=(ZONE,))


def openssl_verify(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", *map(str, args)], capture_output=True, text=True, timeout=30
    )


def serverauth_findings(der: bytes, certificate_type: str | None = None) -> list[tuple[str, str]]:
    """pkilint's CA/B Forum TLS lint of one certificate: (severity, code) at ERROR or worse.

    ``certificate_type`` is a ``CertificateType`` option string such as
    "DV-FINAL-CERTIFICATE"; None lets pkilint detect it, as ``lint -d`` does.
    """
    from pkilint import finding_filter, loader
    from pkilint.cabf import serverauth
    from pkilint.cabf.serverauth.serverauth_constants import CertificateType
    from pkilint.pkix import certificate
    from pkilint.validation import ValidationFindingSeverity

    doc = loader.load_der_certificate(der, "certificate")
    kind = (
        CertificateType.from_option_str(certificate_type)
        if certificate_type
        else serverauth.determine_certificate_type(doc)
    )
    validator = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind)
    )
    results, _ = finding_filter.filter_results(
        serverauth.create_serverauth_finding_filters(kind), validator.validate(doc.root)
    )
    return [
        (f.finding.severity.name, f.finding.code)
        for result in results
        for f in result.finding_descriptions
        if f.finding.severity <= ValidationFindingSeverity.ERROR
    ]


def crl_findings(der: bytes) -> list[tuple[str, str]]:
    """pkilint's RFC 5280 + CA/B Forum CRL lint (``lint_crl -t CRL -p BR``), ERROR or worse."""
    from pkilint import loader, pkix
    from pkilint.cabf import cabf_crl
    from pkilint.pkix import crl, extension, name
    from pkilint.validation import ValidationFindingSeverity

    kind = crl.CertificateRevocationListType.CRL
    validator = crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container(
                [cabf_crl.create_validity_period_validator(kind)]
            ),
            crl.create_extensions_validator_container([]),
            cabf_crl.CabfCrlReasonCodeAllowlistValidator(kind),
        ],
    )
    doc = loader.load_der_crl(der, "crl")
    return [
        (f.finding.severity.name, f.finding.code)
        for result in validator.validate(doc.root)
        for f in result.finding_descriptions
        if f.finding.severity <= ValidationFindingSeverity.ERROR
    ]


class Kit:
    """What the tests share, as one fixture (importlib mode cannot import conftest)."""

    ZONE = ZONE
    CRL_URL = CRL_URL
    key = staticmethod(make_key)
    generate = staticmethod(_generate)
    chain = staticmethod(chain_of)
    csr = staticmethod(make_csr)
    dns_csr = staticmethod(dns_csr)
    sign = staticmethod(sign_and_assemble)
    pem = staticmethod(pem)
    openssl_verify = staticmethod(openssl_verify)
    serverauth_findings = staticmethod(serverauth_findings)
    crl_findings = staticmethod(crl_findings)


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit
