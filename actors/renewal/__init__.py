"""The renewal actor: the certificates TrustChain serves with, issued by itself.

- ``messages``: its vocabulary (``RegisterCertificate``, ``Subscribe``, ``GetBundle``, ...),
  what peers import;
- ``actor``: ``RenewalActor``, started only by the composition root;
- ``bundle``: what a certificate bundle is, when it is due, how it is kept on disk.

The messages are imported eagerly; ``RenewalActor`` on first use (PEP 562), so that a peer
that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trustchain.actors.renewal.messages import (
    GetBundle,
    GetRenewalStatus,
    RegisterCertificate,
    RenewNow,
    Subscribe,
    Unsubscribe,
)

if TYPE_CHECKING:
    from trustchain.actors.renewal.actor import RenewalActor


def __getattr__(name: str) -> Any:
    if name != "RenewalActor":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module(f"{__name__}.actor").RenewalActor
    globals()[name] = value  # later look-ups do not come back here
    return value


__all__ = [
    "GetBundle",
    "GetRenewalStatus",
    "RegisterCertificate",
    "RenewNow",
    "RenewalActor",
    "Subscribe",
    "Unsubscribe",
]
