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


AccountId = Annotated[str, Bounds(min_length=1, max_length=128)]


@dataclass(frozen=True)
class ValidateChallenge(Message):
    """In-process only (the ACME actor): put an ACME challenge to the validators
    (``CheckChallenge``; the detector's round, as for ``Decide``). With 2f+1 approving
    votes the identifier's control by ``account`` is recorded, votes and all, valid for
    ``valid_for_s`` (``ConfirmDomainControl`` finds it at issuance), and the answer is
    ``{"digest", "votes": [vote bytes as base64], "validated_at", "expires"}``;
    ``not_approved`` with the reasons f+1 of the quorum agree on when they find the
    challenge unmet; ``quorum_not_reached`` when too few agree in time."""

    account: AccountId  # the ACME account's id (stable across key changes)
    kind: Annotated[str, Bounds(min_length=6, max_length=16)]
    identifier_type: Annotated[str, Bounds(min_length=2, max_length=3)]
    identifier: Annotated[str, Bounds(min_length=1, max_length=253)]
    token: Annotated[str, Bounds(min_length=22, max_length=128)]
    key_authorization: Annotated[str, Bounds(min_length=24, max_length=256)]
    port: Annotated[int, Bounds(min=1, max=65_535)] = 80
    timeout_s: Annotated[float, Bounds(min=0.01, max=60.0)] = 5.0
    valid_for_s: Annotated[int, Bounds(min=1, max=400 * 86_400)] = 28_800


@dataclass(frozen=True)
class ConfirmDomainControl(Message):
    """In-process only (the issuer's gate for ACME orders): has ``account`` control of
    every name (DNS names, ``*.`` wildcards by their base name with dns-01, IPv6
    addresses), corroborated by 2f+1 validators and not expired? Answered with the
    evidence, ``[{"identifier", "type", "kind", "digest", "votes", "validated_at"}]``,
    or ``not_approved`` naming what is not corroborated."""

    query = True  # a read

    account: AccountId
    names: Annotated[list[str], Bounds(min_length=1, max_length=100,
                                       items=Bounds(min_length=1, max_length=253))]  # fmt: skip
