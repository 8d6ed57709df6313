"""The read path of a ``TileLog``: served from the committed state only.

Proofs cost O(log n) tile reads (see ``_tree``); the edge of the tree is in memory,
so tiles past the checkpoint are never served, and with a journal the partial tiles
the storage does not hold yet are served all the same."""

from __future__ import annotations

from . import merkle
from ._tree import TileReader, TreeState
from .checkpoint import SignedTreeHead
from .entries import TileLeaf, data_tile_offsets, extra_data, fingerprint
from .errors import IndexOutOfRange, LogCorrupted, TileNotFound, TreeSizeOutOfRange
from .index import EntryIndex
from .storage import TileStorage
from .tiles import DATA_LEVEL, HASH_SIZE, TILE_HEIGHT, TILE_WIDTH, parse_tile_path


def issuer_key(fp: bytes) -> str:
    return f"issuer/{fp.hex()}"


class LogReads:
    """What ``TileLog`` serves: tree heads, proofs, entries, issuers, tiles."""

    _storage: TileStorage
    _index: EntryIndex
    _reader: TileReader
    _state: TreeState
    _sth: SignedTreeHead
    _checkpoint: bytes

    @property
    def size(self) -> int:
        return self._state.size

    @property
    def root(self) -> bytes:
        return self._sth.root_hash

    @property
    def tile_reads(self) -> int:
        """Tiles read from storage so far (LRU misses), for metrics."""
        return self._reader.reads

    def sth(self) -> SignedTreeHead:
        return self._sth

    def checkpoint(self) -> bytes:
        """The signed note served at ``<monitoring prefix>/checkpoint``."""
        return self._checkpoint

    def _node(self, level: int, index: int) -> bytes:
        return self._reader.node(self._state, level, index)

    def root_at(self, size: int) -> bytes:
        self._check_size(size)
        return merkle.range_hash(self._node, 0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        if not 0 <= index < size:
            raise IndexOutOfRange(f"leaf index {index} is not in the tree of size {size}")
        return merkle.inclusion_proof(self._node, index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise TreeSizeOutOfRange(f"first size {size1} must be 0..{size2}")
        return merkle.consistency_proof(self._node, size1, size2)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self._state.size:
            raise TreeSizeOutOfRange(f"tree size {size} is not 0..{self._state.size}")

    def index_of(self, leaf_hash: bytes) -> int | None:
        """Index of the leaf with this Merkle leaf hash (get-proof-by-hash)."""
        return self._index.by_leaf_hash(leaf_hash)

    def entries(self, start: int, end: int) -> list[TileLeaf]:
        """Stored entries [start, end) (end exclusive)."""
        if not 0 <= start < end <= self._state.size:
            raise IndexOutOfRange(f"range [{start}, {end}) is not within 0..{self._state.size}")
        return self._reader.leaves(self._state, start, end)

    def get_entries(self, start: int, end: int) -> list[tuple[bytes, bytes]]:
        """RFC 6962 §4.6 (leaf_input, extra_data) for [start, end) (end exclusive)."""
        out = []
        for leaf in self.entries(start, end):
            chain = [self.issuer(fp) for fp in leaf.chain_fingerprints]
            out.append((leaf.merkle_tree_leaf(), extra_data(leaf, chain)))
        return out

    def issuer(self, fp: bytes) -> bytes:
        data = self._storage.read(issuer_key(fp))
        if data is None or fingerprint(data) != fp:
            raise LogCorrupted(f"issuer {fp.hex()} is missing or damaged in storage")
        return data

    def tile(self, path: str) -> bytes:
        """A committed tile's bytes (hash or data, full or partial ``.p/<W>``)."""
        tile = parse_tile_path(path)
        state = self._state
        count = state.size >> (TILE_HEIGHT * max(tile.level, 0))
        if tile.index * TILE_WIDTH + tile.width > count:
            raise TileNotFound(f"{path} is not part of the tree of size {state.size}")
        edge = state.edge_tile(tile.level)
        if edge is not None and tile.index == edge.index:
            if tile.level == DATA_LEVEL:
                return b"".join(state.data_edge[: tile.width])
            return state.edges[tile.level][: tile.width * HASH_SIZE]
        data = self._reader.full_tile_bytes(state, tile.full())
        if not tile.is_partial:
            return data
        if tile.level == DATA_LEVEL:
            return data[: data_tile_offsets(data)[tile.width - 1]]
        return data[: tile.width * HASH_SIZE]
