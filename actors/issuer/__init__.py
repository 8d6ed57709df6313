"""The issuer actor: TrustChain's certificate authority at run time.

- ``messages``: its vocabulary (``IssueCertificate``, ``RevokeCertificate``, ``GetCRL``,
  ...), what peers import;
- ``actor``: ``IssuerActor``, started only by the composition root.

The CA it drives (CSR policy, X.509 building, CRLs, the hierarchy and its store) is the
sans-IO domain package ``trustchain.actors.ca``.

The messages are imported eagerly; ``IssuerActor`` on first use (PEP 562), so that a peer
that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trustchain.actors.issuer.messages import (
    GetCAStatus,
    GetCertificate,
    GetCRL,
    IssueCertificate,
    RefreshCRLs,
    RevokeCertificate,
    RotateIntermediate,
)

if TYPE_CHECKING:
    from trustchain.actors.issuer.actor import IssuerActor


def __getattr__(name: str) -> Any:
    if name != "IssuerActor":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module(f"{__name__}.actor").IssuerActor
    globals()[name] = value  # later look-ups do not come back here
    return value


__all__ = [
    "GetCAStatus",
    "GetCRL",
    "GetCertificate",
    "IssueCertificate",
    "IssuerActor",
    "RefreshCRLs",
    "RevokeCertificate",
    "RotateIntermediate",
]
