"""The consensus's durable state in SQLite: registrations, scores, evidence, decisions,
pending space challenges and the replay guard's fingerprints.

Like ``ca/store.py``: every public method that writes is one transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``, ``ROLLBACK`` on any error), so a failed call
changes nothing; WAL with synchronous=FULL, so what a caller saw committed
survives a crash. Changes that belong together are written together: evidence of
equivocation with the quarantine it causes, a decision with the score changes it
causes; and ``batch()`` makes every write inside it one transaction, so that a
decision and everything it causes (scores, the asset's history, the proof's
fingerprint, a registration and the challenge it uses up) commit together or not
at all. A write that fails inside a batch spoils it: the batch rolls back whole,
even if the caller swallowed the error. That machinery (transactions, ``batch()``, the
typed faults) is ``sqlite.FaultTypedStore`` and ``sqlite.typed``, shared with the ACME
store.

Faults of the environment (a full disk, an I/O error, a read-only or locked file:
SQLite's FULL, IOERR, READONLY, CANTOPEN, BUSY, LOCKED... and ``OSError``) raise
``TrustStoreUnavailable`` (a typed error, ``details["cause"]`` the SQLite error)
with nothing changed; any other SQLite error is a bug and propagates as it is.

Registrations read are kept in memory too (one is read at every decision;
``FaultTypedStore.remembered``: dropped when written, all of them at a rollback).

What is kept, and how (the tables: ``schema.py``):
- registrations: per (asset key, epoch) the stake (its JSON, as the stake module
  writes it), the space commitment and when it registered; registering again in
  an epoch replaces that epoch's record;
- validator scores (``scores.ValidatorScore``); a quarantine, once written, stays
  (a later write of that validator's score changes nothing);
- asset histories (``scores.AssetHistory``): decayed counts and totals as JSON;
- evidence: each equivocation as its two signed votes' bytes (``Vote.to_bytes``),
  one per (validator, digest), the first kept;
- decisions: digest -> ``Decision.to_json``, the first kept (decisions are final);
- space challenges: per (asset key, epoch) the challenge given and the plot committed
  to before it (``PendingChallenge``), until a decided registration uses it up;
  challenges of past epochs are dropped as new ones are given, and at most ``most``
  are kept (the oldest given dropped first);
- proof fingerprints (``scores.ReplayGuard``'s memory, ``fingerprints``): per
  fingerprint the digest, asset and epoch it was first seen with, and the newest
  epoch seen; fingerprints of epochs older than the guard keeps are dropped;
- asset records (``records.AssetRecord``): per (asset key, epoch) the name and IPv6
  addresses an asset published, signed; a name belongs to its first asset in an
  epoch; records of past epochs are dropped as new ones come;
- upstream faults: per resolver upstream, how often the quorum outvoted it, when
  last and on what question;
- domain control (``domain_control``): per ACME account, identifier and challenge
  kind, the quorum's approving decision and until when it holds; expired ones are
  dropped as new ones come.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sqlite import FaultTypedStore, Remembered, typed
from .domain_control import DomainControlRecord, StoredDomainControl, Wanted
from .errors import NameTaken, NotRegistered, TrustStoreUnavailable
from .formats import ASSET_KEY_BYTES, DIGEST_BYTES, asset_id
from .records import AssetRecord
from .schema import SCHEMA
from .scores import AssetHistory, FirstSeen, ValidatorScore
from .votes import Decision, Equivocation, Vote

MAX_REMEMBERED_REGISTRATIONS = 10_000  # kept in memory (``Remembered``)


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


@dataclass(frozen=True)
class PendingChallenge:
    """A space challenge given and not yet used up: the asset answers it by opening
    blocks of the plot (``commitment``, ``n`` blocks) it committed to before."""

    asset_key: bytes
    epoch: int
    challenge: bytes
    commitment: bytes
    n: int


class TrustStore(FaultTypedStore):
    """The consensus's records in one SQLite database (a path, or ":memory:")."""

    unavailable_error = TrustStoreUnavailable
    what = "trust"
    earlier_write_failed = "an earlier write of this transaction failed"

    def __init__(self, path: str | Path = ":memory:") -> None:
        super().__init__(path, SCHEMA)
        self.fingerprints = StoredFingerprints(self)
        self._domain_control = StoredDomainControl(self)
        # registrations read before, by (asset key, epoch): one is read at every decision
        self._registrations: Remembered[tuple[bytes, int], Registration] = self.remembered(
            MAX_REMEMBERED_REGISTRATIONS
        )

    @typed
    def probe(self, now_s: float) -> None:
        """A small durable write: it succeeds once the disk takes writes again."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO probe VALUES (0, ?)", (now_s,))

    # -- registrations ---------------------------------------------------------------

    @typed
    def add_registration(self, registration: Registration) -> None:
        """Keep a registration; one already made for that asset and epoch is replaced."""
        r = registration
        self._registrations.pop((r.asset_key, r.epoch), None)
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO registrations VALUES (?, ?, ?, ?, ?)",
                (r.asset_key, r.epoch, json.dumps(r.stake, sort_keys=True),
                 r.space_commitment, r.registered_at_s),
            )  # fmt: skip

    @typed
    def get_registration(self, asset_key: bytes, epoch: int) -> Registration:
        """The asset's registration for ``epoch`` (NotRegistered if it made none)."""
        kept = self._registrations.get((asset_key, epoch))
        if kept is not None:
            return kept
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
        return self._registrations.keep((asset_key, epoch), _registration(row))

    @typed
    def registrations(self, asset_key: bytes) -> list[Registration]:
        """Every registration the asset made, oldest epoch first."""
        rows = self._db.execute(
            "SELECT asset_key, epoch, stake, space_commitment, registered_at FROM registrations"
            " WHERE asset_key = ? ORDER BY epoch",
            (asset_key,),
        )
        return [_registration(row) for row in rows]

    # -- validator scores ------------------------------------------------------------

    @typed
    def put_validator_scores(self, scores: Iterable[ValidatorScore]) -> None:
        with self._transaction() as db:
            _put_scores(db, scores)

    @typed
    def get_validator_score(self, validator: str) -> ValidatorScore | None:
        row = self._db.execute(
            f"SELECT {_SCORE_COLUMNS} FROM validator_scores WHERE validator = ?", (validator,)
        ).fetchone()
        return None if row is None else _score(row)

    @typed
    def validator_scores(self) -> list[ValidatorScore]:
        rows = self._db.execute(f"SELECT {_SCORE_COLUMNS} FROM validator_scores ORDER BY 1")
        return [_score(row) for row in rows]

    # -- asset histories -------------------------------------------------------------

    @typed
    def put_asset_history(self, history: AssetHistory) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO asset_histories VALUES (?, ?, ?, ?)",
                (history.asset, history.as_of_s, json.dumps(dict(history.counts)),
                 json.dumps(dict(history.totals))),
            )  # fmt: skip

    @typed
    def get_asset_history(self, asset: str) -> AssetHistory:
        """The asset's history (an empty one if nothing was recorded)."""
        row = self._db.execute(
            "SELECT as_of, counts, totals FROM asset_histories WHERE asset = ?", (asset,)
        ).fetchone()
        if row is None:
            return AssetHistory(asset)
        return AssetHistory(asset, row[0], json.loads(row[1]), json.loads(row[2]))

    # -- evidence --------------------------------------------------------------------

    @typed
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

    @typed
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

    @typed
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

    @typed
    def get_decision(self, digest: bytes) -> Decision | None:
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"a request digest is {DIGEST_BYTES} octets")
        row = self._db.execute(
            "SELECT decision FROM decisions WHERE digest = ?", (digest,)
        ).fetchone()
        return None if row is None else Decision.from_json(json.loads(row[0]))

    # -- space challenges ------------------------------------------------------------

    @typed
    def put_challenge(self, pending: PendingChallenge, most: int) -> None:
        """Keep a challenge given (durably: answer the asset after this returns),
        replacing the asset's earlier one for that epoch; challenges of past epochs are
        dropped, and the oldest given while ``most`` or more are kept."""
        c = pending
        with self._transaction() as db:
            db.execute("DELETE FROM space_challenges WHERE epoch < ?", (c.epoch,))
            db.execute("DELETE FROM space_challenges WHERE asset_key = ? AND epoch = ?",
                       (c.asset_key, c.epoch))  # fmt: skip
            (kept,) = db.execute("SELECT COUNT(*) FROM space_challenges").fetchone()
            if kept >= most:
                oldest = "SELECT given FROM space_challenges ORDER BY given LIMIT ?"
                db.execute(f"DELETE FROM space_challenges WHERE given IN ({oldest})",
                           (kept - most + 1,))  # fmt: skip
            db.execute(
                "INSERT INTO space_challenges (asset_key, epoch, challenge, commitment, n)"
                " VALUES (?, ?, ?, ?, ?)",
                (c.asset_key, c.epoch, c.challenge, c.commitment, c.n),
            )

    @typed
    def get_challenge(self, asset_key: bytes, epoch: int) -> PendingChallenge | None:
        row = self._db.execute(
            "SELECT challenge, commitment, n FROM space_challenges"
            " WHERE asset_key = ? AND epoch = ?",
            (asset_key, epoch),
        ).fetchone()
        if row is None:
            return None
        return PendingChallenge(asset_key, epoch, bytes(row[0]), bytes(row[1]), row[2])

    @typed
    def use_challenge(self, pending: PendingChallenge) -> bool:
        """The challenge is used up (its openings are public now); False if it was not
        kept any more (replaced by a newer one for the asset, or dropped)."""
        with self._transaction() as db:
            deleted = db.execute(
                "DELETE FROM space_challenges WHERE asset_key = ? AND epoch = ? AND challenge = ?",
                (pending.asset_key, pending.epoch, pending.challenge),
            ).rowcount
        return bool(deleted)

    @typed
    def challenges_kept(self) -> int:
        (kept,) = self._db.execute("SELECT COUNT(*) FROM space_challenges").fetchone()
        return int(kept)

    # -- asset records (the resolver's zone) -------------------------------------------

    @typed
    def put_asset_record(self, record: AssetRecord) -> None:
        """Keep an asset's record for its epoch, replacing its earlier one; records of
        past epochs are dropped. ``NameTaken`` if another asset holds the name then."""
        r = record
        with self._transaction() as db:
            db.execute("DELETE FROM asset_records WHERE epoch < ?", (r.epoch,))
            holder = db.execute(
                "SELECT asset_key FROM asset_records WHERE epoch = ? AND name = ?",
                (r.epoch, r.name),
            ).fetchone()
            if holder is not None and bytes(holder[0]) != r.asset_key:
                raise NameTaken(
                    f"asset {bytes(holder[0]).hex()} published {r.name!r} for epoch {r.epoch} "
                    "first; choose another name",
                    name=r.name,
                )
            db.execute("INSERT OR REPLACE INTO asset_records VALUES (?, ?, ?, ?, ?)",
                       (r.asset_key, r.epoch, r.name, json.dumps(list(r.addresses)),
                        r.signature))  # fmt: skip

    @typed
    def asset_records(self, epoch: int) -> list[AssetRecord]:
        """The records published for ``epoch``, by name."""
        rows = self._db.execute(
            "SELECT asset_key, name, addresses, signature FROM asset_records"
            " WHERE epoch = ? ORDER BY name",
            (epoch,),
        ).fetchall()
        return [AssetRecord(bytes(k), epoch, name, tuple(json.loads(a)), bytes(sig))
                for k, name, a, sig in rows]  # fmt: skip

    # -- upstream faults (the resolver's reports) ----------------------------------------

    @typed
    def add_upstream_fault(self, upstream: str, question: str, at_s: float) -> int:
        """Count one disagreement of ``upstream`` with the quorum; the count so far."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO upstream_faults VALUES (?, 1, ?, ?) ON CONFLICT (upstream) DO"
                " UPDATE SET disagreements = disagreements + 1, last_at = excluded.last_at,"
                " last_question = excluded.last_question",
                (upstream, at_s, question),
            )
            (count,) = db.execute(
                "SELECT disagreements FROM upstream_faults WHERE upstream = ?", (upstream,)
            ).fetchone()
        return int(count)

    @typed
    def upstream_faults(self) -> dict[str, dict[str, Any]]:
        """Each upstream that disagreed: how often, when last, on what."""
        rows = self._db.execute(
            "SELECT upstream, disagreements, last_at, last_question FROM upstream_faults"
            " ORDER BY upstream"
        ).fetchall()
        return {u: {"disagreements": n, "last_at": at, "last_question": q}
                for u, n, at, q in rows}  # fmt: skip

    # -- domain control (ACME challenges the quorum corroborated) --------------------------

    @typed
    def add_domain_control(self, record: DomainControlRecord) -> None:
        self._domain_control.add(record)

    @typed
    def find_domain_control(
        self, account: str, wanted: Wanted, now: float
    ) -> DomainControlRecord | None:
        return self._domain_control.find(account, wanted, now)

    @typed
    def domain_control_count(self, now: float) -> int:
        return self._domain_control.count(now)


class StoredFingerprints:
    """``scores.FingerprintMemory`` in the trust store: a ``ReplayGuard`` over it
    remembers across restarts, and its writes join the store's batch under way (the
    decision the proof was approved by)."""

    def __init__(self, store: TrustStore) -> None:
        self._store = store

    def _fault_store(self) -> TrustStore:
        return self._store

    @typed
    def __len__(self) -> int:
        (kept,) = self._store._db.execute("SELECT COUNT(*) FROM proof_fingerprints").fetchone()
        return int(kept)

    @typed
    def newest_epoch(self) -> int | None:
        row = self._store._db.execute("SELECT newest FROM replay_epoch").fetchone()
        return None if row is None else int(row[0])

    @typed
    def advance(self, newest: int, oldest_kept: int) -> None:
        with self._store._transaction() as db:
            db.execute("INSERT OR REPLACE INTO replay_epoch VALUES (0, ?)", (newest,))
            db.execute("DELETE FROM proof_fingerprints WHERE epoch < ?", (oldest_kept,))

    @typed
    def first_seen(self, fingerprint: bytes) -> FirstSeen | None:
        row = self._store._db.execute(
            "SELECT digest, asset, epoch FROM proof_fingerprints WHERE fingerprint = ?",
            (fingerprint,),
        ).fetchone()
        return None if row is None else FirstSeen(bytes(row[0]), row[1], row[2])

    @typed
    def remember(self, fingerprint: bytes, first: FirstSeen) -> None:
        with self._store._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO proof_fingerprints VALUES (?, ?, ?, ?)",
                (fingerprint, first.digest, first.asset, first.epoch),
            )


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
