"""Node hashes of a tiled tree, read through an LRU, plus its in-memory right edge.

``TreeState`` is one committed tree: its size, and the rightmost partial tile of
every hash level and of the data level (the "edge"), which the log keeps in
memory because it changes with every batch. Every other tile of that tree is
full, hence immutable, hence safe to cache forever: ``TileReader`` keeps an LRU
of full tiles and, per hash tile, the internal levels of its 8-level subtree
(computed once, 255 hashes), so ``node(level, index)`` costs one tile read at
most and no hashing when warm.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from .entries import TileLeaf, decode_data_tile
from .errors import LogCorrupted
from .merkle import node_hash
from .storage import TileStorage
from .tiles import DATA_LEVEL, HASH_SIZE, MAX_LEVEL, TILE_HEIGHT, TILE_WIDTH, Tile, node_location

FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE


@dataclass(frozen=True)
class TreeState:
    size: int
    edges: dict[int, bytes] = field(default_factory=dict)
    """level -> the partial tile's hashes (absent or empty when the level is aligned)."""
    data_edge: tuple[bytes, ...] = ()
    """Encoded TileLeaf of each leaf in the partial data tile."""

    def edge_tile(self, level: int) -> Tile | None:
        count = self.size if level == DATA_LEVEL else self.size >> (TILE_HEIGHT * level)
        width = count % TILE_WIDTH
        return Tile(level, count // TILE_WIDTH, width) if width else None

    def extend(
        self, leaf_hashes: list[bytes], leaves: list[bytes]
    ) -> tuple[TreeState, dict[Tile, bytes]]:
        """The tree with these leaves appended, and every tile that changed
        (full tiles completed on the way, and the new partial edge tiles)."""
        changed: dict[Tile, bytes] = {}
        edges = dict(self.edges)
        incoming, level = leaf_hashes, 0
        while incoming:
            count = self.size >> (TILE_HEIGHT * level)
            edge = bytearray(edges.get(level, b""))
            completed = []
            for h in incoming:
                edge += h
                count += 1
                if count % TILE_WIDTH == 0:
                    full = bytes(edge)
                    changed[Tile(level, count // TILE_WIDTH - 1)] = full
                    completed.append(_HashTile(full).node(0, TILE_WIDTH))
                    edge = bytearray()
            if edge:
                changed[Tile(level, count // TILE_WIDTH, len(edge) // HASH_SIZE)] = bytes(edge)
            edges[level] = bytes(edge)
            incoming, level = completed, level + 1
        data_edge, count = list(self.data_edge), self.size
        for leaf in leaves:
            data_edge.append(leaf)
            count += 1
            if count % TILE_WIDTH == 0:
                changed[Tile(DATA_LEVEL, count // TILE_WIDTH - 1)] = b"".join(data_edge)
                data_edge = []
        if data_edge:
            tile = Tile(DATA_LEVEL, count // TILE_WIDTH, len(data_edge))
            changed[tile] = b"".join(data_edge)
        return TreeState(count, edges, tuple(data_edge)), changed


class _HashTile:
    __slots__ = ("levels",)

    def __init__(self, data: bytes) -> None:
        self.levels: list[list[bytes]] = [
            [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]
        ]

    def extended(self, data: bytes) -> _HashTile:
        """This tile grown to ``data``, which begins with this tile's hashes: the nodes
        built so far are kept (a node covers only hashes both have), the new ones are
        hashed, so an edge that grows by one hash costs a hash per level built, not
        the whole tile again."""
        grown = _HashTile.__new__(_HashTile)
        known = self.levels[0]
        added = range(len(known) * HASH_SIZE, len(data), HASH_SIZE)
        grown.levels = [known + [data[i : i + HASH_SIZE] for i in added]]
        for built in self.levels[1:]:
            below = grown.levels[-1]
            pairs = range(len(built), len(below) // 2)
            grown.levels.append(built + [node_hash(below[2 * i], below[2 * i + 1]) for i in pairs])
        return grown

    def node(self, first: int, count: int) -> bytes:
        rel = count.bit_length() - 1
        while len(self.levels) <= rel:
            below = self.levels[-1]
            pairs = range(0, len(below) - 1, 2)  # a partial tile's odd tail has no parent
            self.levels.append([node_hash(below[i], below[i + 1]) for i in pairs])
        return self.levels[rel][first >> rel]


class TileReader:
    """Reads full tiles through an LRU, verifying each against the tree on load:
    a hash tile must hash to its parent hash one tile level up (itself verified,
    up to the in-memory edge the checkpoint signs), a data tile's leaves must hash
    to its level-0 tile. A mismatch raises ``LogCorrupted``."""

    def __init__(self, storage: TileStorage, hash_tiles: int = 1024, data_tiles: int = 32) -> None:
        self.storage = storage
        self._hash: OrderedDict[Tile, _HashTile] = OrderedDict()
        self._data: OrderedDict[Tile, bytes] = OrderedDict()
        self._hash_limit, self._data_limit = hash_tiles, data_tiles
        self._edges: dict[bytes, _HashTile] = {}  # keyed by content: never stale
        self._last_edge: dict[int, tuple[bytes, _HashTile]] = {}  # by level: grown, not rebuilt
        self.reads = 0  # storage reads, for tests and metrics

    def add_full(self, tile: Tile, data: bytes) -> None:
        """Remember a full tile just committed (no read-back needed)."""
        if tile.level == DATA_LEVEL:
            _lru_put(self._data, tile, data, self._data_limit)
        else:
            _lru_put(self._hash, tile, _HashTile(data), self._hash_limit)

    def full_tile_bytes(self, state: TreeState, tile: Tile) -> bytes:
        if tile.level == DATA_LEVEL:
            return self._data_tile(state, tile.index)
        return b"".join(self._hash_tile(state, tile).levels[0])

    def _read(self, tile: Tile) -> bytes:
        self.reads += 1
        data = self.storage.read(tile.path)
        if data is None:
            raise LogCorrupted(f"tile {tile.path} is missing from storage")
        if tile.level != DATA_LEVEL and len(data) != FULL_TILE_BYTES:
            raise LogCorrupted(f"tile {tile.path} has {len(data)} bytes, not {FULL_TILE_BYTES}")
        return data

    def _hash_tile(self, state: TreeState, tile: Tile) -> _HashTile:
        cached = self._hash.get(tile)
        if cached is not None:
            self._hash.move_to_end(tile)
            return cached
        loaded = _HashTile(self._read(tile))
        parent = self.node(state, TILE_HEIGHT * (tile.level + 1), tile.index)
        if loaded.node(0, TILE_WIDTH) != parent:
            raise LogCorrupted(f"tile {tile.path} does not hash to its parent")
        _lru_put(self._hash, tile, loaded, self._hash_limit)
        return loaded

    def _data_tile(self, state: TreeState, index: int) -> bytes:
        tile = Tile(DATA_LEVEL, index)
        cached = self._data.get(tile)
        if cached is not None:
            self._data.move_to_end(tile)
            return cached
        data = self._read(tile)
        leaves = decode_data_tile(data)
        if len(leaves) != TILE_WIDTH:
            raise LogCorrupted(f"data tile {tile.path} holds {len(leaves)} entries")
        expected = self._hash_tile(state, Tile(0, index)).levels[0]
        if [leaf.leaf_hash() for leaf in leaves] != expected:
            raise LogCorrupted(f"entries in {tile.path} do not match their leaf hashes")
        _lru_put(self._data, tile, data, self._data_limit)
        return data

    def node(
        self, state: TreeState, level: int, index: int, pending: dict[Tile, bytes] | None = None
    ) -> bytes:
        """Hash of the complete subtree (level, index) of the tree ``state``;
        ``pending`` holds full tiles of ``state`` not yet written."""
        tile_level, tile_index, first, count = node_location(level, index)
        edge = state.edge_tile(tile_level)
        if edge is not None and tile_index == edge.index:
            hashes = state.edges[tile_level]
            edge_tree = self._edges.get(hashes)
            if edge_tree is None:
                if len(self._edges) >= 4 * (MAX_LEVEL + 1):
                    self._edges.clear()
                last = self._last_edge.get(tile_level)
                if last is not None and len(last[0]) < len(hashes) and hashes.startswith(last[0]):
                    edge_tree = last[1].extended(hashes)  # the edge the last batch made, grown
                else:
                    edge_tree = _HashTile(hashes)
                self._edges[hashes] = edge_tree
                self._last_edge[tile_level] = (hashes, edge_tree)
            return edge_tree.node(first, count)
        tile = Tile(tile_level, tile_index)
        if pending and tile in pending:
            return _HashTile(pending[tile]).node(first, count)
        return self._hash_tile(state, tile).node(first, count)

    def leaves(self, state: TreeState, start: int, end: int) -> list[TileLeaf]:
        """Decoded TileLeaf of every index in [start, end) of ``state``."""
        out: list[TileLeaf] = []
        edge = state.edge_tile(DATA_LEVEL)
        for tile_index in range(start // TILE_WIDTH, (end - 1) // TILE_WIDTH + 1):
            base = tile_index * TILE_WIDTH
            lo, hi = max(start, base) - base, min(end, base + TILE_WIDTH) - base
            if edge is not None and tile_index == edge.index:
                out.extend(TileLeaf.decode(b) for b in state.data_edge[lo:hi])
            else:
                out.extend(decode_data_tile(self._data_tile(state, tile_index))[lo:hi])
        return out


def _lru_put(lru: OrderedDict, tile: Tile, value: object, limit: int) -> None:
    lru[tile] = value
    lru.move_to_end(tile)
    while len(lru) > limit:
        lru.popitem(last=False)
