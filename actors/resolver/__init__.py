"""The resolver (``resolver`` in the tree): TrustChain's DNS zone with authority,
trust-aware, and a Byzantine-tolerant forwarder (a quorum of upstreams) for the rest.

- ``messages``: its vocabulary (``Query`` for the DNS-over-QUIC server; ``Resolve``,
  ``Zone``, ``ResolverStatus`` and ACME dns-01's ``AddChallengeTxt``,
  ``RemoveChallengeTxt``, ``ListChallengeTxt`` for the control socket and the CLI),
  what peers import;
- ``actor``: ``ResolverActor``, started only by the composition root. Its logic is
  sans-IO: ``zone`` (the zone and its assets), ``upstream`` (the quorum), ``cache``,
  ``chase`` (CNAMEs out of the zone followed through the quorum), ``wire`` (queries
  in, responses out) and ``core`` (``Resolver``, which joins them);
  ``worker`` runs the upstream queries on a thread of its own; ``challenges`` (what
  may be published, and its SQLite file) and ``dns01`` (the actor's side of it) keep
  the dns-01 TXT records.

The messages are imported eagerly; ``ResolverActor`` on first use (PEP 562), so that a
peer that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.resolver.messages import (
    AddChallengeTxt,
    ChallengeStoreUnavailable,
    ChallengeTxtInvalid,
    ChallengeTxtLimit,
    ListChallengeTxt,
    Query,
    RemoveChallengeTxt,
    Resolve,
    ResolverStatus,
    Zone,
)
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.resolver.actor import ResolverActor


__getattr__, __dir__ = lazy_names(__name__, {"ResolverActor": "actor"})


__all__ = [
    "AddChallengeTxt",
    "ChallengeStoreUnavailable",
    "ChallengeTxtInvalid",
    "ChallengeTxtLimit",
    "ListChallengeTxt",
    "Query",
    "RemoveChallengeTxt",
    "Resolve",
    "ResolverActor",
    "ResolverStatus",
    "Zone",
]
