"""Typed errors of the renewal actor: what a caller asking for a certificate can be told.

Each is a ``TrustChainError`` with a stable snake_case ``code``. This module imports
nothing but the error base, so that a peer can catch them without loading the actor.
"""

from __future__ import annotations

from trustchain.supervisors.errors import TrustChainError


class UnknownCertificate(TrustChainError):
    """No managed certificate has that name (the message lists the managed ones)."""

    code = "unknown_certificate"


class CertificateNotIssued(TrustChainError):
    """The certificate is managed but has not been issued yet (or its issuance failed)."""

    code = "certificate_not_issued"


class RenewalFailed(TrustChainError):
    """Issuing or storing a new certificate failed; retried at the next check."""

    code = "renewal_failed"
