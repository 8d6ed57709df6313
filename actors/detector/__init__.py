"""The Byzantine detector (``detector`` in the tree): decides with the validators'
signed votes (2f+1 of 3f+1), keeps their trust scores and the evidence of
equivocation, registers assets and scores their trust.

- ``messages``: its vocabulary (``Decide`` for the issuer; ``GrantStake``,
  ``SpaceChallenge``, ``RegisterAsset``, ``RegistrationStatus``, ``GetTrustParams``,
  ``ValidateAssetTrust``, ``TrustScores``, ``Evidence``, ``GetTrustStatus``,
  ``PublishAssetRecord`` for the control socket and the CLI; ``AssetRecords`` and
  ``UpstreamDisagreed`` for the resolver), what peers import;
- ``actor``: ``ByzantineDetectorActor``, started only by the composition root (with
  ``base``, ``faults`` and ``registration``, its parts). Its bookkeeping is sans-IO, in
  ``trustchain.actors.trust`` (``rounds``, ``votes``, ``scores``, ``store``).

The messages are imported eagerly; ``ByzantineDetectorActor`` on first use (PEP 562), so
that a peer that imports the vocabulary does not load the actor with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustchain.actors.detector.messages import (
    AssetRecords,
    Decide,
    Evidence,
    GetTrustParams,
    GetTrustStatus,
    GrantStake,
    PublishAssetRecord,
    RegisterAsset,
    RegistrationStatus,
    SpaceChallenge,
    TrustScores,
    UpstreamDisagreed,
    ValidateAssetTrust,
)
from trustchain.supervisors.lazy import lazy_names

if TYPE_CHECKING:
    from trustchain.actors.detector.actor import ByzantineDetectorActor


__getattr__, __dir__ = lazy_names(__name__, {"ByzantineDetectorActor": "actor"})


__all__ = [
    "AssetRecords",
    "ByzantineDetectorActor",
    "Decide",
    "Evidence",
    "GetTrustParams",
    "GetTrustStatus",
    "GrantStake",
    "PublishAssetRecord",
    "RegisterAsset",
    "RegistrationStatus",
    "SpaceChallenge",
    "TrustScores",
    "UpstreamDisagreed",
    "ValidateAssetTrust",
]
