"""The issuer actor's vocabulary: the messages it accepts and the bounds of their arguments.

Peers (the renewal actor, the HTTP and CLI edges, benchmarks and tests) import these,
never the actor (``actors/issuer/actor.py``); only the composition root starts it.
The CA itself (CSR policy, X.509 building, CRLs, the store) is the domain package
``trustchain.actors.ca``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from trustchain.supervisors import Message
from trustchain.supervisors.messages import Bounds

# Bounds of the messages' arguments (see supervisors.messages). A CSR's size is
# the policy's to refuse (ca.max_csr_bytes <= 1 MiB: csr_too_large, which says the
# limit); the bound here only keeps absurd text out. A serial is at most 20 octets
# (RFC 5280 §4.1.2.2): 40 hex digits, 59 with colons.
CsrText = Annotated[str, Bounds(min_length=1, max_length=16 * 1_048_576)]
SerialText = Annotated[str, Bounds(min_length=1, max_length=128)]


@dataclass(frozen=True)
class IssueCertificate(Message):
    csr: CsrText  # PEM, or base64 DER
    validity_s: int | None = None  # checked against the policy before any timedelta
    client_auth: bool = False
    # With trust.enabled: the request's proofs (trust.requests.RequestProofs as JSON)
    proofs: Annotated[dict[str, Any] | None, Bounds(max_length=16)] = None
    # Or, for an ACME order: the ACME account whose domain control over every name the
    # validators corroborated (detector.messages.ConfirmDomainControl)
    acme_account: Annotated[str | None, Bounds(min_length=1, max_length=128)] = None
    # The caller's name for this request (an ACME order's, "acme-order-<id>"): asked again
    # with the same id and the same key, the certificate issued for it the first time is
    # the answer (replayed: true), never a second one (a retry after a crash)
    request_id: Annotated[str | None, Bounds(min_length=1, max_length=128)] = None


@dataclass(frozen=True)
class RevokeCertificate(Message):
    serial: SerialText
    reason: Annotated[str, Bounds(max_length=64)] = "unspecified"


@dataclass(frozen=True)
class GetCertificate(Message):
    serial: SerialText


@dataclass(frozen=True)
class GetCRL(Message):
    # the CA's key label (an intermediate's, or the root's); default: the current intermediate
    ca: Annotated[str | None, Bounds(max_length=128)] = None


@dataclass(frozen=True)
class GetCAStatus(Message):
    """Every CA certificate of the hierarchy, with its role and key."""


@dataclass(frozen=True)
class GetIssuanceStatus(Message):
    """What the issuer owes the CT log: final certificates recorded, not yet logged."""


@dataclass(frozen=True)
class RotateIntermediate(Message):
    """Make a new intermediate key and certificate and issue under it."""


@dataclass(frozen=True)
class RefreshCRLs(Message):
    """Sign and write a fresh CRL for every CA (also on a timer)."""
