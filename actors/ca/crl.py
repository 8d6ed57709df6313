"""Certificate revocation lists for an issuing CA (RFC 5280 §5).

A CRL here is a complete (not delta, not partitioned) v2 CRL: issuer, a
thisUpdate of ``now``, a nextUpdate at most 10 days later (CA/B BRs §4.9.7),
the AKI of the issuing CA (§5.2.1), a monotonic CRL number (§5.2.3, kept by the
store) and one entry per revoked serial with its revocation date and, unless
the reason is "unspecified", a reasonCode (§5.3.1; BRs §7.2.2 forbid the
unspecified code and allow only the reasons in ``REASONS``).

Two ways to sign, both sans-IO for the key:

* ``build_crl(..., sign=...)`` hands cryptography's builder a
  ``remote_signing_key`` whose ``sign`` calls the given ``Signer`` (blocking).
* ``crl_tbs`` + ``assemble_crl`` split it like certificates: cryptography has no
  unsigned CRL, so the TBSCertList is taken from a CRL signed with a throwaway
  P-256 key and its AlgorithmIdentifier is swapped for the issuer's (a TBS
  holds no key material, only the algorithm).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors import der

from .certs import ToBeSigned, ca_public_key
from .errors import SignatureInvalid, UnknownRevocationReason
from .keys import (
    CAPublicKey,
    SignatureAlgorithm,
    Signer,
    remote_signing_key,
    signature_algorithm_for,
    verify_signature,
)

DEFAULT_CRL_VALIDITY = timedelta(days=7)
MAX_CRL_VALIDITY = timedelta(days=10)
MAX_CRL_NUMBER = (1 << 159) - 1  # at most 20 octets (§5.2.3)

REASONS: dict[str, x509.ReasonFlags | None] = {
    "unspecified": None,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
}
_RFC_NAMES = {flag.value.lower(): name for name, flag in REASONS.items() if flag is not None}


def parse_reason(text: str) -> str:
    """The canonical reason name ("key_compromise") for snake, kebab or RFC spelling."""
    key = str(text).strip().lower().replace("-", "_")
    if key in REASONS:
        return key
    if key in _RFC_NAMES:
        return _RFC_NAMES[key]
    raise UnknownRevocationReason(
        f"revocation reason {text!r} is not accepted; use one of {sorted(REASONS)}",
        reason=str(text),
    )


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: str = "unspecified"


def _builder(
    issuer_cert: x509.Certificate,
    entries: Iterable[RevokedEntry],
    crl_number: int,
    now: datetime,
    validity: timedelta,
) -> x509.CertificateRevocationListBuilder:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not timedelta(0) < validity <= MAX_CRL_VALIDITY:
        raise ValueError(f"a CRL's validity must be positive and at most {MAX_CRL_VALIDITY}")
    if not 0 <= crl_number <= MAX_CRL_NUMBER:
        raise ValueError("a CRL number is a non-negative integer of at most 20 octets")
    this_update = now.astimezone(UTC).replace(microsecond=0)
    ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(this_update)
        .next_update(this_update + validity)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for entry in sorted(entries, key=lambda e: e.serial):
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at.astimezone(UTC).replace(microsecond=0))
        )
        flag = REASONS[parse_reason(entry.reason)]
        if flag is not None:
            revoked = revoked.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder


def _tbs_from_throwaway_key(builder: x509.CertificateRevocationListBuilder) -> bytes:
    throwaway = ec.generate_private_key(ec.SECP256R1())
    return builder.sign(throwaway, SignatureAlgorithm.ECDSA_SHA256.hash).tbs_certlist_bytes


def crl_tbs(
    *,
    issuer_cert: x509.Certificate,
    entries: Iterable[RevokedEntry],
    crl_number: int,
    now: datetime,
    validity: timedelta = DEFAULT_CRL_VALIDITY,
) -> ToBeSigned:
    """The TBSCertList to sign with the issuing CA's key; finish with ``assemble_crl``."""
    algorithm = signature_algorithm_for(ca_public_key(issuer_cert))
    builder = _builder(issuer_cert, entries, crl_number, now, validity)
    placeholder = SignatureAlgorithm.ECDSA_SHA256.algorithm_identifier
    tbs = der.replace_signature_algorithm(
        _tbs_from_throwaway_key(builder), placeholder, algorithm.algorithm_identifier
    )
    return ToBeSigned(tbs, algorithm)


def assemble_crl(
    tbs: bytes,
    sig_alg: SignatureAlgorithm,
    signature: bytes,
    *,
    issuer_public_key: CAPublicKey | None = None,
) -> x509.CertificateRevocationList:
    """The signed CRL; with ``issuer_public_key``, checked before it is returned."""
    if issuer_public_key is not None and not verify_signature(
        issuer_public_key, sig_alg, signature, tbs
    ):
        raise SignatureInvalid("the signature over the CRL does not verify with the issuer's key")
    return x509.load_der_x509_crl(der.signed(tbs, sig_alg.algorithm_identifier, signature))


def build_crl(
    *,
    issuer_cert: x509.Certificate,
    entries: Iterable[RevokedEntry],
    crl_number: int,
    now: datetime,
    sign: Signer,
    validity: timedelta = DEFAULT_CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    """A signed CRL, ``sign`` called once (synchronously) through a remote key."""
    public_key = ca_public_key(issuer_cert)
    algorithm = signature_algorithm_for(public_key)
    builder = _builder(issuer_cert, entries, crl_number, now, validity)
    crl = builder.sign(remote_signing_key(public_key, sign), algorithm.hash)
    if not crl.is_signature_valid(public_key):
        raise SignatureInvalid("the signature over the CRL does not verify with the issuer's key")
    return crl
