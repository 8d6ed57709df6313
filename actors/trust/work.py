"""PoWork: a nonce that makes the request digest's work hash start with D zero bits.

    work hash = SHA-256(formats.WORK || request digest (32 octets) || nonce (8 octets, big-endian))

A proof holds when the work hash, read as a 256-bit big-endian number, has at
least ``bits`` (D, from config) leading zero bits, i.e. is below 2^(256 - D).
Finding one costs 2^D hashes on average (``solve_work``, the asset's side);
checking it costs one (``check_work``, the validator's side).

The digest binds the CSR, the asset and the epoch (``formats.request_digest``),
so a nonce found for one request is worth nothing for another. What this proves
is that *someone* spent about 2^D hashes on this digest; it says nothing about
who, or how long that took on their hardware, and it does not stop the same
proof being shown twice (replay is the store's business).
"""

from __future__ import annotations

import hashlib

from trustchain.actors.trust import formats
from trustchain.actors.trust.errors import WorkInvalid

HASH_BITS = 256
NONCE_BYTES = 8
MAX_NONCE = 2 ** (8 * NONCE_BYTES) - 1


def leading_zero_bits(h: bytes) -> int:
    """How many of ``h``'s bits, read from the most significant, are zero."""
    return 8 * len(h) - int.from_bytes(h, "big").bit_length()


def work_hash(digest: bytes, nonce: int) -> bytes:
    return hashlib.sha256(formats.WORK + digest + nonce.to_bytes(NONCE_BYTES, "big")).digest()


def _check_bits(bits: int) -> None:
    if not 0 <= bits <= HASH_BITS:
        raise ValueError(f"work difficulty must be 0..{HASH_BITS} bits, not {bits}")


def solve_work(digest: bytes, bits: int) -> int:
    """The least nonce whose work hash has at least ``bits`` leading zero bits.

    Costs 2^bits hashes on average. Raises ValueError for a digest that is not
    32 octets or a difficulty outside 0..256 (the caller's bug, not a proof's).
    """
    if len(digest) != formats.DIGEST_BYTES:
        raise ValueError(f"a request digest is {formats.DIGEST_BYTES} octets, not {len(digest)}")
    _check_bits(bits)
    prefix = hashlib.sha256(formats.WORK + digest)  # the common prefix, hashed once
    # The largest hash with >= bits leading zeros; equal-length big-endian octet
    # strings compare as the numbers they spell, so no int is built per try.
    most = ((1 << (HASH_BITS - bits)) - 1).to_bytes(HASH_BITS // 8, "big")
    for nonce in range(MAX_NONCE + 1):
        h = prefix.copy()
        h.update(nonce.to_bytes(NONCE_BYTES, "big"))
        if h.digest() <= most:
            return nonce
    raise ValueError(f"no 8-octet nonce gives {bits} leading zero bits")  # pragma: no cover


def check_work(digest: bytes, nonce: int, bits: int) -> None:
    """Raise WorkInvalid unless ``nonce`` is a proof of ``bits`` bits of work on ``digest``.

    ``bits`` is the verifier's own difficulty (config): a value outside 0..256 is
    a ValueError, not the prover's fault.
    """
    _check_bits(bits)
    if len(digest) != formats.DIGEST_BYTES:
        raise WorkInvalid(
            f"the request digest is {len(digest)} octets; PoWork binds a"
            f" {formats.DIGEST_BYTES}-octet digest",
            digest_octets=len(digest),
        )
    if isinstance(nonce, bool) or not isinstance(nonce, int) or not 0 <= nonce <= MAX_NONCE:
        raise WorkInvalid(
            f"the work nonce must be an integer in 0..2^64-1, not {nonce!r}", nonce=repr(nonce)
        )
    zeros = leading_zero_bits(work_hash(digest, nonce))
    if zeros < bits:
        raise WorkInvalid(
            f"the work hash has {zeros} leading zero bits, {bits} are required: solve again"
            " for this request's digest",
            zero_bits=zeros,
            required_bits=bits,
        )
