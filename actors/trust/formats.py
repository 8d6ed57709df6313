"""The bytes the four-proof consensus signs and hashes, written down once.

Every hash and signature input starts with its own domain separator (below), so
that bytes made for one purpose can never be taken for another's. Fields are
framed so that no two different field lists encode to the same bytes: each
variable-length field as a 4-octet big-endian length then the bytes, each integer
as 8 octets big-endian (``frame``).

    request digest   = SHA-256(REQUEST_DIGEST || frame(csr DER, asset key, epoch))
    asset signature  = Ed25519(asset key, ASSET_SIGNATURE || request digest)
    PoWork           : SHA-256(WORK || request digest || nonce (8 octets)) has at
                       least D leading zero bits
    PoTime input     = H(VDF_INPUT || request digest) mapped into Z_N (``vdf.py``)
    PoTime prime     = SHA-256(VDF_PRIME || frame(N, x, y, t) || index (8 octets)),
                       top and low bits set, prime; the proof names its index
    stake record     = ECDSA(stake authority, STAKE_RECORD || frame(asset key,
                       amount, expires_at))
    space block i    = scrypt(SPACE_BLOCK || asset key || i) (``space.py``)
    space indices    = SHA-256(SPACE_CHALLENGE || frame(challenge, commitment, j))
    vote             = Ed25519(validator key, VOTE || frame(validator id, request
                       digest, verdict, frame_all(reasons)))
    replay key       = SHA-256(REPLAY_FINGERPRINT || frame(kind, fields...))
    registration     = SHA-256(REGISTRATION || frame(asset key, epoch, stake record
                       tbs, stake signature, space commitment, n)): what validators
                       vote on when an asset registers
    asset record     = Ed25519(asset key, ASSET_RECORD || frame(name, epoch,
                       frame_all(IPv6 addresses, compressed text))): the asset's name
                       in the zone and its addresses, for one epoch (``records.py``)

An asset key is the raw 32-octet Ed25519 public key; an asset's id is its hex.
The digest binds the CSR (its DER), the asset and the epoch, so a proof made for
one request is useless for another, and one made in an earlier epoch is stale.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

REQUEST_DIGEST = b"trustchain/v1/request-digest\x00"
ASSET_SIGNATURE = b"trustchain/v1/asset-signature\x00"
WORK = b"trustchain/v1/proof-of-work\x00"
VDF_INPUT = b"trustchain/v1/vdf-input\x00"
VDF_PRIME = b"trustchain/v1/vdf-prime\x00"
STAKE_RECORD = b"trustchain/v1/stake-record\x00"
SPACE_BLOCK = b"trustchain/v1/space-block\x00"
SPACE_CHALLENGE = b"trustchain/v1/space-challenge\x00"
VOTE = b"trustchain/v1/vote\x00"
REPLAY_FINGERPRINT = b"trustchain/v1/replay-fingerprint\x00"
REGISTRATION = b"trustchain/v1/registration\x00"
ASSET_RECORD = b"trustchain/v1/asset-record\x00"

SEPARATORS = (REQUEST_DIGEST, ASSET_SIGNATURE, WORK, VDF_INPUT, VDF_PRIME, STAKE_RECORD,
              SPACE_BLOCK, SPACE_CHALLENGE, VOTE, REPLAY_FINGERPRINT, REGISTRATION,
              ASSET_RECORD)  # fmt: skip
ASSET_KEY_BYTES = 32  # a raw Ed25519 public key
DIGEST_BYTES = 32


def frame(*fields: bytes | int | str) -> bytes:
    """Fields in an unambiguous encoding: bytes and text (UTF-8) as a 4-octet length
    then the octets, integers (0 <= i < 2^64) as 8 octets, all big-endian."""
    out = bytearray()
    for field in fields:
        if isinstance(field, bool):
            raise TypeError("frame a verdict as text, not a bool")
        if isinstance(field, int):
            out += field.to_bytes(8, "big")
            continue
        data = field.encode("utf-8") if isinstance(field, str) else bytes(field)
        out += len(data).to_bytes(4, "big") + data
    return bytes(out)


def frame_all(items: Iterable[bytes | str]) -> bytes:
    """A list of fields as one field: its count, then each framed."""
    items = list(items)
    return len(items).to_bytes(4, "big") + frame(*items)


def request_digest(csr_der: bytes, asset_key: bytes, epoch: int) -> bytes:
    """What every per-request proof, signature and vote is bound to."""
    if len(asset_key) != ASSET_KEY_BYTES:
        raise ValueError("an asset key is a raw 32-octet Ed25519 public key")
    return hashlib.sha256(REQUEST_DIGEST + frame(csr_der, asset_key, epoch)).digest()


def asset_id(asset_key: bytes) -> str:
    return asset_key.hex()


def epoch_of(now_s: float, epoch_s: int) -> int:
    """The registration epoch a moment falls in (epochs of ``epoch_s`` seconds from 1970)."""
    return int(now_s // epoch_s)
