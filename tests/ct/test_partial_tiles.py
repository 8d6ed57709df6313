"""Superseded partial tiles: deleted after a grace period, never one a checkpoint
still in its grace period needs, and whatever a crash left behind is collected."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from trustchain.actors.ct import (
    LocalDirectoryStorage,
    Tile,
    TileLog,
    decode_data_tile,
    parse_tile_path,
    verify_inclusion,
)
from trustchain.actors.ct.cleanup import DELETES_PER_CLEANUP
from trustchain.actors.ct.tiles import partial_tiles

from .conftest import fake_entries

GRACE_MS = 2_000
STEP_MS = 100  # one batch every 100 ms: 20 batches inside one grace period


def partial_files(root: Path) -> dict[str, int]:
    """Every stored partial tile: path -> bytes."""
    return {
        p.relative_to(root).as_posix(): p.stat().st_size
        for p in (root / "tile").rglob("*")
        if p.is_file() and p.parent.name.endswith(".p")
    }


def needed(size: int) -> set[str]:
    return {t.path for t in partial_tiles(size)}


def check_reads(log: TileLog, storage: LocalDirectoryStorage) -> None:
    """Inclusion proofs and get-entries verify at the current size, and every
    partial tile the checkpoint names is stored and is what the log serves."""
    size, root = log.size, log.root
    leaves = log.entries(0, size)
    for index in range(size):
        proof = log.inclusion_proof(index, size)
        verify_inclusion(leaves[index].leaf_hash(), index, size, proof, root)
    assert len(log.get_entries(0, size)) == size
    for path in needed(size):
        assert storage.read(path) == log.tile(path)


def test_a_hundred_small_batches_keep_partial_tiles_bounded(open_log, tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path / "tiles")
    log = open_log(storage, now_ms=0, partial_grace_ms=GRACE_MS)
    rng = random.Random(7)
    now, peak_files, peak_bytes = 0, 0, 0
    superseded: list[tuple[int, int]] = []  # (when, size) of each superseded checkpoint
    for _ in range(100):
        now += STEP_MS
        old_size = log.size
        log.append_batch(fake_entries(log.size, rng.randint(1, 6)), now)
        superseded.append((now, old_size))
        within_grace = [size for when, size in superseded if now < when + GRACE_MS]
        files = partial_files(storage.root)
        # every partial tile of the checkpoint, or of one superseded less than
        # GRACE_MS ago, is stored, unless its tile is full by now (then readers
        # fall back to the full tile, as tlog-tiles tells them to)
        for size in [log.size, *within_grace]:
            for tile in partial_tiles(size):
                if (tile.index + 1) * 256 > log.size >> (8 * max(tile.level, 0)):
                    assert tile.path in files, (size, tile.path)
        peak_files = max(peak_files, len(files))
        peak_bytes = max(peak_bytes, sum(files.values()))
    assert 256 < log.size < 512  # crossed a tile boundary on the way
    # at most one version per batch of the grace period, plus the current ones
    versions = GRACE_MS // STEP_MS + 1
    assert peak_files <= 3 * versions
    data_tile = storage.read("tile/data/000")
    assert data_tile is not None
    assert peak_bytes <= versions * (len(data_tile) + 256 * 32 + 32)  # a full tile per version
    check_reads(log, storage)

    log.refresh_checkpoint(now + GRACE_MS)  # the grace period is over: only these remain
    assert set(partial_files(storage.root)) == needed(log.size)
    assert log.retiring_tiles == 0
    check_reads(log, storage)
    log.close()
    reopened = open_log(storage, now_ms=now + GRACE_MS)
    assert (reopened.size, reopened.root) == (log.size, log.root)
    check_reads(reopened, storage)


def test_a_reader_of_a_superseded_checkpoint_can_read_its_partial_tiles_for_a_while(
    open_log, tmp_path: Path
) -> None:
    storage = LocalDirectoryStorage(tmp_path / "tiles")
    log = open_log(storage, now_ms=0, partial_grace_ms=GRACE_MS)
    log.append_batch(fake_entries(0, 10), 1_000)
    old = sorted(needed(10))  # a reader fetched the checkpoint of size 10
    data_10 = storage.read("tile/data/000.p/10")
    log.append_batch(fake_entries(10, 5), 1_500)
    log.refresh_checkpoint(1_000 + GRACE_MS)  # 1.5 s after the new checkpoint
    assert all(storage.read(path) is not None for path in old)
    assert data_10 is not None and decode_data_tile(data_10) == log.entries(0, 10)
    log.refresh_checkpoint(1_500 + GRACE_MS)
    assert [storage.read(path) for path in old] == [None, None]
    assert set(partial_files(storage.root)) == needed(15)


def test_a_wall_clock_stepped_back_does_not_stall_the_deletes(open_log, tmp_path: Path) -> None:
    storage = LocalDirectoryStorage(tmp_path / "tiles")
    log = open_log(storage, now_ms=10_000_000, partial_grace_ms=GRACE_MS)
    log.append_batch(fake_entries(0, 3), 10_000_000)
    log.append_batch(fake_entries(3, 3), 10_000_100)
    log.append_batch(fake_entries(6, 3), 100)  # NTP stepped the clock back by hours
    log.refresh_checkpoint(100 + GRACE_MS)
    assert set(partial_files(storage.root)) == needed(9)


class CrashDuringDelete(LocalDirectoryStorage):
    """Deletes the first object asked for, then 'crashes' (the process dies)."""

    armed = False

    def delete_many(self, keys) -> None:  # type: ignore[no-untyped-def]
        keys = list(keys)
        if self.armed:
            super().delete_many(keys[:1])
            raise KeyboardInterrupt("simulated crash in the middle of a cleanup")
        super().delete_many(keys)


def test_garbage_a_crash_left_is_collected_after_the_next_open(open_log, tmp_path: Path) -> None:
    storage = CrashDuringDelete(tmp_path / "tiles")
    log = open_log(storage, now_ms=0, partial_grace_ms=GRACE_MS)
    for i in range(40):  # 7, 14, ... 252, then across the boundary: 259, 266, 273, 280
        log.append_batch(fake_entries(log.size, 7), 1_000 + i)
    storage.armed = True
    with pytest.raises(KeyboardInterrupt):  # dies after deleting 1 of 6 due versions
        log.refresh_checkpoint(1_100 + GRACE_MS)
    size, root = log.size, log.root
    # a deleted partial version of a full tile that the crash brings back, and a
    # version past the checkpoint written by a batch that died before its checkpoint
    full_data = storage.read("tile/data/000")
    assert full_data is not None
    undone, uncommitted = "tile/data/000.p/252", "tile/0/001.p/30"
    ahead = "tile/data/002.p/5"  # ... and past the edge tile
    storage.write_many({undone: full_data[:1000], uncommitted: b"u" * 960, ahead: b"a"})
    stale = set(partial_files(storage.root)) - needed(size)
    assert {undone, uncommitted, ahead} < stale and len(stale) == 3 + 6 - 1
    del log  # the process died: no close, the schedule is lost

    storage.armed = False
    log = open_log(storage, now_ms=50_000, partial_grace_ms=GRACE_MS)
    assert (log.size, log.root) == (size, root)
    assert log.retiring_tiles == len(stale) - 2  # found again, deleted after the grace period
    log.refresh_checkpoint(50_000 + GRACE_MS - 1)  # the swept ones go in the next cleanup
    assert set(partial_files(storage.root)) - needed(size) == stale - {undone, ahead}
    log.refresh_checkpoint(50_000 + GRACE_MS)
    assert set(partial_files(storage.root)) == needed(size)
    check_reads(log, storage)


def test_a_version_rewritten_after_a_crash_is_kept_while_it_is_needed(
    open_log, tmp_path: Path
) -> None:
    storage = LocalDirectoryStorage(tmp_path / "tiles")
    log = open_log(storage, now_ms=0, partial_grace_ms=GRACE_MS)
    log.append_batch(fake_entries(0, 5), 1_000)
    storage.write_many({"tile/data/000.p/8": b"uncommitted", "tile/0/000.p/8": b"u" * 256})
    log.close()
    log = open_log(storage, now_ms=2_000, partial_grace_ms=GRACE_MS)  # width 8 is stale now
    log.append_batch(fake_entries(5, 3), 2_500)  # ... and needed again: size 8
    log.refresh_checkpoint(2_000 + GRACE_MS)  # the stale width 8 was due now
    check_reads(log, storage)  # ... but it is the checkpoint's: kept
    log.refresh_checkpoint(2_500 + GRACE_MS)
    assert set(partial_files(storage.root)) == needed(8)


def test_the_sweep_after_an_open_spares_a_tile_the_log_has_grown_into(
    open_log, tmp_path: Path
) -> None:
    storage = LocalDirectoryStorage(tmp_path / "tiles")
    log = open_log(storage, now_ms=0, partial_grace_ms=GRACE_MS)
    log.append_batch(fake_entries(0, 250), 1_000)
    storage.write_many({"tile/data/001.p/100": b"u"})  # a batch died before its checkpoint
    log.close()
    log = open_log(storage, now_ms=2_000, partial_grace_ms=GRACE_MS)
    log.append_batch(fake_entries(250, 10), 2_000)  # tile 1 is now the edge, at width 4
    check_reads(log, storage)
    log.refresh_checkpoint(2_000 + GRACE_MS)
    assert set(partial_files(storage.root)) == needed(260)


def test_the_partial_tiles_of_a_tree_size() -> None:
    assert partial_tiles(0) == []
    assert partial_tiles(256) == [Tile(1, 0, 1)]
    assert [t.path for t in partial_tiles(70_000)] == [
        "tile/data/273.p/112",
        "tile/0/273.p/112",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    ]
    assert all(parse_tile_path(t.path) == t for t in partial_tiles(70_000))


def test_the_versions_of_a_full_tile_go_a_few_per_cleanup_never_all_in_one_commit(
    open_log, tmp_path: Path
) -> None:
    """256 one-entry batches leave up to 256 versions of the tile they fill; deleting
    them inside one commit stalled appends for 50-80 ms."""
    storage = LocalDirectoryStorage(tmp_path / "tiles")
    log = open_log(storage, now_ms=0, partial_grace_ms=10**9)  # nothing else due
    deleted_per_call: list[int] = []
    delete_many = storage.delete_many

    def counting(keys):  # type: ignore[no-untyped-def]
        keys = list(keys)
        deleted_per_call.append(len(keys))
        delete_many(keys)

    delete_prefix = storage.delete_prefix

    def counting_prefix(prefix):  # type: ignore[no-untyped-def]
        deleted_per_call.append(len(storage.list_prefix(prefix)))
        delete_prefix(prefix)

    storage.delete_many = counting  # type: ignore[method-assign]
    storage.delete_prefix = counting_prefix  # type: ignore[method-assign]
    now = 0
    for _ in range(256):
        now += 1
        log.append_batch(fake_entries(log.size, 1), now)
    full_tile_versions = tiles_dir(storage) / "data" / "000.p"
    assert log.size == 256 and storage.read("tile/data/000") is not None
    assert max(deleted_per_call, default=0) <= DELETES_PER_CLEANUP
    for _ in range(20):  # later commits and refreshes finish the job
        now += 1
        log.refresh_checkpoint(now)
    assert not full_tile_versions.exists()
    assert max(deleted_per_call) <= DELETES_PER_CLEANUP
    check_reads(log, storage)


def tiles_dir(storage: LocalDirectoryStorage) -> Path:
    return storage.root / "tile"
