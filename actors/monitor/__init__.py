"""The CT monitor (``monitor`` in the tree): watches TrustChain's CT log as an outsider would.

- ``messages``: its vocabulary (``GetMonitorStatus``), what peers import;
- ``actor``: ``CTMonitorActor``, started only by the composition root. The checks
  it makes are sans-IO, in ``trustchain.actors.ct.audit`` (``AlertKind`` too).

The messages are imported eagerly; ``CTMonitorActor`` on first use (PEP 562), so that a peer
that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.monitor.messages import (
    GetMonitorStatus,
)
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.monitor.actor import CTMonitorActor


__getattr__, __dir__ = lazy_names(__name__, {"CTMonitorActor": "actor"})


__all__ = [
    "CTMonitorActor",
    "GetMonitorStatus",
]
