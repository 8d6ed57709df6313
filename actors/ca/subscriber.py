"""A subscriber's side of issuance: a private key of a named type, and a CSR for names.

One place makes keys and CSRs for everyone who asks the CA for a certificate
locally: ``trustchain issue`` (protocols/cli_ca.py), the renewal of TrustChain's
own certificates (actors/renewal/bundle.py), the benchmarks and the tests.

* ``new_key(key_type)`` makes a key of one of config's ``SUBSCRIBER_KEY_TYPES``
  ("ec-p256", "rsa-3072", "ed25519", ...), the names ``key_type_of`` gives back.
* ``new_csr(key, names)`` makes a PEM CSR (RFC 2986) with an empty subject and the
  names as a subjectAltName (RFC 5280 §4.2.1.6): a string that parses as an IP
  address becomes an iPAddress, any other string a dNSName, and a
  ``GeneralName`` goes in as it is. The CA takes nothing else from a CSR.
  Signed with SHA-384 for P-384 keys, SHA-256 for other EC and RSA keys, and
  Ed25519 (which hashes itself) for Ed25519 keys.

Nothing here checks the names: the CA's policy does (``check_request``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

SubscriberKey: TypeAlias = (
    ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
)


def _rsa(bits: int) -> Callable[[], SubscriberKey]:
    return lambda: rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _ec(curve: type[ec.EllipticCurve]) -> Callable[[], SubscriberKey]:
    return lambda: ec.generate_private_key(curve())


# Keyed by config's SUBSCRIBER_KEY_TYPES (tests/ca/test_key_types.py checks they agree).
_KEY_MAKERS: dict[str, Callable[[], SubscriberKey]] = {
    "ec-p256": _ec(ec.SECP256R1),
    "ec-p384": _ec(ec.SECP384R1),
    "rsa-2048": _rsa(2048),
    "rsa-3072": _rsa(3072),
    "rsa-4096": _rsa(4096),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


def new_key(key_type: str) -> SubscriberKey:
    """A fresh private key of ``key_type``; ValueError for a type TrustChain does not know."""
    try:
        make = _KEY_MAKERS[key_type]
    except KeyError:
        known = ", ".join(_KEY_MAKERS)
        raise ValueError(f"key type {key_type!r} is not supported; use one of {known}") from None
    return make()


def _general_name(name: str | x509.GeneralName) -> x509.GeneralName:
    if isinstance(name, x509.GeneralName):
        return name
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def new_csr(
    key: SubscriberKey,
    names: Sequence[str | x509.GeneralName] | None,
    *,
    common_name: str | None = None,
) -> bytes:
    """A PEM CSR for ``names`` (no subjectAltName when None), signed by ``key``."""
    subject = [x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if names is not None:
        san = x509.SubjectAlternativeName([_general_name(n) for n in names])
        builder = builder.add_extension(san, critical=False)
    algorithm: hashes.SHA256 | hashes.SHA384 | None = hashes.SHA256()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = None
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        algorithm = hashes.SHA384()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)
