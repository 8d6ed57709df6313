"""ACME (RFC 8555): the server TrustChain runs under /acme/ on its HTTPS edge.

- ``messages``: its vocabulary (``AcmeRequest``, ``GetAcmeStatus``), what the edge
  imports;
- ``actor``: ``AcmeActor``, started only by the composition root
  (``AcmeActor.start(ctx, config.acme, config.ca)``), over ``core.AcmeCore``, the
  sans-IO server (``accounts``, ``orders``, ``authorizations``, ``revocation`` over
  ``base``), its ``store`` (SQLite) and its ``effects``;
- the building blocks: ``jws`` (request authentication), ``nonces``, ``identifiers``
  (newOrder, CSRs, ARI ids), ``problems`` (RFC 7807 problem documents).

The messages are imported eagerly; ``AcmeActor`` on first use (PEP 562), so that a peer
that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.acme.messages import AcmeRequest, GetAcmeStatus
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.acme.actor import AcmeActor


__getattr__, __dir__ = lazy_names(__name__, {"AcmeActor": "actor"})


__all__ = ["AcmeActor", "AcmeRequest", "GetAcmeStatus"]
