"""The issuer actor: TrustChain's certificate authority at run time.

- ``messages``: its vocabulary (``IssueCertificate``, ``RevokeCertificate``, ``GetCRL``,
  ...), what peers import;
- ``actor``: ``IssuerActor``, started only by the composition root; it is composed of
  ``pipeline`` (issuance), ``revocation``, ``hierarchy`` (start-up, rotation), ``crls``
  and ``faults`` over ``base``, which peers do not import.

The CA it drives (CSR policy, X.509 building, CRLs, the hierarchy and its store) is the
sans-IO domain package ``trustchain.actors.ca``.

The messages are imported eagerly; ``IssuerActor`` on first use (PEP 562), so that a peer
that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.issuer.messages import (
    GetCAStatus,
    GetCertificate,
    GetCRL,
    GetIssuanceStatus,
    IssueCertificate,
    RefreshCRLs,
    RevokeCertificate,
    RotateIntermediate,
)
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.issuer.actor import IssuerActor


__getattr__, __dir__ = lazy_names(__name__, {"IssuerActor": "actor"})


__all__ = [
    "GetCAStatus",
    "GetCRL",
    "GetCertificate",
    "GetIssuanceStatus",
    "IssueCertificate",
    "IssuerActor",
    "RefreshCRLs",
    "RevokeCertificate",
    "RotateIntermediate",
]
