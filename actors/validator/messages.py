"""A validator's vocabulary: what the detector asks it (in-process), and its key.

A validator answers each check with its vote as self-contained signed bytes
(``trustchain.actors.trust.votes.Vote.to_bytes``), so that a validator in another
process or on another machine is a change of transport, not of design.

Each check carries the stake authority's public key (``authority_key``, DER
SubjectPublicKeyInfo, as the HSM gives it to the detector): validators start before
the detector and never wait on it, so the key travels with the question rather than
being fetched at start. A validator answers the same vote again when asked again
about a digest it voted on (see ``actor.py``): two different votes on one digest are
equivocation, whoever asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from trustchain.actors.trust.requests import RequestProofs
from trustchain.actors.trust.space import SpaceProof
from trustchain.actors.trust.stake import SignedStake
from trustchain.actors.trust.store import Registration
from trustchain.supervisors import Message
from trustchain.supervisors.messages import Bounds

AuthorityKey = Annotated[bytes, Bounds(min_length=1, max_length=4096)]


@dataclass(frozen=True)
class GetValidatorKey(Message):
    """This validator's id and Ed25519 public key: ``{"validator", "public_key"}`` (hex)."""


@dataclass(frozen=True)
class CheckRequest(Message):
    """In-process only: check a certificate request's proofs (``requests.check_request``)
    against the registration the detector holds; answered with the signed vote's bytes
    over the request digest (``approve``, or ``reject`` with the reasons)."""

    csr_der: bytes
    proofs: RequestProofs
    registration: Registration | None
    authority_key: AuthorityKey  # the stake authority's SPKI (DER)


@dataclass(frozen=True)
class CheckRegistration(Message):
    """In-process only: check an asset's registration for an epoch
    (``requests.check_registration``); answered with the signed vote's bytes over
    ``requests.registration_digest``."""

    asset_key: bytes
    epoch: int
    stake: SignedStake
    proof: SpaceProof
    challenge: bytes
    authority_key: AuthorityKey  # the stake authority's SPKI (DER)
