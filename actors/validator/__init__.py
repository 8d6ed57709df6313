"""A validator (``validator-1`` ... ``validator-N`` in the tree): one of the N = 3f+1
independent checkers of the four-proof consensus.

- ``messages``: its vocabulary (``GetValidatorKey``, ``CheckRequest``,
  ``CheckRegistration``, ``CheckChallenge`` and its ``challenge_digest``), what the
  detector imports;
- ``actor``: ``ValidatorActor``, started only by the composition root. What it checks
  is sans-IO, in ``trustchain.actors.trust.requests``; its votes in ``trust.votes``;
- ``challenges``: the ACME challenges it checks itself (http-01, dns-01, tls-alpn-01),
  and the values an applicant presents for them (``dns01_value``,
  ``acme_identifier_value``), which responders and tests reuse.

The messages are imported eagerly; ``ValidatorActor`` on first use (PEP 562), so that a
peer that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.validator.messages import (
    CheckChallenge,
    CheckRegistration,
    CheckRequest,
    GetValidatorKey,
    challenge_digest,
)
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.validator.actor import ValidatorActor


__getattr__, __dir__ = lazy_names(__name__, {"ValidatorActor": "actor"})


__all__ = [
    "CheckChallenge",
    "CheckRegistration",
    "CheckRequest",
    "GetValidatorKey",
    "ValidatorActor",
    "challenge_digest",
]
