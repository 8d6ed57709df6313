"""The consensus's durable state in SQLite: registrations, scores, evidence, decisions.

Like ``ca/store.py``: every public method that writes is one transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``, ``ROLLBACK`` on any error), so a failed call
changes nothing; WAL with synchronous=FULL, so what a caller saw committed
survives a crash. Changes that belong together are written together: evidence of
equivocation with the quarantine it causes, a decision with the score changes it
causes.

What is kept, and how:
- registrations: per (asset key, epoch) the stake (its JSON, as the stake module
  writes it), the space commitment and when it registered; registering again in
  an epoch replaces that epoch's record;
- validator scores (``scores.ValidatorScore``); a quarantine, once written, stays
  (a later write of that validator's score changes nothing);
- asset histories (``scores.AssetHistory``): decayed counts and totals as JSON;
- evidence: each equivocation as its two signed votes' bytes (``Vote.to_bytes``),
  one per (validator, digest), the first kept;
- decisions: digest -> ``Decision.to_json``, the first kept (decisions are final).
Stored votes are parsed strictly on the way out; their signatures are not checked
here (``votes.check_decision`` / ``check_equivocation`` do that, with the keys).
Times are seconds since 1970 as numbers, passed in.

The connection belongs to the thread that opened it (sqlite3's default): open the
store in the owning actor's ``on_start``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sqlite import open_database, transaction
from .errors import NotRegistered
from .formats import ASSET_KEY_BYTES, DIGEST_BYTES, asset_id
from .scores import AssetHistory, ValidatorScore
from .votes import Decision, Equivocation, Vote

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    asset_key        BLOB NOT NULL,             -- raw 32-octet Ed25519 public key
    epoch            INTEGER NOT NULL,
    stake            TEXT NOT NULL,             -- JSON, as the stake module writes it
    space_commitment BLOB NOT NULL,
    registered_at    REAL NOT NULL,             -- seconds since 1970
    PRIMARY KEY (asset_key, epoch)
);
CREATE TABLE IF NOT EXISTS validator_scores (
    validator        TEXT PRIMARY KEY,
    score            REAL NOT NULL CHECK (score BETWEEN 0 AND 1),
    quarantined      INTEGER NOT NULL CHECK (quarantined IN (0, 1)),
    agreed           INTEGER NOT NULL,
    dissented        INTEGER NOT NULL,
    quarantined_at   REAL
);
CREATE TABLE IF NOT EXISTS asset_histories (
    asset            TEXT PRIMARY KEY,          -- the asset key in hex (formats.asset_id)
    as_of            REAL NOT NULL,
    counts           TEXT NOT NULL,             -- JSON: factor -> decayed count as of as_of
    totals           TEXT NOT NULL              -- JSON: factor -> count ever
);
CREATE TABLE IF NOT EXISTS equivocations (
    validator        TEXT NOT NULL,
    digest           BLOB NOT NULL,
    first_vote       BLOB NOT NULL,             -- Vote.to_bytes: signed, self-contained
    second_vote      BLOB NOT NULL,
    found_at         REAL NOT NULL,
    PRIMARY KEY (validator, digest)
);
CREATE TABLE IF NOT EXISTS decisions (
    digest           BLOB PRIMARY KEY,
    outcome          TEXT NOT NULL CHECK (outcome IN ('approve', 'reject')),
    decision         TEXT NOT NULL,             -- Decision.to_json
    decided_at       REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Registration:
    """An asset's registration for one epoch: what it proved once for the epoch."""

    asset_key: bytes
    epoch: int
    stake: dict[str, Any]  # the signed stake record's JSON
    space_commitment: bytes
    registered_at_s: float

    def __post_init__(self) -> None:
        if not isinstance(self.asset_key, bytes) or len(self.asset_key) != ASSET_KEY_BYTES:
            raise ValueError("an asset key is a raw 32-octet Ed25519 public key")
        if self.epoch < 0:
            raise ValueError("epochs count from 0")

    @property
    def asset(self) -> str:
        return asset_id(self.asset_key)


