"""PoSpace: an asset's plotted blocks, committed to by a Merkle root, opened on challenge.

    block i     = scrypt(password = SPACE_BLOCK || asset key || i (8 octets),
                         salt = SPACE_BLOCK, N = cost, r = 8, p = 1, dkLen = block_size)
    commitment  = RFC 9162 Merkle Tree Hash over the blocks (``actors/ct/merkle.py``)
    indices     = k distinct indices in [0, n), the j-th candidate drawn from
                  SHA-256(SPACE_CHALLENGE || frame(challenge, commitment, j)) by rejection
                  sampling (no modulo bias); repeats are skipped
    proof       = (commitment, n, [(index, block, inclusion path)] for those indices)

The asset plots once per asset key (blocks do not depend on the epoch) and registers
(n, commitment); a validator then sends a fresh challenge and checks the answer
(``check_space``): exactly the derived indices, each block of ``block_size`` octets,
included under the commitment, and equal to the block it recomputes for (asset key,
index). Cheap checks come first and blocks are recomputed one at a time, so a proof
over garbage costs the verifier one block computation, a valid one k.

What it proves, and what it does not:
- Answering needs the k challenged blocks within the validator's deadline. A prover
  who stored nothing computes k blocks per challenge; one who stored a fraction f of the
  plot passes without computing with probability f^k and otherwise computes (1 - f) k
  blocks on average. It deters only where k x (block cost) / P exceeds the deadline's
  slack (deadline minus round trip minus k reads), P being the cheater's parallelism:
  the k blocks are independent, so a cheater with k cores (a GPU, a rented fleet) needs
  one block's time. Against such a cheater it proves nothing unless one block costs
  more than the slack, which would make plotting n blocks cost n times the deadline.
  Below the deterrent, it proves "stored at least 1 - slack x P / (k x block cost) of
  the plot", not all of it.
- The verifier recomputes the k blocks too: its cost per valid proof is what a prover
  who stored nothing pays, only without a deadline. Check the stake (one ECDSA verify)
  before the space, and rate-limit registrations per asset.
- Blocks are a public function of the public asset key: anyone can plot for any asset
  and whoever holds the plot can answer. The binding gives only this: one plot serves
  one asset key, so n registered assets need n plots; it does not prove the storage is
  the asset's own machine's, nor that two assets' plots sit on different disks.
- It says nothing about the time between challenges: a prover may delete its plot
  and plot again before the next challenge; that costs n block computations, which is
  the price of not storing.
- The commitment must be fixed (recorded by the validator) before the challenge is
  drawn, and the challenge must be fresh and unpredictable (16 random octets or more):
  a prover who could choose the commitment after seeing the challenge would grind
  commitments over a partial plot until the k indices fall in the part it computed.
- Storage forced per block is at most 128 r p = 1024 octets: scrypt's output is
  PBKDF2-HMAC-SHA256 (one iteration) of its 1024-octet final state, so a longer block
  could be kept as that state and expanded cheaply. ``block_size`` is capped there.
- An honest prover reads k random blocks: milliseconds on an SSD or from the page
  cache, but about k x 10 ms on a spinning disk, as slow as recomputing them.

Parameters (measured on this machine, 2 cores, Python 3.11, one block of 1024 octets,
mean of a few hundred; re-measure before relying on a figure):
- ``SpaceParams()`` (tests, development): N = 16, 16 KiB of memory, ~0.08 ms a block; a
  few hundred blocks plot in tens of milliseconds. It proves nothing.
- ``PRODUCTION_PARAMS`` with ``PRODUCTION_CHALLENGES`` = 128: N = 2^12, 4 MiB of memory,
  ~9.2 ms a block (N = 2^14: ~38 ms); 2^18 blocks (256 MiB) plot in ~40 min of one core,
  once per asset key; a prover who stored nothing needs ~1.2 s of one core per
  challenge, the verifier the same per valid proof. With a deadline slack of ~0.3 s
  this catches a non-storing cheater with fewer than ~4 such cores and one storing less
  than ~75 % of its plot on one core; it does not catch a parallel cheater.

``Plot`` keeps its blocks and its Merkle levels in memory; a real plot lives on disk:
a driver may hand ``Plot`` any ``Sequence[bytes]`` (e.g. over a memory-mapped file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..ct import merkle
from ..ct.errors import ProofError
from . import fields, formats
from .errors import SpaceProofInvalid

SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_STATE_BYTES = 128 * SCRYPT_R * SCRYPT_P  # 1024: the most a block can force to be stored
MAX_SCRYPT_COST = 2**20  # 1 GiB of memory per block
MAX_BLOCKS = 2**40  # what a proof may claim; indices are framed in 8 octets
MAX_PATH = 40  # an inclusion path in a tree of at most 2^40 leaves
MAX_OPENINGS = 4096
HASH_BYTES = 32


@dataclass(frozen=True)
class SpaceParams:
    """How blocks are made and how large a plot must be; prover and verifier agree on
    them (config). The defaults are for tests and development: they prove nothing."""

    cost: int = 16  # scrypt N, a power of two
    block_size: int = SCRYPT_STATE_BYTES  # octets per block (scrypt dkLen)
    min_blocks: int = 16  # the least n a verifier accepts

    def __post_init__(self) -> None:
        if not 2 <= self.cost <= MAX_SCRYPT_COST or self.cost & (self.cost - 1):
            raise ValueError(f"scrypt cost N is a power of two from 2 to 2^20, not {self.cost}")
        if not 1 <= self.block_size <= SCRYPT_STATE_BYTES:
            raise ValueError(
                f"a block is 1 to {SCRYPT_STATE_BYTES} octets, not {self.block_size}: scrypt's "
                "output beyond its 1024-octet state can be recomputed cheaply from the state"
            )
        if not 1 <= self.min_blocks <= MAX_BLOCKS:
            raise ValueError(f"min_blocks is from 1 to 2^40, not {self.min_blocks}")


PRODUCTION_PARAMS = SpaceParams(cost=2**12, block_size=SCRYPT_STATE_BYTES, min_blocks=2**18)
PRODUCTION_CHALLENGES = 128  # k to go with PRODUCTION_PARAMS (see the module doc)


def compute_block(asset_key: bytes, index: int, params: SpaceParams) -> bytes:
    """Block ``index`` of ``asset_key``'s plot: one scrypt computation."""
    if len(asset_key) != formats.ASSET_KEY_BYTES:
        raise ValueError("an asset key is a raw 32-octet Ed25519 public key")
    password = formats.SPACE_BLOCK + asset_key + index.to_bytes(8, "big")
    return hashlib.scrypt(
        password,
        salt=formats.SPACE_BLOCK,
        n=params.cost,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=params.block_size,
        maxmem=2 * 128 * SCRYPT_R * (params.cost + SCRYPT_P + 2),  # OpenSSL's need, twice
    )


