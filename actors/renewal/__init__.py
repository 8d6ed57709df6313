"""The renewal actor: the certificates TrustChain serves with, issued by itself.

- ``messages``: its vocabulary (``RegisterCertificate``, ``Subscribe``, ``GetBundle``, ...),
  what peers import;
- ``actor``: ``RenewalActor``, started only by the composition root;
- ``errors``: what a caller can be told (``UnknownCertificate``, ``CertificateNotIssued``,
  ``RenewalFailed``);
- ``bundle``: what a certificate bundle is, when it is due, how it is kept on disk.

The messages and errors are imported eagerly; ``RenewalActor`` on first use (PEP 562), so
that a peer that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.renewal.errors import (
    CertificateNotIssued,
    RenewalFailed,
    UnknownCertificate,
)
from trustchain.actors.renewal.messages import (
    GetBundle,
    GetRenewalStatus,
    RegisterCertificate,
    RenewNow,
    Subscribe,
    Unsubscribe,
)
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.renewal.actor import RenewalActor


__getattr__, __dir__ = lazy_names(__name__, {"RenewalActor": "actor"})


__all__ = [
    "CertificateNotIssued",
    "GetBundle",
    "GetRenewalStatus",
    "RegisterCertificate",
    "RenewNow",
    "RenewalActor",
    "RenewalFailed",
    "Subscribe",
    "UnknownCertificate",
    "Unsubscribe",
]
