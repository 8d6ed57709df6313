"""TileLog: appends, proofs from tiles, deduplication, the read API, typed errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pymerkle import InmemoryTree

from trustchain.actors.ct import (
    IndexOutOfRange,
    LocalDirectoryStorage,
    LogCorrupted,
    SignatureError,
    TileLog,
    TileNotFound,
    TreeSizeOutOfRange,
    decode_data_tile,
    merkle,
    parse_checkpoint,
    rfc6962,
    verify_consistency,
    verify_inclusion,
)
from trustchain.actors.ct.entries import fingerprint
from trustchain.actors.ct.rfc6962 import LogEntryType

from .conftest import ORIGIN, LogKey, fake_entries


class BigLog:
    def __init__(self, root: Path, log_key: LogKey) -> None:
        self.root, self.key = root, log_key
        self.reference = InmemoryTree(algorithm="sha256")
        log = self.open()
        rng = random.Random(21)
        while log.size < 70_000:
            batch = fake_entries(log.size, rng.choice([1, 7, 300, 1000, 2500]))
            log.append_batch(batch, 1_000 + log.size)
        for leaf in log.entries(0, log.size):
            self.reference.append_entry(leaf.merkle_tree_leaf())
        self.size = log.size
        log.close()

    def open(self) -> TileLog:
        storage = LocalDirectoryStorage(self.root / "tiles")
        return TileLog.open(storage, self.key.sign, self.key.public, ORIGIN, self.root / "idx.db")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, log_key: LogKey) -> BigLog:
    return BigLog(tmp_path_factory.mktemp("big"), log_key)


def test_appends_get_consecutive_indices_and_scts_carrying_them(open_log, log_key) -> None:
    log = open_log()
    results = log.append_batch(fake_entries(0, 5), 1_000)
    results += log.append_batch(fake_entries(5, 3), 2_000)
    assert [r.leaf_index for r in results] == list(range(8))
    assert [r.sct.leaf_index() for r in results] == list(range(8))
    assert log.size == 8 and log.sth().tree_size == 8 and log.sth().timestamp == 2_000
    for r, entry in zip(results, fake_entries(0, 8), strict=True):
        signed = entry.timestamped_entry(0).signed_entry()
        rfc6962.verify_sct(r.sct, log_key.public, LogEntryType.X509_ENTRY, signed)


def test_root_and_proofs_of_a_tiled_log_match_pymerkle(big: BigLog) -> None:
    log = big.open()
    ref = big.reference
    assert (log.size, log.root) == (big.size, ref.get_root(big.size))
    rng = random.Random(22)
    sizes = [1, 255, 256, 257, 65_535, 65_536, 65_537, big.size]
    sizes += [rng.randint(1, big.size) for _ in range(15)]
    for size in sizes:
        root = ref.get_root(size)
        assert log.root_at(size) == root
        for index in {0, size - 1, rng.randrange(size)}:
            path = log.inclusion_proof(index, size)
            assert path == list(ref.prove_inclusion(index + 1, size).path[1:])
            leaf = log.entries(index, index + 1)[0].leaf_hash()
            verify_inclusion(leaf, index, size, path, root)
    for _ in range(40):
        size2 = rng.randint(1, big.size)
        size1 = rng.randint(0, size2)
        proof = log.consistency_proof(size1, size2)
        root1 = ref.get_root(size1) if size1 else merkle.EMPTY_ROOT
        verify_consistency(size1, size2, root1, ref.get_root(size2), proof)


def test_a_cold_proof_reads_a_logarithmic_number_of_tiles(big: BigLog) -> None:
    log = big.open()
    before = log.tile_reads
    log.inclusion_proof(12_345, big.size)
    assert log.tile_reads - before <= 4  # one level-0 and one level-1 tile, maybe two
    before = log.tile_reads
    log.consistency_proof(33_333, big.size - 7)
    assert log.tile_reads - before <= 4


def test_served_tiles_hold_the_hashes_the_spec_defines(big: BigLog) -> None:
    log = big.open()
    level1 = log.tile("tile/1/000")
    assert len(level1) == 8192
    full0 = log.tile("tile/0/005")
    hashes = [full0[i : i + 32] for i in range(0, 8192, 32)]
    assert level1[32 * 5 : 32 * 6] == merkle.root_from_leaf_hashes(hashes)
    assert log.tile("tile/0/005.p/10") == full0[: 32 * 10]
    leaves = decode_data_tile(log.tile("tile/data/005"))
    assert [leaf.leaf_hash() for leaf in leaves] == hashes
    assert decode_data_tile(log.tile("tile/data/005.p/3")) == leaves[:3]
    edge = f"tile/0/{big.size // 256:03d}.p/{big.size % 256}"
    assert len(log.tile(edge)) == 32 * (big.size % 256)
    with pytest.raises(TileNotFound):
        log.tile(f"tile/0/{big.size // 256:03d}.p/{big.size % 256 + 1}")
    with pytest.raises(TileNotFound):
        log.tile("tile/0/x001/000")
    with pytest.raises(TileNotFound):
        log.tile("tile/../checkpoint")


def test_obsolete_partial_tiles_are_deleted_once_the_full_tile_exists(big: BigLog) -> None:
    tiles = big.root / "tiles" / "tile"
    partial_dirs = sorted(p.relative_to(tiles).as_posix() for p in tiles.rglob("*.p"))
    edge = f"{big.size // 256:03d}.p"
    assert partial_dirs == sorted(["0/" + edge, "data/" + edge, "1/001.p", "2/000.p"])


def test_resubmitting_a_certificate_returns_its_original_index_and_timestamp(open_log) -> None:
    log = open_log()
    first = log.append_batch(fake_entries(0, 3), 1_000)
    again = log.append_batch(fake_entries(1, 1) + fake_entries(3, 1) + fake_entries(3, 1), 2_000)
    assert [(r.leaf_index, r.timestamp, r.duplicate) for r in again] == [
        (1, 1_000, True),
        (3, 2_000, False),
        (3, 2_000, True),
    ]
    assert again[0].sct.extensions == first[1].sct.extensions
    assert log.size == 4
    log.close()
    reopened = open_log()
    [r] = reopened.append_batch(fake_entries(2, 1), 3_000)
    assert (r.leaf_index, r.duplicate) == (2, True)


def test_the_index_is_rebuilt_from_tiles_when_it_is_lost(open_log, tmp_path: Path) -> None:
    log = open_log()
    log.append_batch(fake_entries(0, 300), 1_000)
    leaf_hash = log.entries(123, 124)[0].leaf_hash()
    log.close()
    for f in tmp_path.glob("index.db*"):
        f.unlink()
    log = open_log()
    assert log.index_of(leaf_hash) == 123
    assert log.append_batch(fake_entries(299, 1), 2_000)[0].leaf_index == 299
    assert log.index_of(b"\x00" * 32) is None


def test_entries_and_get_entries_return_leaves_and_extra_data(open_log) -> None:
    log = open_log()
    log.append_batch(fake_entries(0, 4), 1_000)
    leaves = log.entries(1, 3)
    assert [leaf.timestamped_entry.certificate for leaf in leaves] == [
        e.certificate for e in fake_entries(1, 2)
    ]
    assert leaves[0].chain_fingerprints == (fingerprint(b"issuer-der-bytes"),)
    leaf_input, extra = log.get_entries(1, 2)[0]
    assert leaf_input == leaves[0].merkle_tree_leaf()
    assert extra == (3 + 16).to_bytes(3, "big") + (16).to_bytes(3, "big") + b"issuer-der-bytes"


def test_sth_and_checkpoint_describe_the_same_signed_tree_head(open_log, log_key) -> None:
    log = open_log(now_ms=500)
    assert (log.size, log.root, log.sth().timestamp) == (0, merkle.EMPTY_ROOT, 500)
    log.append_batch(fake_entries(0, 3), 1_000)
    sth = parse_checkpoint(log.checkpoint(), ORIGIN, log.log_id, log_key.public)
    assert sth == log.sth()
    sth.verify(log_key.public)
    assert log.refresh_checkpoint(5_000).timestamp == 5_000
    assert (log.sth().tree_size, log.sth().root_hash) == (3, sth.root_hash)


def test_timestamps_never_go_backwards(open_log) -> None:
    log = open_log()
    log.append_batch(fake_entries(0, 1), 10_000)
    [r] = log.append_batch(fake_entries(1, 1), 9_000)
    assert r.timestamp == 10_000 and log.sth().timestamp == 10_000


def test_requests_outside_the_tree_raise_typed_errors(open_log) -> None:
    log = open_log()
    log.append_batch(fake_entries(0, 10), 1_000)
    with pytest.raises(TreeSizeOutOfRange):
        log.inclusion_proof(0, 11)
    with pytest.raises(IndexOutOfRange):
        log.inclusion_proof(10, 10)
    with pytest.raises(TreeSizeOutOfRange):
        log.consistency_proof(5, 11)
    with pytest.raises(TreeSizeOutOfRange):
        log.consistency_proof(6, 5)
    with pytest.raises(IndexOutOfRange):
        log.entries(5, 5)
    with pytest.raises(IndexOutOfRange):
        log.entries(6, 3)
    with pytest.raises(IndexOutOfRange):
        log.entries(9, 11)
    with pytest.raises(TreeSizeOutOfRange):
        log.root_at(-1)
    assert TreeSizeOutOfRange.code == "tree_size_out_of_range"


def test_a_signer_that_is_not_the_log_key_is_refused(tmp_path: Path, log_key: LogKey) -> None:
    other = LogKey(seed=2)
    with pytest.raises(SignatureError):
        TileLog.open(
            LocalDirectoryStorage(tmp_path), other.sign, log_key.public, ORIGIN, tmp_path / "i.db"
        )


def test_a_damaged_full_tile_is_detected_when_a_proof_reads_it(open_log, tmp_path: Path) -> None:
    log = open_log()
    log.append_batch(fake_entries(0, 600), 1_000)
    log.close()
    path = tmp_path / "tiles" / "tile" / "0" / "001"
    data = bytearray(path.read_bytes())
    data[40] ^= 1
    path.write_bytes(bytes(data))
    log = open_log()  # the edge is intact, so the log opens...
    with pytest.raises(LogCorrupted):  # ...but will not serve a proof from the bad tile
        log.inclusion_proof(300, 600)
    with pytest.raises(LogCorrupted):
        log.entries(256, 260)


def test_a_damaged_edge_tile_stops_the_log_from_opening(open_log, tmp_path: Path) -> None:
    log = open_log()
    log.append_batch(fake_entries(0, 300), 1_000)
    log.close()
    path = tmp_path / "tiles" / "tile" / "data" / "001.p" / "44"
    path.write_bytes(path.read_bytes().replace(b"cert-299", b"cert-999"))
    with pytest.raises(LogCorrupted):
        open_log()