class Plot:
    """Blocks and the RFC 9162 Merkle tree over them: the commitment (``root``) and an
    inclusion path for any block (``path``)."""

    def __init__(self, blocks: Sequence[bytes]) -> None:
        if not blocks:
            raise ValueError("a plot holds at least one block")
        self.blocks = blocks
        self.n = len(blocks)
        self._levels = _complete_subtree_levels([merkle.leaf_hash(b) for b in blocks])
        self.root = merkle.range_hash(self._node, 0, self.n)

    def path(self, index: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 inclusion path of block ``index``, leaf-most first."""
        return merkle.inclusion_proof(self._node, index, self.n)

    def _node(self, level: int, index: int) -> bytes:
        return self._levels[level][index]


def _complete_subtree_levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    """``levels[l][i]``: the hash of the complete subtree [i 2^l, (i + 1) 2^l), what
    ``merkle.inclusion_proof`` asks for. (An adapter: ``actors/ct`` gets these from its
    tiles and has no in-memory builder.)"""
    levels = [leaf_hashes]
    while len(levels[-1]) >= 2:
        below = levels[-1]
        levels.append(
            [merkle.node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        )
    return levels


def plot(asset_key: bytes, n: int, params: SpaceParams) -> Plot:
    """Compute ``asset_key``'s ``n`` blocks (n block computations) and commit to them."""
    if not params.min_blocks <= n <= MAX_BLOCKS:
        raise ValueError(f"a plot has {params.min_blocks} to 2^40 blocks, not {n}")
    return Plot([compute_block(asset_key, i, params) for i in range(n)])


@dataclass(frozen=True)
class Opening:
    """One challenged block and its inclusion path under the commitment."""

    index: int
    block: bytes
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        fields.uint(self.index, "an opening's index", 0, MAX_BLOCKS - 1, SpaceProofInvalid)
        if not isinstance(self.block, bytes) or not 1 <= len(self.block) <= SCRYPT_STATE_BYTES:
            raise SpaceProofInvalid(f"a block is 1 to {SCRYPT_STATE_BYTES} octets")
        if not isinstance(self.path, tuple) or len(self.path) > MAX_PATH:
            raise SpaceProofInvalid(f"an inclusion path is a tuple of at most {MAX_PATH} hashes")
        if not all(isinstance(h, bytes) and len(h) == HASH_BYTES for h in self.path):
            raise SpaceProofInvalid("an inclusion path holds 32-octet hashes")

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "block": self.block.hex(),
            "path": [h.hex() for h in self.path],
        }

    @classmethod
    def from_json(cls, obj: object) -> Opening:
        got = fields.fields(obj, "an opening", ("index", "block", "path"), SpaceProofInvalid)
        path = fields.array(got["path"], "an inclusion path", MAX_PATH, SpaceProofInvalid)
        return cls(
            got["index"],
            fields.hex_bytes(
                got["block"], "a block", SCRYPT_STATE_BYTES, SpaceProofInvalid, exact=False
            ),
            tuple(fields.hex_bytes(h, "a path hash", HASH_BYTES, SpaceProofInvalid) for h in path),
        )


