"""What the ACME core asks others to do, and the HTTP answer it gives.

The core (``core.AcmeCore``) never talks to another actor: where a step needs the
validators' quorum, the issuer or a revocation, it returns an effect, and the actor
performs it and feeds the result back (``AcmeCore.validated``, ``issued``,
``revoked``). ``Later`` is an effect to perform after a delay (a retry after a fault of
another actor: the detector or the issuer restarting).

``Answer`` is what the actor replies to an ``AcmeRequest``:
``{"status", "headers": [[name, value], ...], "body", "content_type"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trustchain.actors.acme.messages import AcmeRequest
from trustchain.actors.detector.messages import ValidateChallenge
from trustchain.actors.issuer.messages import IssueCertificate, RevokeCertificate

Answer = dict[str, Any]


@dataclass(frozen=True)
class Validate:
    """Put a challenge to the validators (the detector); feed the answer to
    ``AcmeCore.validated(challenge_id, ...)``."""

    challenge_id: str
    message: ValidateChallenge


@dataclass(frozen=True)
class Issue:
    """Have the issuer issue an order's certificate; feed the answer to
    ``AcmeCore.issued(order_id, ...)``."""

    order_id: str
    message: IssueCertificate


@dataclass(frozen=True)
class PendingRevocation:
    """A revokeCert request waiting for the issuer: what its answer needs."""

    request: AcmeRequest
    certificate_id: str
    reason: str


@dataclass(frozen=True)
class Revoke:
    """Have the issuer revoke a certificate; ``AcmeCore.revoked(pending, ...)`` gives
    the answer the client waits for."""

    pending: PendingRevocation
    message: RevokeCertificate


@dataclass(frozen=True)
class Later:
    """Perform ``effect`` after ``delay_s`` seconds."""

    delay_s: float
    effect: Validate | Issue


Effect = Validate | Issue | Revoke | Later
