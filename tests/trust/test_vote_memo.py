"""A validator's memory of the votes it gave (``VoteMemo``): durable when ``put``
returns; within ``group()`` durable together when the group ends, and if a put or the
commit fails, none of the group's votes is kept, on disk or in memory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.trust.votes import sign_vote
from trustchain.actors.validator.core import VoteMemo, _Given

KEY = ed25519.Ed25519PrivateKey.generate()
EPOCH = 7


def given(n: int) -> _Given:
    return _Given(sign_vote(KEY, "v1", bytes([n]) * 32, "approve", ()), b"inputs")


def on_disk(path: Path) -> set[bytes]:
    db = sqlite3.connect(path)
    try:
        return {bytes(row[0]) for row in db.execute("SELECT digest FROM votes")}
    finally:
        db.close()


def test_a_group_of_puts_is_kept_together_and_seen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "v1.votes.sqlite3"
    memo = VoteMemo(path)
    with memo.group():
        for n in range(3):
            memo.put(given(n), EPOCH)
            assert memo.get(bytes([n]) * 32, EPOCH) == given(n)  # a repeat in the group
        assert on_disk(path) == set()  # not committed before the group ends
    assert on_disk(path) == {bytes([n]) * 32 for n in range(3)}
    memo.close()
    again = VoteMemo(path)  # a restarted validator repeats them
    assert all(again.get(bytes([n]) * 32, EPOCH) == given(n) for n in range(3))
    again.close()


def test_a_failed_group_keeps_none_of_its_votes(tmp_path: Path) -> None:
    path = tmp_path / "v1.votes.sqlite3"
    memo = VoteMemo(path)
    memo.put(given(9), EPOCH)  # before: kept
    with pytest.raises(OSError, match="the commit"), memo.group():
        memo.put(given(1), EPOCH)
        raise OSError("the commit failed")
    assert memo.get(bytes([1]) * 32, EPOCH) is None
    assert on_disk(path) == {bytes([9]) * 32}

    class Broken:  # the database refuses the second vote's row (as a full disk would)
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db, self.inserts = db, 0

        def execute(self, sql: str, *args: object) -> object:
            if sql.startswith("INSERT"):
                self.inserts += 1
                if self.inserts == 2:
                    raise sqlite3.OperationalError("database or disk is full")
            return self.db.execute(sql, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self.db, name)

    memo._db = Broken(memo._db)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError, match="disk is full"), memo.group():
        memo.put(given(2), EPOCH)
        with pytest.raises(sqlite3.OperationalError):
            memo.put(given(3), EPOCH)  # its caller is answered with the error ...
    assert memo.get(bytes([2]) * 32, EPOCH) is None  # ... and the group fails whole
    assert on_disk(path) == {bytes([9]) * 32}
    memo.close()