class TrustStore:
    """The consensus's records in one SQLite database (a path, or ":memory:")."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._db = open_database(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(self._db)

    # -- registrations ---------------------------------------------------------------

    def add_registration(self, registration: Registration) -> None:
        """Keep a registration; one already made for that asset and epoch is replaced."""
        r = registration
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO registrations VALUES (?, ?, ?, ?, ?)",
                (r.asset_key, r.epoch, json.dumps(r.stake, sort_keys=True),
                 r.space_commitment, r.registered_at_s),
            )  # fmt: skip

    def get_registration(self, asset_key: bytes, epoch: int) -> Registration:
        """The asset's registration for ``epoch`` (NotRegistered if it made none)."""
        row = self._db.execute(
            "SELECT asset_key, epoch, stake, space_commitment, registered_at FROM registrations"
            " WHERE asset_key = ? AND epoch = ?",
            (asset_key, epoch),
        ).fetchone()
        if row is None:
            raise NotRegistered(
                f"asset {asset_key.hex()} has not registered for epoch {epoch}: register "
                "(stake and space proofs) before asking for certificates",
                asset=asset_key.hex(),
                epoch=epoch,
            )
        return _registration(row)

    def registrations(self, asset_key: bytes) -> list[Registration]:
        """Every registration the asset made, oldest epoch first."""
        rows = self._db.execute(
            "SELECT asset_key, epoch, stake, space_commitment, registered_at FROM registrations"
            " WHERE asset_key = ? ORDER BY epoch",
            (asset_key,),
        )
        return [_registration(row) for row in rows]

    # -- validator scores ------------------------------------------------------------

    def put_validator_scores(self, scores: Iterable[ValidatorScore]) -> None:
        with self._transaction() as db:
            _put_scores(db, scores)

    def get_validator_score(self, validator: str) -> ValidatorScore | None:
        row = self._db.execute(
            f"SELECT {_SCORE_COLUMNS} FROM validator_scores WHERE validator = ?", (validator,)
        ).fetchone()
        return None if row is None else _score(row)

    def validator_scores(self) -> list[ValidatorScore]:
        rows = self._db.execute(f"SELECT {_SCORE_COLUMNS} FROM validator_scores ORDER BY 1")
        return [_score(row) for row in rows]

    # -- asset histories -------------------------------------------------------------

    def put_asset_history(self, history: AssetHistory) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO asset_histories VALUES (?, ?, ?, ?)",
                (history.asset, history.as_of_s, json.dumps(dict(history.counts)),
                 json.dumps(dict(history.totals))),
            )  # fmt: skip

    def get_asset_history(self, asset: str) -> AssetHistory:
        """The asset's history (an empty one if nothing was recorded)."""
        row = self._db.execute(
            "SELECT as_of, counts, totals FROM asset_histories WHERE asset = ?", (asset,)
        ).fetchone()
        if row is None:
            return AssetHistory(asset)
        return AssetHistory(asset, row[0], json.loads(row[1]), json.loads(row[2]))

    # -- evidence --------------------------------------------------------------------

    def add_equivocation(
        self,
        evidence: Equivocation,
        found_at_s: float,
        quarantined: ValidatorScore | None = None,
    ) -> bool:
        """Keep the evidence, and the validator's quarantined score with it; False (and
        nothing written) if evidence for that validator and digest is already kept."""
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO equivocations VALUES (?, ?, ?, ?, ?)",
                (evidence.validator, evidence.digest, evidence.first.to_bytes(),
                 evidence.second.to_bytes(), found_at_s),
            ).rowcount  # fmt: skip
            if inserted and quarantined is not None:
                _put_scores(db, [quarantined])
        return bool(inserted)

    def equivocations(self, validator: str | None = None) -> list[Equivocation]:
        """The evidence kept, in the order it was found, optionally of one validator."""
        query = "SELECT validator, digest, first_vote, second_vote FROM equivocations"
        rows = (
            self._db.execute(query + " WHERE validator = ? ORDER BY found_at, rowid", (validator,))
            if validator is not None
            else self._db.execute(query + " ORDER BY found_at, rowid")
        )
        return [
            Equivocation(v, bytes(d), Vote.from_bytes(bytes(a)), Vote.from_bytes(bytes(b)))
            for v, d, a, b in rows
        ]

    # -- decisions -------------------------------------------------------------------

    def add_decision(
        self, decision: Decision, decided_at_s: float, scores: Iterable[ValidatorScore] = ()
    ) -> bool:
        """Keep a decision, and the score changes it caused with it; False (and nothing
        written) if a decision on that digest is already kept: decisions are final."""
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO decisions VALUES (?, ?, ?, ?)",
                (decision.digest, decision.outcome, json.dumps(decision.to_json()),
                 decided_at_s),
            ).rowcount  # fmt: skip
            if inserted:
                _put_scores(db, scores)
        return bool(inserted)

    def get_decision(self, digest: bytes) -> Decision | None:
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"a request digest is {DIGEST_BYTES} octets")
        row = self._db.execute(
            "SELECT decision FROM decisions WHERE digest = ?", (digest,)
        ).fetchone()
        return None if row is None else Decision.from_json(json.loads(row[0]))


_SCORE_COLUMNS = "validator, score, quarantined, agreed, dissented, quarantined_at"


def _put_scores(db: sqlite3.Connection, scores: Iterable[ValidatorScore]) -> None:
    """Upsert scores; a quarantined validator's row is never overwritten (quarantine is
    kept even if a stale copy of the scores is written later)."""
    db.executemany(
        "INSERT INTO validator_scores VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (validator) DO"
        " UPDATE SET score = excluded.score, quarantined = excluded.quarantined,"
        " agreed = excluded.agreed, dissented = excluded.dissented,"
        " quarantined_at = excluded.quarantined_at WHERE validator_scores.quarantined = 0",
        [(s.validator, s.score, int(s.quarantined), s.agreed, s.dissented, s.quarantined_at_s)
         for s in scores],
    )  # fmt: skip


def _score(row: tuple[Any, ...]) -> ValidatorScore:
    return ValidatorScore(row[0], row[1], bool(row[2]), row[3], row[4], row[5])


def _registration(row: tuple[Any, ...]) -> Registration:
    return Registration(bytes(row[0]), row[1], json.loads(row[2]), bytes(row[3]), row[4])
