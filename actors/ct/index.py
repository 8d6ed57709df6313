"""The log's lookup index: Merkle leaf hash -> index, and entry identity -> first index.

A SQLite database (WAL, synchronous=NORMAL) beside the tiles. It is a *cache* of
the tiles, never a source of truth: ``high_water`` says how many leaves it
covers, it is committed after the checkpoint that makes those leaves public,
and on open the log deletes rows at or past the checkpoint size and rebuilds
the missing ones from data tiles. Hence NORMAL: a commit is not fsynced (WAL
keeps the database consistent; a power cut may lose the last commits, which the
next open rebuilds), one fsync fewer per append; a process crash loses nothing.
``identity`` (SHA-256 of entry type and signed entry, timestamp excluded) is what
deduplication keys on; the first index logged for an identity wins. ``leaf_hash``
serves get-proof-by-hash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS by_leaf_hash (
    leaf_hash BLOB PRIMARY KEY, idx INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS by_identity (
    identity BLOB PRIMARY KEY, idx INTEGER NOT NULL, timestamp INTEGER NOT NULL) WITHOUT ROWID;
"""

IndexRow = tuple[int, bytes, bytes, int]
"""(leaf index, Merkle leaf hash, entry identity, timestamp)."""


class EntryIndex:
    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: rebuilt on open
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @property
    def high_water(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key='high_water'").fetchone()
        return 0 if row is None else int(row[0])

    def by_identity(self, identity: bytes) -> tuple[int, int] | None:
        """(index, timestamp) of the first entry with this identity."""
        row = self._db.execute(
            "SELECT idx, timestamp FROM by_identity WHERE identity=?", (identity,)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def by_identities(self, identities: Iterable[bytes]) -> dict[bytes, tuple[int, int]]:
        """``by_identity`` for many keys at once: {identity: (index, timestamp)}."""
        keys = list(dict.fromkeys(identities))
        found: dict[bytes, tuple[int, int]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT identity, idx, timestamp FROM by_identity WHERE identity IN ({marks})"
            for ident, idx, ts in self._db.execute(query, chunk):
                found[bytes(ident)] = (int(idx), int(ts))
        return found

    def by_leaf_hash(self, leaf_hash: bytes) -> int | None:
        row = self._db.execute(
            "SELECT idx FROM by_leaf_hash WHERE leaf_hash=?", (leaf_hash,)
        ).fetchone()
        return None if row is None else int(row[0])

    def add(self, rows: Iterable[IndexRow], high_water: int) -> None:
        """Insert rows and move the high-water mark, in one durable transaction."""
        rows = list(rows)
        with _transaction(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO by_leaf_hash VALUES (?, ?)", ((h, i) for i, h, _, _ in rows)
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO by_identity VALUES (?, ?, ?)",
                ((ident, i, ts) for i, _, ident, ts in rows),
            )
            self._set_high_water(high_water)

    def truncate(self, size: int) -> None:
        """Forget every row at index >= size (rows the checkpoint does not cover)."""
        with _transaction(self._db):
            self._db.execute("DELETE FROM by_leaf_hash WHERE idx >= ?", (size,))
            self._db.execute("DELETE FROM by_identity WHERE idx >= ?", (size,))
            self._set_high_water(min(self.high_water, size))

    def _set_high_water(self, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('high_water', ?)", (value,))


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
