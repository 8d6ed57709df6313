"""The journal: a batch is durable by one record; the storage's edge catches up later;
open replays what the objects do not hold yet, and refuses a journal that lies."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from trustchain.actors.ct import LocalDirectoryStorage, LogCorrupted, TileLog, merkle
from trustchain.actors.ct.checkpoint import parse_checkpoint
from trustchain.actors.ct.journal import JournalRecord
from trustchain.actors.ct.storage import FileJournal
from trustchain.actors.ct.tiles import partial_tiles

from .conftest import ORIGIN, LogKey, OpenLog, fake_entries

MATERIALIZE_MS = 100


def journaled(open_log: OpenLog, **kwargs: object) -> TileLog:
    return open_log(journal=True, materialize_ms=MATERIALIZE_MS, **kwargs)


def stored_size(tmp_path: Path) -> int:
    """The tree size the checkpoint object on disk says."""
    return int((tmp_path / "tiles" / "checkpoint").read_bytes().split(b"\n")[1])


def test_file_journal_keeps_whole_records_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path / "journal")
    journal.append(b"first")
    journal.append(b"")
    journal.append(b"third" * 100)
    journal.close()
    with open(tmp_path / "journal", "ab") as fh:  # a crash in the middle of an append
        fh.write(b"\x00\x00\x01\x00\x12\x34")
    reopened = FileJournal(tmp_path / "journal")
    assert reopened.records() == [b"first", b"", b"third" * 100]
    reopened.append(b"fourth")  # follows the last whole record, not the torn bytes
    assert FileJournal(tmp_path / "journal").records()[-1] == b"fourth"
    reopened.reset()
    assert FileJournal(tmp_path / "journal").records() == []


def test_a_flipped_bit_ends_the_records_there(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path / "journal")
    for payload in (b"one", b"two", b"three"):
        journal.append(payload)
    journal.close()
    data = bytearray((tmp_path / "journal").read_bytes())
    data[8 + 3 + 8] ^= 1  # the first octet of "two"
    (tmp_path / "journal").write_bytes(bytes(data))
    assert FileJournal(tmp_path / "journal").records() == [b"one"]


def test_a_record_whose_fdatasync_failed_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = FileJournal(tmp_path / "journal")
    journal.append(b"durable")

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError):
        journal.append(b"never acknowledged")
    monkeypatch.undo()
    assert FileJournal(tmp_path / "journal").records() == [b"durable"]
    journal.append(b"next")  # follows the last durable record
    assert FileJournal(tmp_path / "journal").records() == [b"durable", b"next"]


def test_record_round_trip() -> None:
    record = JournalRecord(300, (b"a" * 10, b"", b"c"), b"checkpoint\n")
    assert JournalRecord.decode(record.encode()) == record
    assert record.size_after == 303


def test_a_batch_commits_by_one_record_and_the_storage_catches_up(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = journaled(open_log, now_ms=1_000)
    log.append_batch(fake_entries(0, 5), 1_000)
    log.append_batch(fake_entries(5, 5), 1_050)
    assert log.size == 10
    assert stored_size(tmp_path) == 0  # the objects wait; the journal holds both batches
    assert not list((tmp_path / "tiles").glob("tile/data/*.p/*"))
    assert len(FileJournal(tmp_path / "tiles" / "journal").records()) == 2
    log.append_batch(fake_entries(10, 1), 1_000 + MATERIALIZE_MS)  # the interval is over
    assert stored_size(tmp_path) == 11
    assert FileJournal(tmp_path / "tiles" / "journal").records() == []
    assert (tmp_path / "tiles" / "checkpoint").read_bytes() == log.checkpoint()
    on_disk = {p.relative_to(tmp_path / "tiles").as_posix()
               for p in (tmp_path / "tiles" / "tile").rglob("*.p/*")}  # fmt: skip
    assert on_disk == {t.path for t in partial_tiles(11)}
    for tile in partial_tiles(11):
        assert (tmp_path / "tiles" / tile.path).read_bytes() == log.tile(tile.path)
    log.append_batch(fake_entries(11, 2), 1_150)
    log.refresh_checkpoint(1_160)  # an idle log's storage catches up at its next refresh
    assert stored_size(tmp_path) == 13


def test_reopening_replays_what_the_objects_do_not_hold(open_log: OpenLog, tmp_path: Path) -> None:
    log = journaled(open_log, now_ms=1_000)
    log.append_batch(fake_entries(0, 300), 1_000)  # a full tile, then a partial one
    log.append_batch(fake_entries(300, 7), 1_001)
    size, root, checkpoint = log.size, log.root, log.checkpoint()
    assert stored_size(tmp_path) == 0
    # no close: as after kill -9, the next open finds the journal as it was
    again = journaled(open_log, now_ms=2_000)
    assert (again.size, again.root, again.checkpoint()) == (size, root, checkpoint)
    assert stored_size(tmp_path) == 0  # opening writes nothing (a full disk still opens)
    leaves = [leaf.leaf_hash() for leaf in again.entries(0, size)]
    assert merkle.root_from_leaf_hashes(leaves) == root
    assert again.index_of(leaves[303]) == 303  # the index was brought up to date
    again.append_batch(fake_entries(307, 1), 2_000 + MATERIALIZE_MS)
    assert stored_size(tmp_path) == 308
    third = journaled(open_log, now_ms=3_000)
    assert third.size == 308 and third.root == again.root


def test_records_the_checkpoint_object_already_holds_are_skipped(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = journaled(open_log, now_ms=1_000)
    log.append_batch(fake_entries(0, 4), 1_000)
    journal = FileJournal(tmp_path / "tiles" / "journal")
    kept = journal.records()
    log.append_batch(fake_entries(4, 4), 1_000 + MATERIALIZE_MS)  # materialized: journal empty
    for payload in kept:  # as if the crash came between the checkpoint and the reset
        journal.append(payload)
    again = journaled(open_log, now_ms=2_000)
    assert (again.size, again.root) == (8, log.root)


def one_record(open_log: OpenLog, tmp_path: Path) -> tuple[TileLog, FileJournal, JournalRecord]:
    """A log of one batch of 4, its journal, and the journal's one record."""
    log = journaled(open_log, now_ms=1_000)
    log.append_batch(fake_entries(0, 4), 1_000)
    journal = FileJournal(tmp_path / "tiles" / "journal")
    (record,) = journal.records()
    return log, journal, JournalRecord.decode(record)


