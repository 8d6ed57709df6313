"""The CT log actor: TrustChain's Certificate Transparency log (RFC 6962 API, tiles on disk).

- ``messages``: its vocabulary (``AddChain``, ``LogIssued``, ``GetSTH``, ...), what peers
  import;
- ``actor``: ``CTLogActor``, started only by the composition root.

The log it drives (tiles, Merkle proofs, chain checks, recovery) is the sans-IO domain
package ``trustchain.actors.ct``.

The messages are imported eagerly; ``CTLogActor`` on first use (PEP 562), so that a peer
that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.ctlog.messages import (
    AcceptRoots,
    AddChain,
    AddPreChain,
    GetCheckpoint,
    GetEntries,
    GetEntryAndProof,
    GetIssuerCertificate,
    GetLogInfo,
    GetProofByHash,
    GetRoots,
    GetSTH,
    GetSTHConsistency,
    GetTile,
    LogIssued,
)
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.ctlog.actor import CTLogActor


__getattr__, __dir__ = lazy_names(__name__, {"CTLogActor": "actor"})


__all__ = [
    "AcceptRoots",
    "AddChain",
    "AddPreChain",
    "CTLogActor",
    "GetCheckpoint",
    "GetEntries",
    "GetEntryAndProof",
    "GetIssuerCertificate",
    "GetLogInfo",
    "GetProofByHash",
    "GetRoots",
    "GetSTH",
    "GetSTHConsistency",
    "GetTile",
    "LogIssued",
]
