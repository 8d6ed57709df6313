"""The ACME challenges a validator checks itself: http-01 (RFC 8555 §8.3), dns-01 (§8.4)
and tls-alpn-01 (RFC 8737), for DNS identifiers and IPv6 address identifiers (RFC 8738).

Theory of operation. The actor resolves the name first, through TrustChain's resolver
(``lookup_of`` says what to ask; ``resolution_of`` turns the answer into a
``Resolution``), and one of the validator's probe threads then runs ``check_challenge``
on that resolution, all of its network IO within the challenge's ``timeout_s`` (one
deadline for every address, redirect and read, enforced on each socket operation by
``wire.Wire``; TLS runs through memory BIOs so the handshake is bounded the same way).

* http-01: each address in the order resolved, until one meets the challenge or the
  time is spent: ``GET /.well-known/acme-challenge/<token>`` over HTTP/1.1 with ``Host:``
  the identifier (an address as ``[addr]``, the port unless 80). Status 200 and the body
  (at most ``MAX_BODY`` octets read), trailing whitespace stripped, equal to the key
  authorization. Up to ``MAX_REDIRECTS`` redirects are followed, to ``http`` or ``https``
  URLs on the same host only (the address being tried: a redirect to another host is
  refused, not resolved again, because resolving is the actor's part); an ``https`` hop
  is not verified against a trust store, as other ACME servers do.
* dns-01: some TXT value of ``_acme-challenge.<identifier>`` equals
  base64url(SHA-256(key authorization)) without padding. Not defined for ip
  identifiers (RFC 8738 §7): rejected.
* tls-alpn-01: TLS 1.2 or newer to ``[addr]:port``, SNI the identifier (for an address
  its ip6.arpa name, RFC 8738 §6), ALPN offering only ``acme-tls/1``, the certificate not
  verified; ``acme-tls/1`` must be negotiated and the certificate must carry exactly one
  subjectAltName, the identifier, and a critical id-pe-acmeIdentifier extension whose
  value is the DER OCTET STRING of SHA-256(key authorization).

Invariants. IPv6 only: sockets are AF_INET6 and IPv4-mapped addresses are refused, so an
A record or an IPv4 address is never reached. A check returns its reasons to reject (an
empty list: the challenge is met); each reason starts with the RFC 8555 error type it
stands for and ": " (``connection``, ``dns``, ``incorrectResponse``, ``tls``,
``unauthorized``, ``malformed``), which the ACME server turns into the problem it shows.
Reasons are short and name only what every honest validator sees alike (addresses,
ports, statuses, the configured timeout; no elapsed times, no peer-chosen text beyond a
TLS alert's name), so that f+1 of them match. One reason per address tried.

Not done here: resolution (the actor's, through the resolver), memory of votes
(``core.py``), retries (a failed challenge fails the authorization, RFC 8555 §7.5.1),
CAA (checked at issuance), IPv4.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from cryptography import x509

from trustchain.actors.validator.messages import CheckChallenge
from trustchain.actors.validator.wire import Deadline, Wire, unverified_context

ACME_TLS_1 = "acme-tls/1"  # RFC 8737 §6.2
ID_PE_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1
MAX_REDIRECTS = 10
MAX_BODY = 8_192  # octets of an http-01 body read (a key authorization is under 256)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "TrustChain-validator (RFC 8555)"


@dataclass(frozen=True)
class Resolution:
    """What a challenge's name resolved to, from the actor's resolver: the addresses
    (http-01, tls-alpn-01) or the TXT values (dns-01), or ``problem``, a ``dns: ...``
    reason when the name did not resolve (the challenge then fails with it)."""

    addresses: tuple[str, ...] = ()
    txt: tuple[str, ...] = ()
    problem: str = ""


# Values the applicant must present --------------------------------------------------------


def dns01_value(key_authorization: str) -> str:
    """The TXT value of dns-01 (RFC 8555 §8.4): base64url(SHA-256(key auth)), unpadded."""
    digest = hashlib.sha256(key_authorization.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def acme_identifier_value(key_authorization: str) -> bytes:
    """The id-pe-acmeIdentifier extension's value (RFC 8737 §3): the DER OCTET STRING of
    SHA-256(key authorization)."""
    return b"\x04\x20" + hashlib.sha256(key_authorization.encode()).digest()


def tls_alpn01_server_name(identifier_type: str, identifier: str) -> str:
    """The SNI of tls-alpn-01: the DNS name, or an address's reverse-mapping name
    (RFC 8738 §6), without the final dot."""
    if identifier_type == "ip":
        return ipaddress.ip_address(identifier).reverse_pointer
    return identifier


# Resolution (the actor asks, these read) --------------------------------------------------


def lookup_of(challenge: CheckChallenge) -> tuple[str, str] | None:
    """(name, rdtype) the resolver is asked for, or ``None`` when nothing is looked up:
    an ip identifier is its own address (and dns-01 has no name for it)."""
    if challenge.identifier_type == "ip":
        return None
    if challenge.kind == "dns-01":
        return f"_acme-challenge.{challenge.identifier}.", "TXT"
    return f"{challenge.identifier}.", "AAAA"  # IPv6 only: never A


def resolve_locally(challenge: CheckChallenge) -> Resolution:
    """The resolution of a challenge that needs no lookup (``lookup_of`` is ``None``)."""
    if challenge.identifier_type == "ip" and challenge.kind != "dns-01":
        return Resolution(addresses=(challenge.identifier,))
    return Resolution()


def resolution_of(challenge: CheckChallenge, answer: Mapping[str, Any]) -> Resolution:
    """The resolver's answer to ``Resolve(*lookup_of(challenge))`` (``{"rcode",
    "answer": [rr text], ...}``) as a ``Resolution``: NXDOMAIN, another failure or no
    record of the type asked is a ``dns:`` problem."""
    lookup = lookup_of(challenge)
    if lookup is None:
        return resolve_locally(challenge)
    name, rdtype = lookup
    shown = name.rstrip(".")
    rcode = str(answer.get("rcode", ""))
    if rcode == "NXDOMAIN":
        return Resolution(problem=f"dns: {shown} does not exist (NXDOMAIN)")
    if rcode != "NOERROR":
        return Resolution(problem=f"dns: looking up {rdtype} for {shown} failed ({rcode})")
    values: list[str] = []
    for line in answer.get("answer", ()):
        parts = str(line).split(None, 4)  # owner ttl class type rdata
        if len(parts) == 5 and parts[3].upper() == rdtype:
            value = _rdata_value(rdtype, parts[4])
            if value is not None and value not in values:
                values.append(value)
    if not values:
        return Resolution(problem=f"dns: {shown} has no {rdtype} records")
    if rdtype == "TXT":
        return Resolution(txt=tuple(values))
    return Resolution(addresses=tuple(values))


def _rdata_value(rdtype: str, text: str) -> str | None:
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)
    except (dns.exception.DNSException, ValueError):
        return None
    if rdtype == "TXT":
        return b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
    return ipaddress.IPv6Address(rdata.address).compressed  # type: ignore[attr-defined]


# The checks -----------------------------------------------------------------------------


def check_challenge(challenge: CheckChallenge, resolution: Resolution) -> list[str]:
    """The reasons ``challenge`` is not met from here (empty: it is), given what its
    name resolved to."""
    c = challenge
    if resolution.problem:
        return [resolution.problem]
    if c.kind == "dns-01":
        return check_dns01(resolution.txt, c.identifier_type, c.identifier, c.key_authorization)
    if c.kind == "http-01":
        return check_http01(resolution.addresses, c.identifier_type, c.identifier, c.token,
                            c.key_authorization, c.port, c.timeout_s)  # fmt: skip
    if c.kind == "tls-alpn-01":
        return check_tls_alpn01(resolution.addresses, c.identifier_type, c.identifier,
                                c.key_authorization, c.port, c.timeout_s)  # fmt: skip
    return [f"malformed: {c.kind!r} is not a challenge type validators check"]


def check_dns01(
    txt: Sequence[str], identifier_type: str, identifier: str, key_authorization: str
) -> list[str]:
    """dns-01 (RFC 8555 §8.4) on the TXT values of ``_acme-challenge.<identifier>``."""
    if identifier_type == "ip":
        return ["malformed: dns-01 cannot validate an ip identifier (RFC 8738 §7)"]
    name = f"_acme-challenge.{identifier}"
    if not txt:
        return [f"dns: {name} has no TXT records"]
    if dns01_value(key_authorization) in txt:
        return []
    return [f"unauthorized: no TXT record of {name} matches the key authorization"]


def check_http01(
    addresses: Sequence[str],
    identifier_type: str,
    identifier: str,
    token: str,
    key_authorization: str,
    port: int = 80,
    timeout_s: float = 5.0,
) -> list[str]:
    """http-01 (RFC 8555 §8.3) at each address in turn, within ``timeout_s`` in all."""
    deadline = Deadline(timeout_s)
    attempt = _Http01(identifier_type, identifier, token, key_authorization, deadline)
    return _each_address(addresses, identifier, port, deadline, attempt.at)


def check_tls_alpn01(
    addresses: Sequence[str],
    identifier_type: str,
    identifier: str,
    key_authorization: str,
    port: int = 443,
    timeout_s: float = 5.0,
) -> list[str]:
    """tls-alpn-01 (RFC 8737; RFC 8738 §6 for addresses) at each address in turn, within
    ``timeout_s`` in all."""
    deadline = Deadline(timeout_s)

    def at(address: str, port: int) -> str | None:
        return _tls_alpn01_at(address, port, identifier_type, identifier, key_authorization,
                              deadline)  # fmt: skip

    return _each_address(addresses, identifier, port, deadline, at)


def _each_address(addresses: Sequence[str], identifier: str, port: int, deadline: Deadline,
                  attempt: Callable[[str, int], str | None]) -> list[str]:  # fmt: skip
    if not addresses:
        return [f"dns: {identifier} has no AAAA records"]
    reasons: list[str] = []
    for address in addresses:
        refused = _not_ipv6(address)
        reason = refused if refused is not None else attempt(address, port)
        if reason is None:
            return []
        reasons.append(reason)
        if deadline.expired():
            break
    return reasons


def _not_ipv6(address: str) -> str | None:
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        return f"connection: {address} is not an IPv6 address (validators reach IPv6 only)"
    if parsed.ipv4_mapped is not None:
        return f"connection: {address} is IPv4-mapped (validators reach IPv6 only)"
    return None


def _where(address: str, port: int) -> str:
    return f"[{address}]:{port}"


def _network_reason(exc: BaseException, where: str, timeout_s: float) -> str:
    """The reason for a failure to connect, exchange or read (checked in this order:
    ``RemoteDisconnected`` is a ``ConnectionResetError``, ``SSLError`` an ``OSError``)."""
    if isinstance(exc, TimeoutError):
        return f"connection: {where} did not answer within {timeout_s:g} s"
    if isinstance(exc, http.client.RemoteDisconnected):
        return f"connection: {where} closed the connection without answering"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection: {where} refused the connection"
    if isinstance(exc, ConnectionResetError):
        return f"connection: {where} reset the connection"
    if isinstance(exc, ssl.SSLError):
        return f"tls: handshake with {where} failed: {exc.reason or type(exc).__name__}"
    if isinstance(exc, http.client.HTTPException | ValueError):  # what the peer sent
        return f"incorrectResponse: {where} did not answer valid HTTP ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return f"connection: {where} unreachable: {exc.strerror or type(exc).__name__}"
    raise exc


# http-01 ---------------------------------------------------------------------------------


class _Http01:
    def __init__(self, identifier_type: str, identifier: str, token: str,
                 key_authorization: str, deadline: Deadline) -> None:  # fmt: skip
        self.identifier_type = identifier_type
        self.identifier = identifier
        self.token = token
        self.expected = key_authorization.encode()
        self.deadline = deadline

    def host(self, scheme: str, port: int) -> str:
        name = f"[{self.identifier}]" if self.identifier_type == "ip" else self.identifier
        default = 443 if scheme == "https" else 80
        return name if port == default else f"{name}:{port}"

    def same_host(self, host: str | None) -> bool:
        if host is None:
            return False
        if self.identifier_type == "ip":
            try:
                return ipaddress.ip_address(host) == ipaddress.ip_address(self.identifier)
            except ValueError:
                return False
        return host.lower().rstrip(".") == self.identifier.lower()

    def at(self, address: str, port: int) -> str | None:
        """None when ``address`` serves the key authorization, else the reason."""
        scheme, path = "http", f"/.well-known/acme-challenge/{self.token}"
        first = _where(address, port)
        for hop in range(MAX_REDIRECTS + 1):
            where = _where(address, port)
            url = f"{scheme}://{self.host(scheme, port)}{path}"
            try:
                status, location, body = self.fetch(address, port, scheme, path)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                return _network_reason(exc, where, self.deadline.timeout_s)
            if status in REDIRECT_STATUSES and location:
                if hop == MAX_REDIRECTS:
                    return f"incorrectResponse: {first} redirected more than {MAX_REDIRECTS} times"
                target = self.redirect(url, location)
                if isinstance(target, str):
                    return f"incorrectResponse: {where} {target}"
                scheme, port, path = target
                continue
            if status != 200:
                return f"incorrectResponse: {where} answered {status} for {path}"
            if body.rstrip() != self.expected:
                return f"unauthorized: the key authorization from {where} does not match"
            return None
        raise AssertionError("unreachable: the last hop returns")

    def redirect(self, url: str, location: str) -> tuple[str, int, str] | str:
        """(scheme, port, path) of a redirect to follow, or why it is not followed."""
        target = urljoin(url, location.strip())
        try:
            parts = urlsplit(target)
            port = parts.port
        except ValueError:
            return "redirected to an invalid URL"
        if parts.scheme not in ("http", "https"):
            return f"redirected to a {parts.scheme or 'relative'} URL (only http and https)"
        if not self.same_host(parts.hostname):
            return f"redirected to another host ({parts.hostname}): not followed"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if any(ord(ch) <= 0x20 or ord(ch) >= 0x7F for ch in path):
            return "redirected to an invalid URL"
        return parts.scheme, port or (443 if parts.scheme == "https" else 80), path

    def fetch(
        self, address: str, port: int, scheme: str, path: str
    ) -> tuple[int, str | None, bytes]:
        wire = Wire(address, port, self.deadline)
        try:
            if scheme == "https":
                server_name = tls_alpn01_server_name(self.identifier_type, self.identifier)
                wire.start_tls(unverified_context(), server_name)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {self.host(scheme, port)}\r\n"
                f"User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            )
            wire.sendall(request.encode("ascii"))
            response = http.client.HTTPResponse(wire, method="GET")  # type: ignore[arg-type]
            response.begin()
            location = response.getheader("Location")
            body = response.read(MAX_BODY) if response.status == 200 else b""
            return response.status, location, body
        finally:
            wire.close()


# tls-alpn-01 -----------------------------------------------------------------------------


def _tls_alpn01_at(address: str, port: int, identifier_type: str, identifier: str,
                   key_authorization: str, deadline: Deadline) -> str | None:  # fmt: skip
    where = _where(address, port)
    context = unverified_context()
    context.set_alpn_protocols([ACME_TLS_1])
    try:
        wire = Wire(address, port, deadline)
        try:
            tls = wire.start_tls(context, tls_alpn01_server_name(identifier_type, identifier))
            protocol = tls.selected_alpn_protocol()
            der = tls.getpeercert(binary_form=True)
        finally:
            wire.close()
    except OSError as exc:
        return _network_reason(exc, where, deadline.timeout_s)
    if protocol != ACME_TLS_1:
        return f"tls: {where} did not negotiate {ACME_TLS_1}"
    if not der:
        return f"tls: {where} sent no certificate"
    return certificate_problem(der, identifier_type, identifier, key_authorization, where)


def certificate_problem(der: bytes, identifier_type: str, identifier: str,
                        key_authorization: str, where: str) -> str | None:  # fmt: skip
    """Why a tls-alpn-01 certificate (DER) does not meet the challenge (RFC 8737 §3), or
    ``None``."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        extensions = certificate.extensions
    except ValueError:
        return f"tls: the certificate from {where} does not parse"
    try:
        names = list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return f"unauthorized: the certificate from {where} has no subjectAltName"
    if identifier_type == "ip":
        wanted: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(identifier))
        matches = names == [wanted]
    else:
        matches = (len(names) == 1 and isinstance(names[0], x509.DNSName)
                   and names[0].value.lower() == identifier.lower())  # fmt: skip
    if not matches:
        return f"unauthorized: the certificate from {where} does not name {identifier} alone"
    try:
        extension = extensions.get_extension_for_oid(ID_PE_ACME_IDENTIFIER)
    except x509.ExtensionNotFound:
        return f"unauthorized: the certificate from {where} has no acmeIdentifier extension"
    if not extension.critical:
        return f"unauthorized: the acmeIdentifier extension from {where} is not critical"
    value = getattr(extension.value, "value", None)
    if value != acme_identifier_value(key_authorization):
        return f"unauthorized: the key authorization does not match the acmeIdentifier from {where}"
    return None
