"""C2SP tlog-tiles / static-ct-api tile coordinates, paths and proof planning.

A tile at level L, index N holds up to 256 consecutive hashes of tree level
8L: hash i is MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L]). Level-0
tiles hold leaf hashes; a full tile is 8,192 bytes. For tree size s the tile
(L, N) has width min(256, (s >> 8L) - 256N); a width below 256 is a partial tile
served at ``.p/<W>``. Paths: ``tile/<L>/<N>[.p/<W>]`` for hashes and
``tile/data/<N>[.p/<W>]`` for entries, with N in 3-digit groups, all but the
last prefixed with ``x`` (1234067 -> ``x001/x234/067``).

Invariant relied on by the log: a tile only ever grows, so a partial tile is a
prefix of every wider version of it, and any complete subtree of level h lies
in exactly one tile of level h // 8. Node (h, i) is hash i of a tile when
h % 8 == 0; otherwise it is the MTH of 2**(h % 8) adjacent hashes of one tile.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from . import merkle
from .errors import TileNotFound

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH_SIZE = 32
DATA_LEVEL = -1
"""``Tile.level`` of data tiles (``tile/data/...``)."""
MAX_LEVEL = 5  # static-ct-api: levels 0..5; 2**40 leaves need levels 0..4


@dataclass(frozen=True, slots=True, order=True)
class Tile:
    level: int  # 0..5 for hash tiles, DATA_LEVEL for data tiles
    index: int
    width: int = TILE_WIDTH

    @property
    def is_partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        level = "data" if self.level == DATA_LEVEL else str(self.level)
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{level}/{encode_index(self.index)}{suffix}"

    def full(self) -> Tile:
        return Tile(self.level, self.index)


def encode_index(n: int) -> str:
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


_PATH = re.compile(r"tile/(data|0|[1-9]\d*)/((?:x\d{3}/)*)(\d{3})(?:\.p/([1-9]\d*))?")


def parse_tile_path(path: str) -> Tile:
    """The tile a path names; ``TileNotFound`` if it is not a canonical tile path."""
    m = _PATH.fullmatch(path)
    if m is None:
        raise TileNotFound(f"{path!r} is not a tile path (tile/<L>/<N>[.p/<W>])")
    level_s, prefix, last, width_s = m.groups()
    level = DATA_LEVEL if level_s == "data" else int(level_s)
    groups = [g[1:] for g in prefix.split("/") if g] + [last]
    if level > MAX_LEVEL or (len(groups) > 1 and groups[0] == "000"):
        raise TileNotFound(f"{path!r} is not a canonical tile path")
    width = int(width_s) if width_s else TILE_WIDTH
    if width_s and width >= TILE_WIDTH:
        raise TileNotFound(f"{path!r}: a partial tile has width 1..255")
    return Tile(level, int("".join(groups)), width)


def hashes_at_level(level: int, size: int) -> int:
    """How many level-``8*level`` hashes a tree of ``size`` leaves has (data: leaves)."""
    return size >> (TILE_HEIGHT * max(level, 0))


def tile_for_size(level: int, index: int, size: int) -> Tile | None:
    """Tile (level, index) as it stands in a tree of ``size``; None if empty there."""
    width = min(TILE_WIDTH, hashes_at_level(level, size) - index * TILE_WIDTH)
    return Tile(level, index, width) if width > 0 else None


def edge_tiles(size: int) -> list[Tile]:
    """The rightmost non-empty partial tile of each hash level for ``size``."""
    out = []
    level = 0
    while hashes_at_level(level, size):
        count = hashes_at_level(level, size)
        if count % TILE_WIDTH:
            out.append(Tile(level, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return out


def partial_tiles(size: int) -> list[Tile]:
    """Every partial tile of a tree of ``size``: the data edge, then each hash level's."""
    data = tile_for_size(DATA_LEVEL, size // TILE_WIDTH, size)
    return ([data] if data is not None else []) + edge_tiles(size)


def changed_tiles(old_size: int, new_size: int) -> list[Tile]:
    """Every hash and data tile whose content differs between the two sizes."""
    out = []
    for level in [DATA_LEVEL, *range(MAX_LEVEL + 1)]:
        before, after = hashes_at_level(level, old_size), hashes_at_level(level, new_size)
        if after == before:
            continue
        for index in range(before // TILE_WIDTH, (after - 1) // TILE_WIDTH + 1):
            tile = tile_for_size(level, index, new_size)
            assert tile is not None
            out.append(tile)
    return out


def node_location(level: int, index: int) -> tuple[int, int, int, int]:
    """(tile_level, tile_index, first, count): node (level, index) is the MTH of
    hashes [first, first+count) of that tile (count is 1 on a tile level)."""
    tile_level, rel = divmod(level, TILE_HEIGHT)
    first = index << rel
    return tile_level, first // TILE_WIDTH, first % TILE_WIDTH, 1 << rel


def tiles_for_nodes(nodes: Iterable[tuple[int, int]], size: int) -> list[Tile]:
    out = set()
    for level, index in nodes:
        tile_level, tile_index, _, _ = node_location(level, index)
        tile = tile_for_size(tile_level, tile_index, size)
        assert tile is not None, "a complete node of the tree lies in a non-empty tile"
        out.add(tile)
    return sorted(out)


class _Recorder:
    def __init__(self) -> None:
        self.nodes: list[tuple[int, int]] = []

    def __call__(self, level: int, index: int) -> bytes:
        self.nodes.append((level, index))
        return b"\x00" * HASH_SIZE


def tiles_for_inclusion(index: int, size: int) -> list[Tile]:
    """The tiles (as of ``size``) that an inclusion proof reads: O(log n)."""
    rec = _Recorder()
    merkle.inclusion_proof(rec, index, size)
    return tiles_for_nodes(rec.nodes, size)


def tiles_for_consistency(size1: int, size2: int) -> list[Tile]:
    rec = _Recorder()
    merkle.consistency_proof(rec, size1, size2)
    return tiles_for_nodes(rec.nodes, size2)


def tiles_for_root(size: int) -> list[Tile]:
    rec = _Recorder()
    merkle.range_hash(rec, 0, size)
    return tiles_for_nodes(rec.nodes, size)
