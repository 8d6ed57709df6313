"""The CT monitor (``monitor`` in the tree): watches TrustChain's CT log as an outsider would.

- ``messages``: its vocabulary (``GetMonitorStatus``), what peers import;
- ``actor``: ``CTMonitorActor``, started only by the composition root. The checks
  it makes are sans-IO, in ``trustchain.actors.ct.audit`` (``AlertKind`` too).

The messages are imported eagerly; ``CTMonitorActor`` on first use (PEP 562), so that a peer
that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trustchain.actors.monitor.messages import (
    GetMonitorStatus,
)

if TYPE_CHECKING:
    from trustchain.actors.monitor.actor import CTMonitorActor


def __getattr__(name: str) -> Any:
    if name != "CTMonitorActor":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module(f"{__name__}.actor").CTMonitorActor
    globals()[name] = value  # later look-ups do not come back here
    return value


__all__ = [
    "CTMonitorActor",
    "GetMonitorStatus",
]