def test_a_journal_that_does_not_continue_the_tree_stops_the_log(
    open_log: OpenLog, tmp_path: Path
) -> None:
    _, journal, decoded = one_record(open_log, tmp_path)
    journal.reset()
    journal.append(JournalRecord(1, decoded.leaves, decoded.checkpoint).encode())
    with pytest.raises(LogCorrupted, match="does not continue"):
        journaled(open_log)


def test_a_journaled_checkpoint_over_other_entries_stops_the_log(
    open_log: OpenLog, tmp_path: Path, log_key: LogKey
) -> None:
    log, journal, decoded = one_record(open_log, tmp_path)
    swapped = (decoded.leaves[1], decoded.leaves[0], *decoded.leaves[2:])
    journal.reset()
    journal.append(JournalRecord(0, swapped, decoded.checkpoint).encode())
    with pytest.raises(LogCorrupted, match="does not sign the tree"):
        journaled(open_log)
    sth = parse_checkpoint(decoded.checkpoint, ORIGIN, log.log_id, log_key.public)
    assert sth.tree_size == 4  # the checkpoint itself is genuine: the entries are not


def test_a_storage_without_a_journal_is_refused_journal_mode(
    open_log: OpenLog, tmp_path: Path
) -> None:
    class ObjectsOnly:  # what an object store offers: no append
        def __init__(self) -> None:
            self.inner = LocalDirectoryStorage(tmp_path / "objects")

        def __getattr__(self, name: str) -> object:
            if name == "journal":
                raise AttributeError(name)
            return getattr(self.inner, name)

    with pytest.raises(ValueError, match="keeps no journal"):
        open_log(ObjectsOnly(), journal=True)


def test_opened_without_the_journal_the_log_loses_nothing_the_journal_held(
    open_log: OpenLog, tmp_path: Path
) -> None:
    log = journaled(open_log, now_ms=1_000)
    log.append_batch(fake_entries(0, 5), 1_000)
    log.close()  # a clean stop leaves the journal as it is: replayed by the next open
    assert stored_size(tmp_path) == 0
    plain = open_log(now_ms=2_000)  # ctlog.journal turned off
    assert (plain.size, plain.root) == (5, log.root)
    assert stored_size(tmp_path) == 5  # written out at once: nothing replays it later
    assert FileJournal(tmp_path / "tiles" / "journal").records() == []
    plain.append_batch(fake_entries(5, 1), 2_001)
    assert open_log(now_ms=3_000).size == 6


def test_flush_writes_out_what_only_the_journal_holds(open_log: OpenLog, tmp_path: Path) -> None:
    log = journaled(open_log, now_ms=1_000)
    log.append_batch(fake_entries(0, 3), 1_000)
    assert stored_size(tmp_path) == 0
    log.flush(1_001)
    assert stored_size(tmp_path) == 3
    assert (tmp_path / "tiles" / "checkpoint").read_bytes() == log.checkpoint()
    assert FileJournal(tmp_path / "tiles" / "journal").records() == []
