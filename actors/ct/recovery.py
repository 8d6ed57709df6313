"""Bring a log back from storage after a restart or a crash (crash-only: same path).

Trust rule: the checkpoint is the commit record. Its tree size N and root are
the only facts taken as given; tiles are believed only as far as they agree
with it. Tiles for indices >= N may exist (a batch wrote its tiles and died
before its checkpoint); they are ignored here and overwritten by the next
batch, which restarts at N. Because a tile only grows, the committed prefix of
an edge tile can also be sliced from a wider or full version of it.

``load_state`` reads the edge (rightmost partial) tile of every level, checks
the data edge against the level-0 edge, and recomputes the root: a mismatch
with the checkpoint is ``LogCorrupted``. ``sync_index`` drops index rows the
checkpoint does not cover and adds the ones it lacks, reading data tiles.

``stale_partials`` finds the garbage a crash can leave: superseded or
uncommitted partial tiles (deletes the log had scheduled but not done). Beside
each edge tile, every other width is stale (returned: the log deletes them
after its grace period, as if just superseded). Partial versions of the last
``ORPHAN_LOOKBACK_TILES`` full tiles of each level are deleted here and now (the
log deletes them as soon as the full tile is committed; only the batch in
flight at a crash, at most ``max_batch`` entries, can have left some). Only
tiles that the checkpoint does not need are ever touched.
"""

from __future__ import annotations

from ._tree import TileReader, TreeState
from .entries import TileLeaf, data_tile_offsets
from .errors import LogCorrupted, MalformedStructure, TileNotFound
from .index import EntryIndex
from .merkle import leaf_hash, range_hash
from .rfc6962 import encode_merkle_tree_leaf
from .storage import TileStorage
from .tiles import (
    DATA_LEVEL,
    HASH_SIZE,
    MAX_LEVEL,
    TILE_WIDTH,
    Tile,
    edge_tiles,
    hashes_at_level,
    parse_tile_path,
    partial_tiles,
)

INDEX_CHUNK_TILES = 16
ORPHAN_LOOKBACK_TILES = 256
"""Full tiles per level whose partial versions are swept on open: 65,536 entries,
the largest batch the CT log's config allows."""


def _read_prefix(storage: TileStorage, tile: Tile) -> bytes:
    """The committed partial tile, or the same prefix of a wider/full version."""
    data = storage.read(tile.path)
    if data is not None:
        return data
    for width in range(tile.width + 1, TILE_WIDTH + 1):
        wider = storage.read(Tile(tile.level, tile.index, width).path)
        if wider is not None:
            return wider
    raise LogCorrupted(f"tile {tile.path} of the checkpointed tree is missing")


def load_state(storage: TileStorage, reader: TileReader, size: int, root: bytes) -> TreeState:
    edges: dict[int, bytes] = {}
    for tile in edge_tiles(size):
        data = _read_prefix(storage, tile)[: tile.width * HASH_SIZE]
        if len(data) != tile.width * HASH_SIZE:
            raise LogCorrupted(f"tile {tile.path} is shorter than its width")
        edges[tile.level] = data
    data_edge: list[bytes] = []
    if size % TILE_WIDTH:
        tile = Tile(DATA_LEVEL, size // TILE_WIDTH, size % TILE_WIDTH)
        data = _read_prefix(storage, tile)
        try:
            ends = data_tile_offsets(data)
        except MalformedStructure as exc:
            raise LogCorrupted(f"data tile {tile.path} does not parse: {exc}") from None
        if len(ends) < tile.width:
            raise LogCorrupted(f"data tile {tile.path} holds fewer than {tile.width} entries")
        starts = [0, *ends]
        data_edge = [data[starts[i] : ends[i]] for i in range(tile.width)]
        level0 = edges[0]
        for i, raw in enumerate(data_edge):
            entry = TileLeaf.decode(raw).timestamped_entry
            if leaf_hash(encode_merkle_tree_leaf(entry)) != level0[i * 32 : (i + 1) * 32]:
                raise LogCorrupted(f"entry {tile.index * TILE_WIDTH + i} mismatches its leaf hash")
    state = TreeState(size, edges, tuple(data_edge))
    computed = range_hash(lambda lvl, idx: reader.node(state, lvl, idx), 0, size)
    if computed != root:
        raise LogCorrupted(
            f"the tiles give root {computed.hex()} for size {size}, the checkpoint says "
            f"{root.hex()}: restore the storage from a backup"
        )
    return state


def sync_index(index: EntryIndex, reader: TileReader, state: TreeState) -> None:
    if index.high_water > state.size:
        index.truncate(state.size)
    pos = index.high_water
    while pos < state.size:
        end = min(state.size, (pos // TILE_WIDTH + INDEX_CHUNK_TILES) * TILE_WIDTH)
        rows = []
        for i, leaf in enumerate(reader.leaves(state, pos, end), pos):
            entry = leaf.timestamped_entry
            rows.append((i, leaf.leaf_hash(), entry.identity(), entry.timestamp))
        index.add(rows, end)
        pos = end


def stale_partials(storage: TileStorage, size: int) -> list[Tile]:
    """Delete partial versions of recent full tiles; return the stale widths
    stored beside each partial tile of ``size`` (never that tile itself)."""
    for level in (DATA_LEVEL, *range(MAX_LEVEL + 1)):
        full = hashes_at_level(level, size) // TILE_WIDTH
        for index in range(max(0, full - ORPHAN_LOOKBACK_TILES), full):
            storage.delete_prefix(Tile(level, index).path + ".p")
    stale = []
    for edge in partial_tiles(size):
        for key in storage.list_prefix(edge.full().path + ".p"):
            try:
                tile = parse_tile_path(key)
            except TileNotFound:
                continue  # not ours to delete
            if tile.full() == edge.full() and tile.width != edge.width:
                stale.append(tile)
    return stale
