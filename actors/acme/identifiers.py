"""What an ACME order may name: newOrder identifiers, CSR names, ARI certificate ids.

Theory of operation:

- ``check_identifiers`` checks newOrder's ``identifiers`` (RFC 8555 §7.4, RFC 8738 for
  "ip"). A "dns" value is an ASCII name, lower-cased, with no trailing dot, whose labels
  are LDH and, when they start "xn--", valid IDNA2008 A-labels (the ``idna`` library);
  a U-label is refused with its A-label in the detail. It must be one of the permitted
  zones or under one. "*." may lead a name, as its whole leftmost label, only when
  wildcards are allowed. An "ip" value is an IPv6 address in RFC 5952 canonical text
  (TrustChain serves IPv6 only: IPv4 is ``rejectedIdentifier``). Other types are
  ``unsupportedIdentifier``. Every identifier is checked; the refused ones come back as
  ``subproblems`` of one problem (§6.7.1), so a client sees all of them at once.
- ``csr_identifiers`` reads the names a finalize CSR asks for (§7.4): its SAN dNSNames
  and iPAddresses and its subject CN, which must be one of them.
- ``cert_id`` / ``parse_cert_id``: the ACME Renewal Information certificate identifier
  (RFC 9773 §4.1), base64url(AKI keyIdentifier) "." base64url(serial's DER octets).

Invariant: every list returned is normalised, de-duplicated and sorted, so an order's
identifiers and its CSR's compare with ``==``.

What it does not do: CAA, rate limits, or deciding that a CSR matches its order (the
caller compares the two lists); checking that a name exists.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Any

import idna
from cryptography import x509
from cryptography.x509.oid import NameOID

from trustchain.actors.acme.jws import b64url_decode, b64url_encode
from trustchain.actors.acme.problems import AcmeProblem, subproblem

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAX_NAME_LENGTH = 253  # RFC 1035 §2.3.4, in text form without the trailing dot


# --- newOrder ----------------------------------------------------------------------------


def _refuse(type_: str, detail: str) -> AcmeProblem:
    return AcmeProblem(type_, detail)


def _check_a_label(label: str, name: str) -> None:
    try:
        ulabel = idna.ulabel(label)
        ok = idna.alabel(ulabel).decode("ascii") == label
    except (idna.IDNAError, UnicodeError):
        ok = False
    if not ok:
        raise _refuse("rejectedIdentifier", f"{name}: {label!r} is not a valid IDNA2008 A-label")


def _check_dns(value: str, zones: Sequence[str], allow_wildcards: bool) -> str:
    if not value.isascii():
        try:
            hint = f"; send the A-label {idna.encode(value, uts46=True).decode('ascii')!r}"
        except (idna.IDNAError, UnicodeError):
            hint = "; it is not a valid IDNA2008 name either"
        raise _refuse("rejectedIdentifier", f"{value!r} is a U-label (Unicode) name{hint}")
    name = value.lower()
    if name.endswith("."):
        raise _refuse("rejectedIdentifier", f"{value!r}: send the name without a trailing dot")
    base, wildcard = name, False
    if name.startswith("*."):
        if not allow_wildcards:
            raise _refuse("rejectedIdentifier", f"{value!r}: this CA issues no wildcards")
        base, wildcard = name[2:], True
    if not base or len(name) > MAX_NAME_LENGTH:
        raise _refuse("rejectedIdentifier", f"{value!r}: not a DNS name of 1 to 253 characters")
    for label in base.split("."):
        if "*" in label:
            raise _refuse(
                "rejectedIdentifier", f"{value!r}: '*' may only be the whole leftmost label"
            )
        if not _LDH_LABEL.fullmatch(label):
            raise _refuse(
                "rejectedIdentifier",
                f"{value!r}: label {label!r} is not 1-63 letters, digits and inner hyphens",
            )
        if label[2:4] == "--":
            if not label.startswith("xn--"):
                raise _refuse(
                    "rejectedIdentifier", f"{value!r}: label {label!r} uses a reserved '??--' form"
                )
            _check_a_label(label, value)
    if not any(base == zone or base.endswith("." + zone) for zone in zones):
        raise _refuse(
            "rejectedIdentifier",
            f"{value!r} is outside the zones this CA issues for ({', '.join(zones)})",
        )
    return "*." + base if wildcard else base


def _check_ip(value: str, allow_ipv6: bool) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise _refuse("malformed", f"{value!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv4Address) or address.ipv4_mapped is not None:
        raise _refuse("rejectedIdentifier", f"{value}: TrustChain issues IPv6 addresses only")
    if not allow_ipv6:
        raise _refuse("rejectedIdentifier", f"{value}: this CA issues no IP address certificates")
    if address.scope_id is not None:
        raise _refuse("malformed", f"{value!r}: an address with a zone index cannot be certified")
    if address.is_unspecified or address.is_multicast:
        raise _refuse("rejectedIdentifier", f"{value}: not a unicast address")
    canonical = address.compressed
    if canonical != value:
        raise _refuse(
            "malformed", f"{value!r} is not in RFC 5952 canonical form; send {canonical!r}"
        )
    return canonical


def _check_one(
    identifier: dict[str, Any], zones: Sequence[str], allow_wildcards: bool, allow_ipv6: bool
) -> tuple[str, str]:
    type_, value = identifier["type"], identifier["value"]
    if type_ == "dns":
        return ("dns", _check_dns(value, zones, allow_wildcards))
    if type_ == "ip":
        return ("ip", _check_ip(value, allow_ipv6))
    raise _refuse("unsupportedIdentifier", f"identifier type {type_!r}; use 'dns' or 'ip'")


def check_identifiers(
    identifiers: Any,
    zones: Sequence[str],
    *,
    allow_wildcards: bool,
    allow_ipv6: bool,
    max_identifiers: int,
) -> list[tuple[str, str]]:
    """newOrder's identifiers, checked and normalised: sorted, de-duplicated (type, value)."""
    if not isinstance(identifiers, list) or not identifiers:
        raise AcmeProblem("malformed", "'identifiers' must be a non-empty list")
    if len(identifiers) > max_identifiers:
        raise AcmeProblem(
            "rejectedIdentifier",
            f"{len(identifiers)} identifiers; an order may have at most {max_identifiers}",
        )
    for identifier in identifiers:
        if not (
            isinstance(identifier, dict)
            and isinstance(identifier.get("type"), str)
            and isinstance(identifier.get("value"), str)
        ):
            raise AcmeProblem(
                "malformed", f'each identifier is {{"type": ..., "value": ...}}, not {identifier!r}'
            )
    normal_zones = [zone.lower().rstrip(".") for zone in zones]
    checked: set[tuple[str, str]] = set()
    refused: list[tuple[AcmeProblem, dict[str, Any]]] = []
    for identifier in identifiers:
        try:
            checked.add(_check_one(identifier, normal_zones, allow_wildcards, allow_ipv6))
        except AcmeProblem as problem:
            refused.append((problem, identifier))
    if refused:
        subproblems = [
            subproblem(p.type, p.detail, {"type": i["type"], "value": i["value"]})
            for p, i in refused
        ]
        types = {p.type for p, _ in refused}
        if len(refused) == 1:
            only = refused[0][0]
            raise AcmeProblem(only.type, only.detail, subproblems=subproblems)
        raise AcmeProblem(
            types.pop() if len(types) == 1 else "compound",
            f"{len(refused)} of the {len(identifiers)} identifiers are refused: "
            + "; ".join(p.detail for p, _ in refused),
            subproblems=subproblems,
        )
    return sorted(checked)