@dataclass(frozen=True)
class SpaceProof:
    """The answer to a challenge: the plot's commitment and size, and the openings."""

    commitment: bytes
    n: int
    openings: tuple[Opening, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.commitment, bytes) or len(self.commitment) != HASH_BYTES:
            raise SpaceProofInvalid("a commitment is a 32-octet Merkle tree hash")
        fields.uint(self.n, "a plot's size n", 1, MAX_BLOCKS, SpaceProofInvalid)
        if not isinstance(self.openings, tuple) or len(self.openings) > MAX_OPENINGS:
            raise SpaceProofInvalid(f"a proof holds a tuple of at most {MAX_OPENINGS} openings")
        for opening in self.openings:
            if not isinstance(opening, Opening):
                raise SpaceProofInvalid("a proof's openings are Opening values")
            if opening.index >= self.n:
                raise SpaceProofInvalid(
                    f"block {opening.index} is not in a plot of {self.n} blocks"
                )

    def to_json(self) -> dict[str, Any]:
        return {
            "commitment": self.commitment.hex(),
            "n": self.n,
            "openings": [o.to_json() for o in self.openings],
        }

    @classmethod
    def from_json(cls, obj: object) -> SpaceProof:
        got = fields.fields(
            obj, "a space proof", ("commitment", "n", "openings"), SpaceProofInvalid
        )
        openings = fields.array(
            got["openings"], "a proof's openings", MAX_OPENINGS, SpaceProofInvalid
        )
        return cls(
            fields.hex_bytes(got["commitment"], "a commitment", HASH_BYTES, SpaceProofInvalid),
            got["n"],
            tuple(Opening.from_json(o) for o in openings),
        )


