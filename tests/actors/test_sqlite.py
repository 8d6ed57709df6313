"""The actors' SQLite transactions: whole or not at all, and a failure says its cause."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustchain.actors.sqlite import open_database, transaction

from .test_faults import fill, mounted_tmpfs

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);"


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path / "small")


def test_a_transaction_the_full_disk_refuses_raises_its_cause_and_changes_nothing(
    small: Path,
) -> None:
    db = open_database(small / "db.sqlite3", SCHEMA)
    with transaction(db):
        db.execute("INSERT INTO t VALUES (1, x'00')")
    filler = fill(small)
    for attempt in range(3):  # the cause every time, not "no transaction is active"
        with pytest.raises(sqlite3.OperationalError, match="full"), transaction(db):
            db.execute("INSERT INTO t VALUES (?, ?)", (2 + attempt, bytes(3_000)))
        assert not db.in_transaction
    filler.unlink()
    with transaction(db):
        db.execute("INSERT INTO t VALUES (9, x'01')")
    assert [k for (k,) in db.execute("SELECT k FROM t ORDER BY k")] == [1, 9]
    db.close()


def test_an_exception_in_the_block_rolls_back() -> None:
    db = open_database(":memory:", SCHEMA)
    with pytest.raises(KeyError), transaction(db):
        db.execute("INSERT INTO t VALUES (1, x'00')")
        raise KeyError("the caller's own")
    assert db.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
