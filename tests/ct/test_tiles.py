"""C2SP tlog-tiles coordinates, paths and proof planning."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustchain.actors.ct import tiles
from trustchain.actors.ct._tree import _HashTile
from trustchain.actors.ct.errors import TileNotFound
from trustchain.actors.ct.tiles import DATA_LEVEL, TILE_HEIGHT, TILE_WIDTH, Tile


def test_index_is_encoded_in_three_digit_groups_with_x_prefixes() -> None:
    assert tiles.encode_index(0) == "000"
    assert tiles.encode_index(999) == "999"
    assert tiles.encode_index(1000) == "x001/000"
    assert tiles.encode_index(1234067) == "x001/x234/067"


def test_paths_of_hash_data_and_partial_tiles() -> None:
    assert Tile(0, 1234067).path == "tile/0/x001/x234/067"
    assert Tile(2, 5, 17).path == "tile/2/005.p/17"
    assert Tile(DATA_LEVEL, 1000, 3).path == "tile/data/x001/000.p/3"


@pytest.mark.parametrize(
    "tile",
    [Tile(0, 0), Tile(5, 999), Tile(1, 1000, 1), Tile(DATA_LEVEL, 1234067, 255)],
)
def test_tile_paths_round_trip(tile: Tile) -> None:
    assert tiles.parse_tile_path(tile.path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",
        "tile/0/0001",
        "tile/00/000",
        "tile/6/000",
        "tile/0/x000/001",
        "tile/0/001/002",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/07",
        "tile/entries/000",
        "../checkpoint",
    ],
)
def test_non_canonical_tile_paths_are_rejected(path: str) -> None:
    with pytest.raises(TileNotFound):
        tiles.parse_tile_path(path)


def test_a_tree_of_70000_has_the_tiles_the_static_ct_api_example_lists() -> None:
    assert tiles.edge_tiles(70_000) == [Tile(0, 273, 112), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert tiles.tile_for_size(0, 272, 70_000) == Tile(0, 272)
    assert tiles.tile_for_size(1, 0, 70_000) == Tile(1, 0)
    assert tiles.tile_for_size(0, 274, 70_000) is None
    assert tiles.edge_tiles(256) == [Tile(1, 0, 1)]


def test_changed_tiles_covers_every_level_an_append_touches() -> None:
    changed = tiles.changed_tiles(255, 257)
    assert changed == [
        Tile(DATA_LEVEL, 0),
        Tile(DATA_LEVEL, 1, 1),
        Tile(0, 0),
        Tile(0, 1, 1),
        Tile(1, 0, 1),
    ]
    assert tiles.changed_tiles(10, 10) == []


def test_a_node_lies_in_one_tile_at_its_tile_level() -> None:
    assert tiles.node_location(0, 300) == (0, 1, 44, 1)
    assert tiles.node_location(3, 40) == (0, 1, 64, 8)
    assert tiles.node_location(8, 300) == (1, 1, 44, 1)
    assert tiles.node_location(15, 1) == (1, 0, 128, 128)


def test_proofs_need_a_logarithmic_number_of_tiles() -> None:
    size = 1_000_000
    for index in (0, 123_456, size - 1):
        needed = tiles.tiles_for_inclusion(index, size)
        assert 1 <= len(needed) <= 2 * 3  # at most a couple of tiles per level
        assert all(t.level in (0, 1, 2) for t in needed)
    assert len(tiles.tiles_for_consistency(123_457, size)) <= 6
    assert tiles.tiles_for_root(size) == tiles.edge_tiles(size)


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=12))
def test_a_grown_edge_tile_has_the_nodes_of_one_built_whole(steps: list[int]) -> None:
    """``_HashTile.extended`` keeps the nodes it had and hashes the new ones: every node of
    the grown tile is the node of the same hashes built from scratch."""
    hashes = [hashlib.sha256(i.to_bytes(2, "big")).digest() for i in range(TILE_WIDTH)]
    size = min(TILE_WIDTH, steps[0])
    grown = _HashTile(b"".join(hashes[:size]))
    for step in steps[1:]:
        grown.node(0, 1 << (size.bit_length() - 1))  # some of its levels built, as in use
        size = min(TILE_WIDTH, size + step)
        grown = grown.extended(b"".join(hashes[:size]))
        whole = _HashTile(b"".join(hashes[:size]))
        for height in range(TILE_HEIGHT + 1):
            for first in range(0, size - (1 << height) + 1, 1 << height):
                assert grown.node(first, 1 << height) == whole.node(first, 1 << height)