def challenge_indices(challenge: bytes, commitment: bytes, n: int, k: int) -> list[int]:
    """The k distinct block indices in [0, n) that ``challenge`` asks ``commitment`` to
    open, in the order they are drawn."""
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"k distinct indices of n need 1 <= k <= n (k = {k}, n = {n})")
    seen: set[int] = set()
    out = []
    for index in _uniform_below(n, _draws(challenge, commitment)):
        if index not in seen:
            seen.add(index)
            out.append(index)
            if len(out) == k:
                return out
    raise AssertionError("unreachable: the draws never end")


def _draws(challenge: bytes, commitment: bytes) -> Iterator[bytes]:
    j = 0
    while True:
        yield hashlib.sha256(
            formats.SPACE_CHALLENGE + formats.frame(challenge, commitment, j)
        ).digest()
        j += 1


def _uniform_below(n: int, draws: Iterator[bytes]) -> Iterator[int]:
    """Each 256-bit draw as an integer below n, rejecting the draws at or above the
    largest multiple of n that fits (they would make the low indices likelier)."""
    limit = (1 << 256) - (1 << 256) % n
    for draw in draws:
        x = int.from_bytes(draw, "big")
        if x < limit:
            yield x % n


def open(plot: Plot, indices: Sequence[int]) -> SpaceProof:
    """Open ``plot`` at ``indices``: each block and its inclusion path."""
    openings = tuple(Opening(i, bytes(plot.blocks[i]), tuple(plot.path(i))) for i in indices)
    return SpaceProof(plot.root, plot.n, openings)


def answer_challenge(plot: Plot, challenge: bytes, k: int) -> SpaceProof:
    """What the asset sends back for a validator's ``challenge``."""
    return open(plot, challenge_indices(challenge, plot.root, plot.n, k))


def check_space(
    proof: SpaceProof, asset_key: bytes, challenge: bytes, k: int, params: SpaceParams
) -> None:
    """Raise ``SpaceProofInvalid`` unless ``proof`` opens exactly the k indices
    ``challenge`` derives from its commitment, each with ``asset_key``'s block at that
    index, included under the commitment. Costs k block computations when it passes."""
    if k < 1:
        raise ValueError(f"a challenge opens at least one block, not {k}")
    if proof.n < params.min_blocks:
        raise SpaceProofInvalid(
            f"the plot has {proof.n} blocks; the minimum is {params.min_blocks}",
            n=proof.n,
            min_blocks=params.min_blocks,
        )
    if proof.n < k:
        raise SpaceProofInvalid(f"a plot of {proof.n} blocks cannot open {k} distinct ones")
    if len(proof.openings) != k:
        raise SpaceProofInvalid(
            f"the proof opens {len(proof.openings)} blocks; the challenge asks for {k}"
        )
    expected = challenge_indices(challenge, proof.commitment, proof.n, k)
    if [o.index for o in proof.openings] != expected:
        raise SpaceProofInvalid(
            "the proof opens other blocks than the challenge derives from its commitment "
            "(a stale challenge, or another plot's)"
        )
    for opening in proof.openings:
        if len(opening.block) != params.block_size:
            raise SpaceProofInvalid(
                f"block {opening.index} is {len(opening.block)} octets, not {params.block_size}"
            )
        try:
            leaf = merkle.leaf_hash(opening.block)
            merkle.verify_inclusion(leaf, opening.index, proof.n, opening.path, proof.commitment)
        except ProofError as e:
            raise SpaceProofInvalid(
                f"block {opening.index} is not included under the commitment: {e.message}"
            ) from None
    for opening in proof.openings:  # the costly part last, stopping at the first wrong block
        if compute_block(asset_key, opening.index, params) != opening.block:
            raise SpaceProofInvalid(
                f"block {opening.index} is not asset {formats.asset_id(asset_key)}'s block"
            )
