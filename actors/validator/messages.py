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

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Annotated

from trustchain.actors.trust.requests import RequestProofs
from trustchain.actors.trust.space import SpaceProof
from trustchain.actors.trust.stake import SignedStake
from trustchain.actors.trust.store import Registration
from trustchain.supervisors import Message
from trustchain.supervisors.errors import InvalidRequest
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


CHALLENGE_KINDS = ("http-01", "dns-01", "tls-alpn-01")
IDENTIFIER_TYPES = ("dns", "ip")  # ip: IPv6 addresses (RFC 8738; TrustChain reaches IPv6 only)
_BASE64URL = r"[A-Za-z0-9_-]+"
_DNS_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
ChallengeKind = Annotated[str, Bounds(min_length=6, max_length=16,
                                      pattern="|".join(CHALLENGE_KINDS),
                                      what="http-01, dns-01 or tls-alpn-01")]  # fmt: skip
IdentifierType = Annotated[str, Bounds(min_length=2, max_length=3,
                                       pattern="|".join(IDENTIFIER_TYPES),
                                       what="dns or ip")]  # fmt: skip
Identifier = Annotated[str, Bounds(min_length=1, max_length=253)]
Token = Annotated[str, Bounds(min_length=22, max_length=128, pattern=_BASE64URL,
                              what="base64url without padding (RFC 8555 §8.1)")]  # fmt: skip
KeyAuthorization = Annotated[str, Bounds(min_length=24, max_length=256,
                                         pattern=rf"{_BASE64URL}\.{_BASE64URL}",
                                         what="token '.' base64url(JWK thumbprint)")]  # fmt: skip
CHALLENGE_DIGEST_CONTEXT = b"trustchain-acme-challenge-v1\x00"


def challenge_digest(
    kind: str, identifier_type: str, identifier: str, token: str, key_authorization: str
) -> bytes:
    """What a challenge's votes are signed over: SHA-256 of a context string and the
    challenge as canonical JSON (kind, identifier type, identifier, token, key
    authorization). Where and how long to look are not part of it."""
    text = json.dumps([kind, identifier_type, identifier, token, key_authorization])
    return hashlib.sha256(CHALLENGE_DIGEST_CONTEXT + text.encode()).digest()


@dataclass(frozen=True)
class CheckChallenge(Message):
    """In-process only: check an ACME challenge (RFC 8555 §8) from this validator's own
    perspective -- the name resolved through TrustChain's resolver (IPv6 only), then its
    own HTTP fetch (``http-01``, RFC 8555 §8.3), TXT lookup (``dns-01``, §8.4) or
    TLS-ALPN handshake (``tls-alpn-01``, RFC 8737); answered with the signed vote's bytes
    over ``challenge_digest`` (``approve``, or ``reject`` with what was found, each reason
    starting with an RFC 8555 error type: see ``challenges.py``). A failed lookup of the
    name is a reject (``dns: ...``); a resolver that cannot be asked is an error, no vote.

    Checked when built: the kind and identifier type are known ones, the token and key
    authorization are base64url, and the identifier is a lower-case DNS name (LDH labels;
    a wildcard's base name, the ``*.`` taken off) or an IPv6 address (``InvalidRequest``
    otherwise)."""

    kind: ChallengeKind
    identifier_type: IdentifierType
    identifier: Identifier  # a lower-case A-label DNS name, or an IPv6 address (RFC 8738)
    token: Token
    key_authorization: KeyAuthorization  # token "." base64url(JWK thumbprint)
    port: Annotated[int, Bounds(min=1, max=65_535)] = 80  # http-01's or tls-alpn-01's
    timeout_s: Annotated[float, Bounds(min=0.01, max=60.0)] = 5.0  # the whole check

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.identifier_type == "ip":
            try:
                ipaddress.IPv6Address(self.identifier)
            except ValueError:
                raise InvalidRequest(
                    f"check_challenge.identifier: {self.identifier!r} is not an IPv6 address "
                    "(ip identifiers are IPv6 only)"
                ) from None
        elif not _DNS_NAME.fullmatch(self.identifier):
            raise InvalidRequest(
                f"check_challenge.identifier: {self.identifier!r} is not a lower-case DNS name "
                "(A-labels, letters, digits and hyphens)"
            )

    def digest(self) -> bytes:
        return challenge_digest(self.kind, self.identifier_type, self.identifier, self.token,
                                self.key_authorization)  # fmt: skip
