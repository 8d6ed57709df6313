"""Issuance policy: turn an untrusted PKCS#10 request into an approved one.

Implements the checks of DESIGN "Issuance" step 1:

* ``parse_csr``: PEM or DER PKCS#10 (RFC 2986 §4), size-capped before parsing,
  and proof of possession (the request's self-signature, RFC 2986 §3 step 3).
* ``check_request``: key type and size (CA/B BRs §6.1.5-6.1.6), the names
  (RFC 5280 §4.2.1.6 subjectAltName; the subject CN only when there is no SAN
  extension), zones and wildcards (BRs §3.2.2.6), IPv6-only IP SANs, the
  validity (BRs §6.3.2; short-lived by default). A validity asked for in
  seconds (``check_validity_seconds``) is compared as a number before any
  ``timedelta`` is built, so no requested value can overflow one.

Nothing else is taken from the CSR: its subject, attributes and requested
extensions are ignored, and the certificate is built from ``ApprovedRequest``
alone, so a CSR cannot ask for CA:TRUE or extra EKUs. Every refusal is a
``PolicyViolation`` subclass whose ``rule`` names the field that refused it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from trustchain.config import SUBSCRIBER_KEY_TYPES, ConfigError

from .errors import (
    BadCSRSignature,
    CSRTooLarge,
    DuplicateName,
    InvalidName,
    KeyNotAllowed,
    MalformedCSR,
    NameNotPermitted,
    NoNames,
    TooManyNames,
    ValidityOutOfBounds,
)
from .keys import key_type_of
from .names import is_wildcard, normalize_dns_name, zone_of

CSR: TypeAlias = x509.CertificateSigningRequest
SubjectPublicKey: TypeAlias = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
)
SubjectMode = Literal["empty", "cn_from_first_san"]

DEFAULT_MAX_CSR_BYTES = 64 * 1024
DEFAULT_KEY_TYPES = frozenset(SUBSCRIBER_KEY_TYPES)
MAX_COMMON_NAME_LENGTH = 64  # ub-common-name, RFC 5280 Appendix A.1
_MIN_RSA_EXPONENT = 65537  # BRs §6.1.6: odd, and SHOULD be at least 2^16 + 1
_ANY_IPV6 = ipaddress.IPv6Network("::/0")


@dataclass(frozen=True)
class IssuancePolicy:
    """What the CA agrees to sign. Invalid settings raise ``ConfigError``."""

    permitted_zones: tuple[str, ...]
    allow_wildcards: bool = False
    allow_ipv6_sans: bool = False
    permitted_ipv6_networks: tuple[ipaddress.IPv6Network, ...] = (_ANY_IPV6,)
    allowed_key_types: frozenset[str] = DEFAULT_KEY_TYPES
    min_validity: timedelta = timedelta(minutes=5)
    max_validity: timedelta = timedelta(hours=24)
    default_validity: timedelta = timedelta(hours=24)
    max_csr_bytes: int = DEFAULT_MAX_CSR_BYTES
    max_sans: int = 100
    subject_mode: SubjectMode = "empty"

    def __post_init__(self) -> None:
        try:
            zones = tuple(normalize_dns_name(z) for z in self.permitted_zones)
        except InvalidName as error:
            raise ConfigError(f"permitted_zones: {error.message}") from None
        if not zones or any(is_wildcard(z) for z in zones):
            raise ConfigError("permitted_zones: give at least one zone, without wildcards")
        try:
            networks = tuple(ipaddress.IPv6Network(n) for n in self.permitted_ipv6_networks)
        except ValueError as error:
            raise ConfigError(f"permitted_ipv6_networks: {error}") from None
        unknown = sorted(k for k in self.allowed_key_types if k not in SUBSCRIBER_KEY_TYPES)
        if unknown:
            raise ConfigError(f"allowed_key_types: unknown key types {unknown}")
        if not timedelta(0) < self.min_validity <= self.default_validity <= self.max_validity:
            raise ConfigError("validity: need 0 < min_validity <= default_validity <= max_validity")
        if self.max_csr_bytes <= 0 or self.max_sans <= 0:
            raise ConfigError("max_csr_bytes and max_sans must be positive")
        if self.subject_mode not in ("empty", "cn_from_first_san"):
            raise ConfigError("subject_mode: must be 'empty' or 'cn_from_first_san'")
        object.__setattr__(self, "permitted_zones", zones)
        object.__setattr__(self, "permitted_ipv6_networks", networks)
        object.__setattr__(self, "allowed_key_types", frozenset(self.allowed_key_types))


@dataclass(frozen=True)
class ApprovedRequest:
    """A request that passed policy: everything the leaf certificate is built from."""

    public_key: SubjectPublicKey
    key_type: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[ipaddress.IPv6Address, ...]
    validity: timedelta
    client_auth: bool = False
    subject_common_name: str | None = None
    names: tuple[str, ...] = ()  # every name as text, in request order

    @property
    def san_names(self) -> tuple[str, ...]:
        """Every name as text in the certificate's SAN order: DNS names, then IPs."""
        return (*self.dns_names, *map(str, self.ip_addresses))


