"""The SQLite files the actors keep (the CA's database, the consensus's state): opened
one way and changed in transactions that either happen whole or not at all."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def open_database(
    path: str | Path, schema: str, *, foreign_keys: bool = False
) -> sqlite3.Connection:
    """WAL with synchronous=FULL (a commit is durable when it returns), autocommit off
    but for explicit ``transaction``s, and ``schema`` applied."""
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if foreign_keys:
        db.execute("PRAGMA foreign_keys=ON")
    db.executescript(schema)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception, a failed COMMIT's
    included. The exception raised is the first one: SQLite may have rolled back by
    itself (a full disk at COMMIT), and then a ROLLBACK's own error ("no transaction is
    active") would hide the cause."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
