"""The detector's vocabulary (``detector`` in the tree, ByzantineDetectorActor).

``Decide`` is the issuer's, in-process. The rest are the control socket's and the
CLI's (`trustchain trust ...`, `trustchain issue`): assets register once per epoch
(``SpaceChallenge`` then ``RegisterAsset``, with a stake from ``GrantStake``), and
anyone can ask for trust scores, an asset's trust and the evidence of misbehaviour.
Assets are named by the hex of their raw Ed25519 public key. The reads are queries
(``Message.query``): a detector with hundreds of votes queued answers them at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from trustchain.actors.trust.requests import RequestProofs
from trustchain.supervisors import Message
from trustchain.supervisors.messages import Bounds

Asset = Annotated[str, Bounds(min_length=64, max_length=64)]  # hex of 32 octets
Hex32 = Annotated[str, Bounds(min_length=64, max_length=64)]
Json = Annotated[dict[str, Any], Bounds(max_length=4096)]  # a stake or a space proof
Amount = Annotated[int, Bounds(min=0)]
Days = Annotated[int, Bounds(min=1, max=3_650)]
Blocks = Annotated[int, Bounds(min=1, max=2**40)]
Label = Annotated[str, Bounds(min_length=1, max_length=63)]
Addresses = Annotated[list[str], Bounds(min_length=1, max_length=8,
                                        items=Bounds(min_length=2, max_length=45))]  # fmt: skip
Signature = Annotated[str, Bounds(min_length=128, max_length=128)]  # hex of 64 octets


@dataclass(frozen=True)
class Decide(Message):
    """In-process only (the issuer): the quorum's decision on a certificate request.
    Answered with the ``Decision`` when 2f+1 validators agree to approve;
    ``not_approved`` (with the decision's reasons) when they agree to reject;
    ``quorum_not_reached`` when too few agree before the deadline (or no quorum can be
    made any more); ``proof_replayed`` when the request was approved before (its
    proofs are used up: a new request needs a new CSR and fresh proofs);
    ``trust_store_unavailable`` when the decision could not be recorded (a full disk:
    it counts for nothing; ask again after ``retry_after_s``)."""

    csr_der: bytes
    proofs: RequestProofs


@dataclass(frozen=True)
class GetTrustParams(Message):
    """What an asset needs to prove: work bits, VDF t and modulus, space parameters,
    the epoch now, the stake authority's public key."""

    query = True  # a read: answered ahead of the votes queued (Message.query)


@dataclass(frozen=True)
class GrantStake(Message):
    """Sign a stake record for ``asset`` with the stake authority's key (in the HSM):
    the operator's act (`trustchain stake grant ASSET AMOUNT --days N`)."""

    asset: Asset
    amount: Amount
    days: Days = 30


@dataclass(frozen=True)
class SpaceChallenge(Message):
    """Step 1 of registering: commit to a plot of ``n`` blocks, get a fresh challenge
    (kept on disk until the epoch ends or a decided registration uses it up; answered by
    ``RegisterAsset``)."""

    asset: Asset
    commitment: Hex32
    n: Blocks


@dataclass(frozen=True)
class RegisterAsset(Message):
    """Step 2: the signed stake and the space proof answering the challenge; the
    validators vote, and with 2f+1 approvals the asset is registered for this epoch."""

    asset: Asset
    stake: Json
    space_proof: Json


@dataclass(frozen=True)
class RegistrationStatus(Message):
    """Is ``asset`` registered for the current epoch (and until when)?"""

    query = True  # a read: answered ahead of the votes queued (Message.query)

    asset: Asset


@dataclass(frozen=True)
class ValidateAssetTrust(Message):
    """An asset's trust score with the factors it is made of."""

    query = True  # a read: answered ahead of the votes queued (Message.query)

    asset: Asset


@dataclass(frozen=True)
class TrustScores(Message):
    """Every validator's score, quarantine and agreement counts."""

    query = True  # a read: answered ahead of the votes queued (Message.query)


@dataclass(frozen=True)
class Evidence(Message):
    """Every equivocation caught: both signed votes, checkable with the validator's key."""

    query = True  # a read: answered ahead of the votes queued (Message.query)


@dataclass(frozen=True)
class GetTrustStatus(Message):
    """The detector's counters for status and metrics: decisions by outcome, rounds
    open, validators ignored, and alerts raised by kind (equivocation, a validator
    below the minimum score, an asset's failed, replayed or rebound proof)."""

    query = True  # a read: answered ahead of the votes queued (Message.query)


@dataclass(frozen=True)
class PublishAssetRecord(Message):
    """An asset registered for the current epoch says where it is: its ``name`` (one DNS
    label, under the zone's ``assets``) and its IPv6 ``addresses``, signed by its own key
    (``records.sign_record``; ``trustchain trust publish NAME ADDRESS...``). Kept for the
    epoch; the first asset to publish a name holds it (``name_taken`` for another)."""

    asset: Asset
    name: Label
    addresses: Addresses
    signature: Signature


@dataclass(frozen=True)
class AssetRecords(Message):
    """The records published for the current epoch, each with its asset's trust:
    ``[{"asset", "name", "addresses", "score", "quarantined"}]`` by name. An asset is
    quarantined while its history holds proofs it replayed or rebound (half an event
    or more, decaying with the scores' half-life): the resolver leaves those out."""

    query = True  # a read: answered ahead of the votes queued (Message.query)


Text = Annotated[str, Bounds(max_length=4096)]


@dataclass(frozen=True)
class UpstreamDisagreed(Message):
    """The resolver's report: ``upstream`` answered ``question`` otherwise than the
    quorum of upstreams did (``theirs`` against ``accepted``, as text). Kept as a fault
    of that upstream (counted on disk, shown in ``get_trust_status``) and alerted
    (``trust.upstream_disagreed``); answered with the upstream's count so far."""

    upstream: Text
    question: Text
    theirs: Text
    accepted: Text
