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

Garbage a crash can leave: superseded partial tiles whose delete was
scheduled, begun or undone, and the partial tiles of a batch that died before
its checkpoint. ``stale_partials`` lists, beside each edge tile, the other
widths (the log deletes them after its grace period, as if just superseded).
``swept_tiles`` names the tiles that the batch in flight at a crash (at most
``SWEEP_BATCH`` entries) can have completed or written past the edge; the log
deletes their partial versions a few tiles at a time in its next cleanups, as
it deletes those of a tile completed by a batch. None of them is ever a tile
that the checkpoint needs.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    edge_tiles,
    parse_tile_path,
    partial_tiles,
)

INDEX_CHUNK_TILES = 16
SWEEP_BATCH = 65_536
"""The largest batch the CT log's config allows (``ctlog.max_batch``)."""


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


def swept_tiles(size: int) -> Iterator[Tile]:
    """Per level: the full tiles the last ``SWEEP_BATCH`` entries completed, and
    the tiles past the edge the next ``SWEEP_BATCH`` entries reach (not the edge);
    nearest the edge first, where a crash most likely left something. Lazy."""
    spans = []
    for level in (DATA_LEVEL, *range(MAX_LEVEL + 1)):
        shift = TILE_HEIGHT * max(level, 0)
        first = (max(0, size - SWEEP_BATCH) >> shift) // TILE_WIDTH
        full, past = divmod(size >> shift, TILE_WIDTH)
        reach = -(-((size + SWEEP_BATCH) >> shift) // TILE_WIDTH)
        spans.append((level, first, full, full + (past > 0), reach))
    for distance in range(max(max(f - a, r - n) for _, a, f, n, r in spans)):
        for level, first, full, ahead, reach in spans:
            if full - 1 - distance >= first:
                yield Tile(level, full - 1 - distance)
            if ahead + distance < reach:
                yield Tile(level, ahead + distance)


def stale_partials(storage: TileStorage, size: int, edges: list[Tile] | None = None) -> list[Tile]:
    """Every width stored beside a partial tile of ``size`` (or these of them),
    but that tile's own."""
    stale = []
    for edge in partial_tiles(size) if edges is None else edges:
        for key in storage.list_prefix(edge.full().path + ".p"):
            try:
                tile = parse_tile_path(key)
            except TileNotFound:
                continue  # not ours to delete
            if tile.full() == edge.full() and tile.width != edge.width:
                stale.append(tile)
    return stale
