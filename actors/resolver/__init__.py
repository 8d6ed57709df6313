"""The resolver (``resolver`` in the tree): TrustChain's DNS zone, trust-aware, and a
Byzantine-tolerant forwarder for every other name.

- ``messages``: its vocabulary (``Query`` for the DNS-over-QUIC server; ``Resolve``,
  ``Zone``, ``ResolverStatus`` for the control socket and the CLI), what peers import.
"""

from __future__ import annotations

from trustchain.actors.resolver.messages import Query, Resolve, ResolverStatus, Zone

__all__ = [
    "Query",
    "Resolve",
    "ResolverStatus",
    "Zone",
]