# --- finalize's CSR ----------------------------------------------------------------------


def _ip_identifier(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, str]:
    if isinstance(address, ipaddress.IPv4Address) or address.ipv4_mapped is not None:
        raise AcmeProblem("badCSR", f"the CSR asks for {address}: IPv6 addresses only")
    return ("ip", address.compressed)


def csr_identifiers(
    csr_der: bytes,
) -> tuple[x509.CertificateSigningRequest, list[tuple[str, str]]]:
    """The CSR (DER, self-signature checked) and the sorted names it asks for."""
    try:
        csr = x509.load_der_x509_csr(csr_der)
        signed = csr.is_signature_valid
    except Exception:  # cryptography raises ValueError and others for bad DER/algorithms
        raise AcmeProblem("badCSR", "the CSR is not a DER PKCS#10 request one can parse") from None
    if not signed:
        raise AcmeProblem("badCSR", "the CSR's self-signature does not verify")
    names: set[tuple[str, str]] = set()
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    except Exception:
        raise AcmeProblem("badCSR", "the CSR's extensions cannot be parsed") from None
    for general_name in san:
        if isinstance(general_name, x509.DNSName):
            names.add(("dns", general_name.value.lower()))
        elif isinstance(general_name, x509.IPAddress):
            if not isinstance(general_name.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
                raise AcmeProblem("badCSR", "the CSR's iPAddress SAN is a network, not an address")
            names.add(_ip_identifier(general_name.value))
        else:
            raise AcmeProblem(
                "badCSR",
                f"the CSR asks for a {type(general_name).__name__}: dNSName and iPAddress only",
            )
    try:
        common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except Exception:  # a subject cryptography cannot decode
        raise AcmeProblem("badCSR", "the CSR's subject cannot be parsed") from None
    if len(common_names) > 1:
        raise AcmeProblem("badCSR", "the CSR's subject has more than one CN")
    if common_names:
        cn = common_names[0].value
        cn = cn.decode("utf-8", "replace") if isinstance(cn, bytes) else cn
        try:
            cn_name = _ip_identifier(ipaddress.ip_address(cn))
        except ValueError:
            cn_name = ("dns", cn.lower())
        if cn_name not in names:
            raise AcmeProblem("badCSR", f"the CSR's CN {cn!r} is not one of its SANs")
    if not names:
        raise AcmeProblem("badCSR", "the CSR asks for no names (no SAN dNSName or iPAddress)")
    return csr, sorted(names)


# --- ACME Renewal Information (RFC 9773 §4.1) --------------------------------------------


def _integer_octets(n: int) -> bytes:
    """The content octets of n's DER INTEGER: minimal two's complement, big-endian."""
    magnitude = n if n >= 0 else -n - 1
    return n.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


def cert_id(certificate: x509.Certificate) -> str:
    """The ARI certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial)."""
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise ValueError("the certificate has no authority key identifier") from None
    if aki.key_identifier is None:
        raise ValueError("the certificate's authority key identifier has no keyIdentifier")
    serial = _integer_octets(certificate.serial_number)
    return f"{b64url_encode(aki.key_identifier)}.{b64url_encode(serial)}"


def parse_cert_id(text: str) -> tuple[bytes, int]:
    """(AKI keyIdentifier, serial number) of an ARI certificate identifier; malformed
    unless both halves are non-empty canonical base64url and the serial is a minimal,
    positive DER INTEGER."""
    parts = text.split(".") if isinstance(text, str) else []
    if len(parts) != 2 or not all(parts):
        raise AcmeProblem(
            "malformed", "a certificate id is base64url(keyIdentifier) '.' base64url(serial)"
        )
    key_identifier = b64url_decode(parts[0], "the certificate id's keyIdentifier")
    octets = b64url_decode(parts[1], "the certificate id's serial")
    serial = int.from_bytes(octets, "big", signed=True)
    if _integer_octets(serial) != octets:
        raise AcmeProblem("malformed", "the certificate id's serial is not minimal DER octets")
    if serial <= 0:
        raise AcmeProblem("malformed", "the certificate id's serial must be positive")
    return key_identifier, serial
