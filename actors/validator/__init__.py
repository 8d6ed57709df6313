"""A validator (``validator-1`` ... ``validator-N`` in the tree): one of the N = 3f+1
independent checkers of the four-proof consensus.

- ``messages``: its vocabulary (``GetValidatorKey``, ``CheckRequest``,
  ``CheckRegistration``), what the detector imports;
- ``actor``: ``ValidatorActor``, started only by the composition root. What it checks
  is sans-IO, in ``trustchain.actors.trust.requests``; its votes in ``trust.votes``.

The messages are imported eagerly; ``ValidatorActor`` on first use (PEP 562), so that a
peer that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.validator.messages import (
    CheckRegistration,
    CheckRequest,
    GetValidatorKey,
)
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.validator.actor import ValidatorActor


__getattr__, __dir__ = lazy_names(__name__, {"ValidatorActor": "actor"})


__all__ = [
    "CheckRegistration",
    "CheckRequest",
    "GetValidatorKey",
    "ValidatorActor",
]
