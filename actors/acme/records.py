"""What the ACME server keeps: accounts, orders, authorizations, challenges and
certificates (RFC 8555 §7.1), as frozen records the core changes by replacing them.

Times are seconds since 1970 (floats), passed in; the JSON the clients see turns them
into RFC 3339 (``rfc3339``). Identifiers are ``(type, value)`` pairs: ``("dns",
"www.example.com")``, ``("dns", "*.example.com")`` for a wildcard order, ``("ip",
"2001:db8::1")``. An authorization names the base of a wildcard (``example.com``) and
says ``wildcard`` (§7.1.4).

The statuses are those of RFC 8555 §7.1.6; the core is what moves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# RFC 8555 §7.1.6
PENDING, READY, PROCESSING, VALID, INVALID = "pending", "ready", "processing", "valid", "invalid"
DEACTIVATED, REVOKED, EXPIRED = "deactivated", "revoked", "expired"

Identifier = tuple[str, str]  # (type, value): ("dns", "a.example.com"), ("ip", "2001:db8::1")


def rfc3339(seconds: float) -> str:
    """``2026-12-07T09:31:30Z`` (RFC 3339, UTC, whole seconds as clients expect)."""
    moment = datetime.fromtimestamp(int(seconds), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Account:
    id: str
    jwk: dict[str, Any]  # the public key, as the client sent it (RFC 7517)
    thumbprint: str  # RFC 7638, base64url: one account per key
    contact: tuple[str, ...]
    status: str  # valid | deactivated | revoked
    created: float
    terms_agreed: bool = False
    eab_kid: str | None = None  # the External Account Binding key it was bound with


@dataclass(frozen=True)
class Order:
    id: str
    account: str
    status: str  # pending | ready | processing | valid | invalid
    identifiers: tuple[Identifier, ...]
    authorizations: tuple[str, ...]  # authorization ids, one per identifier, in order
    profile: str
    created: float
    expires: float
    error: dict[str, Any] | None = None  # a problem document (why it is invalid)
    csr: str | None = None  # PEM, from finalize: kept so a restart can issue again
    certificate: str | None = None  # the certificate's id once valid
    replaces: str | None = None  # the ARI certID of the certificate it renews (RFC 9773)
    # a consensus profile's (acme.consensus_profiles): the asset's proofs for the CSR,
    # from finalize (JSON, trust.requests.RequestProofs), kept with the CSR
    proofs: dict[str, Any] | None = None


@dataclass(frozen=True)
class Authorization:
    id: str
    account: str
    identifier: Identifier  # a wildcard's base name, with ``wildcard``
    wildcard: bool
    status: str  # pending | valid | invalid | deactivated | expired | revoked
    created: float
    expires: float
    validated: float | None = None
    evidence: dict[str, Any] | None = None  # the validators' votes (ValidateChallenge's answer)


@dataclass(frozen=True)
class Challenge:
    id: str
    authz: str
    type: str  # http-01 | dns-01 | tls-alpn-01
    token: str
    status: str  # pending | processing | valid | invalid
    validated: float | None = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Certificate:
    id: str
    serial: str  # hex, as the issuer says it
    cert_id: str  # RFC 9773's certID: base64url(AKI) "." base64url(serial)
    account: str
    order: str
    chain: str  # PEM: the leaf, then the chain
    names: tuple[str, ...]
    issued: float
    not_before: float
    not_after: float
    revoked: float | None = None
    reason: str | None = None