def parse_csr(data: bytes | str, max_bytes: int = DEFAULT_MAX_CSR_BYTES) -> CSR:
    """A PKCS#10 request from PEM or DER, parsed; ``check_request`` verifies its
    self-signature (proof of possession) with the other rules, once."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise CSRTooLarge(
            "max_csr_bytes", f"the CSR is {len(raw)} bytes, more than {max_bytes}", size=len(raw)
        )
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(raw)
        else:
            csr = x509.load_der_x509_csr(raw)
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as error:
        raise MalformedCSR(
            "pkcs10", f"not a PEM or DER PKCS#10 certificate request ({error})"
        ) from None
    return csr


def _check_proof_of_possession(csr: CSR) -> None:
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as error:
        raise BadCSRSignature(
            "proof_of_possession", f"the CSR's signature cannot be checked ({error})"
        ) from None
    if not valid:
        raise BadCSRSignature(
            "proof_of_possession",
            "the CSR's signature does not verify with its own key; sign it with that key",
        )


def _check_key(csr: CSR, policy: IssuancePolicy) -> tuple[SubjectPublicKey, str]:
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise KeyNotAllowed("allowed_key_types", "the CSR's key type is not supported") from None
    kind = key_type_of(key)
    allowed = sorted(policy.allowed_key_types)
    if kind not in policy.allowed_key_types:
        raise KeyNotAllowed(
            "allowed_key_types", f"{kind} keys are not allowed; use one of {allowed}"
        )
    if isinstance(key, rsa.RSAPublicKey):
        exponent = key.public_numbers().e
        if exponent % 2 == 0 or exponent < _MIN_RSA_EXPONENT:
            raise KeyNotAllowed(
                "rsa_exponent", f"RSA public exponent {exponent} must be odd and >= 65537"
            )
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise KeyNotAllowed("allowed_key_types", f"{kind} keys are not allowed")
    return key, kind


def _requested_names(csr: CSR) -> list[object]:
    """SAN entries (GeneralName objects), else the subject CN strings."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        entries: list[object] = list(san)
    except x509.ExtensionNotFound:
        entries = []
    except x509.UnsupportedGeneralNameType as error:
        raise NameNotPermitted("san_types", f"{error}; use DNS names or IP addresses") from None
    except (ValueError, x509.DuplicateExtension) as error:  # duplicate or undecodable
        raise MalformedCSR("pkcs10", f"the CSR's extensions cannot be read ({error})") from None
    if entries:
        return entries
    try:
        return [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    # The subject is decoded lazily; cryptography raises TypeError for a BIT STRING
    # value under any OID but x500UniqueIdentifier (found by tests/ca/test_policy.py).
    except (ValueError, TypeError) as error:
        raise MalformedCSR("pkcs10", f"the CSR's subject cannot be read ({error})") from None


def _check_ip(address: object, policy: IssuancePolicy) -> ipaddress.IPv6Address:
    if not isinstance(address, ipaddress.IPv6Address) or address.ipv4_mapped is not None:
        raise NameNotPermitted("ipv6_only", f"IPv4 address {address} is never certified")
    if not policy.allow_ipv6_sans:
        raise NameNotPermitted("allow_ipv6_sans", f"IP address {address} is not allowed")
    if address.is_multicast or address.is_unspecified or address.is_link_local:
        raise NameNotPermitted("ipv6_unicast", f"{address} is not a routable unicast address")
    if not any(address in net for net in policy.permitted_ipv6_networks):
        raise NameNotPermitted(
            "permitted_ipv6_networks", f"{address} is outside the permitted networks"
        )
    return address


def _check_dns(text: str, policy: IssuancePolicy) -> str:
    name = normalize_dns_name(text)
    if is_wildcard(name) and not policy.allow_wildcards:
        raise NameNotPermitted("allow_wildcards", f"wildcard {name} is not allowed", name=name)
    if zone_of(name, policy.permitted_zones) is None:
        raise NameNotPermitted(
            "permitted_zones",
            f"{name} is not inside a permitted zone {list(policy.permitted_zones)}",
            name=name,
        )
    return name


def check_names(
    entries: Iterable[object], policy: IssuancePolicy
) -> tuple[tuple[str, ...], tuple[ipaddress.IPv6Address, ...], tuple[str, ...]]:
    """(dns names, ip addresses, all names as text in order) or a PolicyViolation.

    ``entries`` are SAN ``GeneralName``s or plain strings (a CN: an IP literal or
    a DNS name).
    """
    entries = list(entries)
    if not entries:
        raise NoNames("names", "the CSR has no subjectAltName and no subject CN")
    if len(entries) > policy.max_sans:
        raise TooManyNames("max_sans", f"{len(entries)} names, more than {policy.max_sans}")
    dns: list[str] = []
    ips: list[ipaddress.IPv6Address] = []
    ordered: list[str] = []
    for entry in entries:
        if isinstance(entry, x509.DNSName):
            text = _check_dns(entry.value, policy)
            dns.append(text)
        elif isinstance(entry, x509.IPAddress):
            ip = _check_ip(entry.value, policy)
            ips.append(ip)
            text = str(ip)
        elif isinstance(entry, str):
            try:
                ip = _check_ip(ipaddress.ip_address(entry), policy)
            except ValueError:
                text = _check_dns(entry, policy)
                dns.append(text)
            else:
                ips.append(ip)
                text = str(ip)
        else:
            kind = type(entry).__name__
            raise NameNotPermitted("san_types", f"{kind} names are not certified; use DNS or IP")
        if text in ordered:
            raise DuplicateName("unique_names", f"{text} is asked for twice", name=text)
        ordered.append(text)
    return tuple(dns), tuple(ips), tuple(ordered)


def check_validity(requested: timedelta | None, policy: IssuancePolicy) -> timedelta:
    validity = policy.default_validity if requested is None else requested
    if not policy.min_validity <= validity <= policy.max_validity:
        raise ValidityOutOfBounds(
            "validity",
            f"{validity} is outside [{policy.min_validity}, {policy.max_validity}]",
        )
    return validity


def check_validity_seconds(seconds: int | None, policy: IssuancePolicy) -> timedelta:
    """``check_validity`` for a count of seconds from a client, compared first as a number."""
    if seconds is None:
        return check_validity(None, policy)
    low = int(policy.min_validity.total_seconds())
    high = int(policy.max_validity.total_seconds())
    if not low <= seconds <= high:
        # str() of an int past 4,300 digits raises: describe a huge one instead
        shown = str(seconds) if seconds.bit_length() <= 256 else "a huge number"
        raise ValidityOutOfBounds(
            "validity", f"validity_s must be {low} to {high} seconds, not {shown}"
        )
    return check_validity(timedelta(seconds=seconds), policy)


def check_request(
    csr: CSR,
    policy: IssuancePolicy,
    requested_validity: timedelta | None = None,
    *,
    client_auth: bool = False,
) -> ApprovedRequest:
    """Apply every rule of ``policy`` to ``csr``; the first failure is raised."""
    _check_proof_of_possession(csr)
    key, kind = _check_key(csr, policy)
    dns, ips, ordered = check_names(_requested_names(csr), policy)
    validity = check_validity(requested_validity, policy)
    common_name = None
    if policy.subject_mode == "cn_from_first_san":
        common_name = next((n for n in ordered if len(n) <= MAX_COMMON_NAME_LENGTH), None)
    return ApprovedRequest(
        public_key=key,
        key_type=kind,
        dns_names=dns,
        ip_addresses=ips,
        validity=validity,
        client_auth=client_auth,
        subject_common_name=common_name,
        names=ordered,
    )
