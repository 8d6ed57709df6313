"""Crash safety: an acknowledged entry survives any crash, and every tree head
published before a crash is consistent with the tree after it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trustchain.actors.ct import (
    LocalDirectoryStorage,
    LogCorrupted,
    LogUnavailable,
    TileLog,
    merkle,
    verify_consistency,
    verify_inclusion,
)
from trustchain.actors.ct.tiles import partial_tiles

from . import crash_writer
from .conftest import fake_entries


class CrashBeforeCheckpoint(LocalDirectoryStorage):
    """Writes tiles normally, then 'crashes' instead of writing the checkpoint."""

    armed = False

    def write_many(self, objects) -> None:  # type: ignore[no-untyped-def]
        if self.armed and "checkpoint" in objects:
            raise OSError("simulated crash before the checkpoint")
        super().write_many(objects)


def test_reopening_gives_the_same_tree(open_log) -> None:
    log = open_log()
    log.append_batch(fake_entries(0, 700), 1_000)
    size, root, sth = log.size, log.root, log.sth()
    log.close()
    reopened = open_log()
    assert (reopened.size, reopened.root, reopened.sth()) == (size, root, sth)
    assert reopened.inclusion_proof(699, 700) == log.inclusion_proof(699, 700)


def test_tiles_written_without_a_checkpoint_are_ignored_and_overwritten(
    open_log, tmp_path: Path
) -> None:
    storage = CrashBeforeCheckpoint(tmp_path / "tiles")
    log = open_log(storage)
    log.append_batch(fake_entries(0, 200), 1_000)
    old_size, old_root = log.size, log.root
    storage.armed = True
    with pytest.raises(OSError):
        log.append_batch(fake_entries(200, 100, tag="lost"), 2_000)  # completes tile 0, then dies
    with pytest.raises(LogUnavailable):
        log.append_batch(fake_entries(300, 1), 3_000)
    assert (tmp_path / "tiles" / "tile" / "0" / "000").exists()  # written past the checkpoint
    log.close()

    storage.armed = False
    log = open_log(storage)
    assert (log.size, log.root) == (old_size, old_root)
    results = log.append_batch(fake_entries(200, 100, tag="kept"), 4_000)
    assert [r.leaf_index for r in results] == list(range(200, 300))
    assert not any(r.duplicate for r in results)
    verify_consistency(old_size, log.size, old_root, log.root, log.consistency_proof(200, 300))
    assert log.entries(250, 251)[0].timestamped_entry.certificate.startswith(b"kept-250")
    log.close()
    assert open_log(storage).root == log.root


def test_a_missing_partial_tile_is_recovered_from_a_wider_version(open_log, tmp_path: Path) -> None:
    storage = CrashBeforeCheckpoint(tmp_path / "tiles")
    log = open_log(storage)
    log.append_batch(fake_entries(0, 200), 1_000)
    root = log.root
    storage.armed = True
    with pytest.raises(OSError):
        log.append_batch(fake_entries(200, 100), 2_000)
    log.close()
    for level in ("0", "data"):
        (tmp_path / "tiles" / "tile" / level / "000.p" / "200").unlink()
    storage.armed = False
    assert open_log(storage).root == root  # sliced from the uncommitted full tiles


def test_a_crash_after_the_checkpoint_loses_only_index_rows(open_log, monkeypatch) -> None:
    log = open_log()
    log.append_batch(fake_entries(0, 10), 1_000)

    def crash(*args: object) -> None:
        raise OSError("simulated crash before the index commit")

    monkeypatch.setattr(log._index, "add", crash)
    with pytest.raises(OSError):
        log.append_batch(fake_entries(10, 5), 2_000)
    log.close()
    log = open_log()
    assert log.size == 15  # the checkpoint was durable: the entries are in the log
    [again] = log.append_batch(fake_entries(12, 1), 3_000)
    assert (again.leaf_index, again.duplicate, again.timestamp) == (12, True, 2_000)


def test_a_checkpoint_that_does_not_verify_stops_the_log_from_opening(
    open_log, tmp_path: Path
) -> None:
    open_log().append_batch(fake_entries(0, 3), 1_000)
    path = tmp_path / "tiles" / "checkpoint"
    path.write_bytes(path.read_bytes().replace(b"\n3\n", b"\n2\n"))
    with pytest.raises(LogCorrupted):
        open_log()


def _open_crash_log(root: Path, journal: bool, now_ms: int = 0) -> TileLog:
    key = crash_writer.KEY
    return TileLog.open(
        LocalDirectoryStorage(root / "tiles"),
        crash_writer.sign,
        key.public_key(),
        crash_writer.ORIGIN,
        root / "index.db",
        now_ms=now_ms,
        partial_grace_ms=crash_writer.GRACE_MS,
        journal=journal,
        materialize_ms=crash_writer.MATERIALIZE_MS,
    )


def _run_writer_until_killed(root: Path, run: int, rng: random.Random, journal: bool) -> list[str]:
    args = [str(root), str(run), str(rng.randrange(2**32)), *(["journal"] if journal else [])]
    proc = subprocess.Popen(
        [sys.executable, crash_writer.__file__, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    time.sleep(rng.uniform(0.0, 0.25))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    lines = out.splitlines()
    return lines[:-1] if out and not out.endswith("\n") else lines  # drop a torn last line


@pytest.mark.parametrize("journal", [False, True], ids=["tiles", "journal"])
def test_sigkilled_writer_never_loses_an_acknowledged_entry(tmp_path: Path, journal: bool) -> None:
    """20 writers killed at random moments, committing by rewriting the edge's tiles or
    by the journal's records (whose replay on open is then part of most restarts).
    After each restart: every acknowledged entry is stored at its index; the root
    recomputed from all stored leaves is the checkpoint root (so every one of them is
    in the tree); the inclusion proofs the log serves verify for this run's acks and a
    sample of older ones; and every tree head the writer published, and every earlier
    post-restart head, is consistent with the new one (earlier writers' heads were
    checked against those)."""
    rng = random.Random(20240601)
    acked: dict[int, bytes] = {}
    restart_heads: dict[int, bytes] = {}
    replayed = 0  # restarts that found acknowledged entries only in the journal
    for run in range(1, 21):
        new_acks: list[int] = []
        writer_heads: dict[int, bytes] = {}
        for line in _run_writer_until_killed(tmp_path, run, rng, journal):
            kind, *fields = line.split()
            if kind == "ack":
                index, writer_run, seq = map(int, fields)
                acked[index] = crash_writer.certificate(writer_run, seq)
                new_acks.append(index)
            else:
                writer_heads[int(fields[0])] = bytes.fromhex(fields[1])
        checkpoint = (tmp_path / "tiles" / "checkpoint").read_bytes().split(b"\n")
        log = _open_crash_log(tmp_path, journal)
        size, root = log.size, log.root
        assert max(acked, default=-1) < size
        replayed += int(checkpoint[1]) < size
        stored = log.entries(0, size) if size else []
        for index, cert in acked.items():
            assert stored[index].timestamped_entry.certificate == cert
        leaf_hashes = [leaf.leaf_hash() for leaf in stored]
        assert merkle.root_from_leaf_hashes(leaf_hashes) == root
        fresh = set(new_acks)
        older = [i for i in acked if i not in fresh]
        for index in new_acks + rng.sample(older, min(len(older), 100)):
            proof = log.inclusion_proof(index, size)
            verify_inclusion(leaf_hashes[index], index, size, proof, root)
        for old_size, old_root in {**writer_heads, **restart_heads}.items():
            proof = log.consistency_proof(old_size, size)
            verify_consistency(old_size, size, old_root, root, proof)
        restart_heads[size] = root
        log.close()
    assert len(acked) > 100  # the writers did make progress between kills
    assert bool(replayed) == journal  # without the journal the checkpoint is the commit
    log = _open_crash_log(tmp_path, journal, now_ms=10**9)  # later than every writer's clock
    for tick in range(20):  # the grace period, and the sweep of the crash's leftovers
        log.refresh_checkpoint(10**9 + crash_writer.GRACE_MS + tick)
    stored = {
        p.relative_to(tmp_path / "tiles").as_posix()
        for p in (tmp_path / "tiles" / "tile").rglob("*.p/*")
        if not p.name.startswith(".tmp-")
    }  # a write's temp file, killed: not a tile
    assert stored == {t.path for t in partial_tiles(log.size)}  # the crashes' garbage is gone
    log.close()
