"""TileLog: a durable RFC 6962 log with a static-ct-api tiled layout.

Write path (``append_batch``), in this order, each step durable before the next:
 1. sequence the new entries (deduplicated by identity) and sign their SCTs,
    each with the static-ct-api ``leaf_index`` extension (zero merge delay);
 2. compute every changed tile (data, level 0..k, full and partial), the new
    root, and sign the tree head;
 3. ``write_many`` all tiles and new issuers;
 4. ``write_many`` the checkpoint - the commit point;
 5. commit the SQLite index rows, then retire the partial tiles it superseded;
 6. only now return the SCTs.
A crash before 4 leaves the old checkpoint, consistent with what is on disk
(tiles past it are ignored and overwritten); a crash after 4 loses at most
index rows, rebuilt from data tiles on open. So an SCT is never handed out for
an entry that a restart could lose, and every tree head is a prefix of the next.

Superseded partial tiles are deleted after a grace period (``cleanup``).

With a journal (``open(journal=True)``, what the CT log actor uses; see
``journal``), step 3 writes only full tiles and new issuers, and step 4 is one
record appended to the journal (the batch's entries and checkpoint, fdatasync'd);
the edge's partial tiles and the checkpoint object are written from memory
(``_materialize``, tiles before checkpoint, then the journal emptied) at the first
commit or ``stage_refresh`` ``materialize_ms`` after the last, so the storage is a
complete static-ct-api tree that lags the log by at most about that long. A crash
loses nothing acknowledged: ``open`` replays the records past the checkpoint
object. Superseded partial tiles are then the materialized ones, retired the same way.

Reads (``reads``) are served from the committed state only. If a storage or index
write fails mid-append the instance refuses further work (``LogUnavailable``):
reopen it, which runs recovery.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import merkle
from ._tree import TileReader, TreeState
from .checkpoint import SignedTreeHead, encode_checkpoint, parse_checkpoint, sign_tree_head
from .cleanup import PartialTileCleanup
from .entries import LogEntryInput, TileLeaf, fingerprint
from .errors import (
    CheckpointError,
    LogCorrupted,
    LogUnavailable,
    SignatureError,
)
from .index import EntryIndex, IndexRow
from .journal import JOURNAL_MAX_BYTES, JournalRecord, replay, write_edge
from .reads import LogReads, issuer_key
from .recovery import load_state, stale_partials, swept_tiles, sync_index
from .rfc6962 import (
    DigitallySigned,
    SignedCertificateTimestamp,
    Signer,
    leaf_index_extension,
    log_id,
    sct_signature_input,
    tree_head_signature_input,
)
from .storage import FileJournal, JournalingStorage, TileStorage
from .tiles import (
    DATA_LEVEL,
    Tile,
)

CHECKPOINT_KEY = "checkpoint"
JOURNAL_KEY = "journal"
DEFAULT_PARTIAL_GRACE_MS = 5_000
DEFAULT_MATERIALIZE_MS = 1_000  # with a journal: the storage's edge lags at most this


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A tree and the timestamp and root its (signed) head will carry."""

    state: TreeState
    timestamp: int
    root: bytes


@dataclass(frozen=True, eq=False)
class StagedBatch:
    """A sequenced batch waiting for its signatures (``TileLog.stage``).

    ``to_sign`` holds one RFC 6962 SCT signature input per submitted entry that
    wants an SCT (``scts``), in order, then, if the batch publishes a new tree
    head, its tree-head signature input (last). Hand the signatures back, in the
    same order, to ``commit``."""

    sequence: int
    results: tuple[tuple[int, int, bool], ...]  # (leaf index, timestamp, duplicate) per entry
    scts: tuple[bool, ...]  # per entry: is an SCT signed for it
    to_sign: tuple[bytes, ...]
    head: TreeHead
    writes: dict[str, bytes]  # tiles and new issuers
    durable: dict[str, bytes]  # full tiles and new issuers (what a journaled commit writes)
    leaves: tuple[bytes, ...]  # the new entries, encoded (a journaled commit's record)
    rows: list[IndexRow]
    full: dict[Tile, bytes]  # tiles completed by this batch
    publishes: bool  # a new tree head (False: every entry was already logged)


@dataclass(frozen=True, slots=True)
class AppendResult:
    leaf_index: int
    timestamp: int
    sct: SignedCertificateTimestamp | None  # None when the submitter wanted none
    duplicate: bool = False


class TileLog(LogReads):
    def __init__(
        self,
        storage: TileStorage,
        signer: Signer,
        public_key: ec.EllipticCurvePublicKey,
        origin: str,
        index: EntryIndex,
        reader: TileReader,
        state: TreeState,
        sth: SignedTreeHead,
        checkpoint: bytes,
        sign_many: Callable[[list[bytes]], list[bytes]] | None = None,
        *,
        now_ms: int = 0,
        partial_grace_ms: int = DEFAULT_PARTIAL_GRACE_MS,
        journal: FileJournal | None = None,
        materialize_ms: int = DEFAULT_MATERIALIZE_MS,
    ) -> None:
        self._storage, self._sign, self._public_key = storage, signer, public_key
        self._sign_many = sign_many or (lambda items: [signer(item) for item in items])
        self.origin = origin
        self.log_id = _log_id(public_key)
        self._index, self._reader, self._state = index, reader, state
        self._sth, self._checkpoint = sth, checkpoint
        self._issuers: set[bytes] = set()
        self._unusable = False
        self._cleanup = PartialTileCleanup(storage, partial_grace_ms, now_ms)
        # The pipeline: batches staged, not yet committed, oldest first, and what they add.
        self._tip = TreeHead(state, sth.timestamp, sth.root_hash)  # newest staged head
        self._staged: deque[StagedBatch] = deque()
        self._staged_ids: dict[bytes, tuple[int, int]] = {}  # identity -> (index, timestamp)
        self._pending: dict[Tile, bytes] = {}  # full hash tiles staged, not yet written
        self._sequence = itertools.count()
        # With a journal: the tree the storage's objects hold, and when it was written
        self._journal, self._materialize_ms = journal, materialize_ms
        self._materialized = (state.size, now_ms)
        self._full_since: list[Tile] = []  # tiles completed since (their versions to delete)

    @staticmethod
    def exists(storage: TileStorage) -> bool:
        """Whether ``storage`` holds a log (a checkpoint) for ``open`` to reopen."""
        return storage.read(CHECKPOINT_KEY) is not None

    @staticmethod
    def first_tree_head_input(now_ms: int) -> bytes:
        """What to sign for an empty log's first tree head, stamped ``now_ms``."""
        return tree_head_signature_input(now_ms, 0, merkle.EMPTY_ROOT)

    @staticmethod
    def create(
        storage: TileStorage,
        log_public_key: ec.EllipticCurvePublicKey,
        origin: str,
        now_ms: int,
        signature: bytes,
    ) -> None:
        """Write an empty log's first checkpoint, ``signature`` being over
        ``first_tree_head_input(now_ms)``; then ``open`` it. The two-step form of
        what ``open`` does with a signer, for a caller that signs elsewhere."""
        if TileLog.exists(storage):
            raise ValueError("a log exists in this storage already; open it")
        sth = SignedTreeHead(0, now_ms, merkle.EMPTY_ROOT, DigitallySigned(signature))
        sth.verify(log_public_key)  # a signature by another key fails here
        raw = encode_checkpoint(sth, origin, _log_id(log_public_key))
        storage.write_many({CHECKPOINT_KEY: raw})

    @classmethod
    def open(
        cls,
        storage: TileStorage,
        signer: Signer | None,
        log_public_key: ec.EllipticCurvePublicKey,
        origin: str,
        index_db_path: Path | str,
        *,
        now_ms: int = 0,
        cache_tiles: int = 1024,
        sign_many: Callable[[list[bytes]], list[bytes]] | None = None,
        partial_grace_ms: int = DEFAULT_PARTIAL_GRACE_MS,
        journal: bool = False,
        materialize_ms: int = DEFAULT_MATERIALIZE_MS,
    ) -> TileLog:
        """Open (recovering) the log in ``storage``, or create an empty one whose
        first tree head is stamped ``now_ms``. With no ``signer`` (a caller that
        signs through ``stage``/``commit``) the log must exist (see ``create``), and
        ``append_batch``/``refresh_checkpoint`` refuse.

        ``sign_many`` signs a whole batch's SCTs in one call (an HSM round trip
        per batch instead of per entry); by default ``signer`` is called per item.
        Superseded partial tiles are deleted ``partial_grace_ms`` after the
        checkpoint that superseded them; stale ones a crash left behind are
        deleted that long after this open.

        ``journal``: commit each batch with one append to ``storage.journal`` (a
        ``JournalingStorage``) and write the edge's tiles and the checkpoint object at
        most ``materialize_ms`` later (see the module's docstring); the records a crash
        left are replayed here, into memory (opening writes nothing, so a log on a full
        disk still opens and serves reads), and written out at the first commit or
        ``stage_refresh``. Opened without, a journal's records left by a log opened with
        one are replayed and written out here.
        """
        file: FileJournal | None = None
        keeps = hasattr(storage, "journal")
        # a journal left by a log opened with one: replayed, then written out, then emptied
        leftover = not journal and keeps and bool(storage.read(JOURNAL_KEY))
        if journal or leftover:
            if not keeps:
                raise ValueError("this storage keeps no journal: open it with journal=False")
            file = cast(JournalingStorage, storage).journal(JOURNAL_KEY)
        try:
            lid = _log_id(log_public_key)
            reader = TileReader(storage, hash_tiles=cache_tiles)
            raw = storage.read(CHECKPOINT_KEY)
            stale: list[Tile] = []
            sweep: Iterator[Tile] = iter(())
            full: list[Tile] = []  # tiles the journal's records completed
            if raw is None:
                if signer is None:
                    raise LogUnavailable("no checkpoint in storage: create the log first (create)")
                sth = sign_tree_head(signer, 0, now_ms, merkle.EMPTY_ROOT)
                sth.verify(log_public_key)  # a signer that is not this key fails here
                raw = encode_checkpoint(sth, origin, lid)
                storage.write_many({CHECKPOINT_KEY: raw})
                state, stored = TreeState(0), 0
                if file is not None:
                    file.reset()  # no checkpoint, no log: nothing in it continues this one
            else:
                try:
                    sth = parse_checkpoint(raw, origin, lid, log_public_key)
                except CheckpointError as exc:
                    why = f"the stored checkpoint is not valid: {exc.message}"
                    raise LogCorrupted(why) from exc
                state = load_state(storage, reader, sth.tree_size, sth.root_hash)
                stored = state.size
                stale = stale_partials(storage, state.size)  # beside the tree stored as objects
                if file is not None:  # the batches committed since, in memory: written later
                    parse = functools.partial(
                        parse_checkpoint, origin=origin, log_id=lid, public_key=log_public_key
                    )
                    replayed = replay(file.records(), state, reader, parse)
                    if replayed.sth is not None and replayed.checkpoint is not None:
                        full = list(replayed.full)
                        state, sth, raw = replayed.state, replayed.sth, replayed.checkpoint
                    if leftover:  # without a journal from now on, the storage holds it all
                        write_edge(storage, state, {CHECKPOINT_KEY: raw})
                        file.reset()
                        file.close()
                        file, stored = None, state.size
                sweep = swept_tiles(state.size)
            index = EntryIndex(index_db_path)
            sync_index(index, reader, state)
            log = cls(storage, signer or _no_signer, log_public_key, origin, index, reader,
                      state, sth, raw, sign_many,
                      now_ms=now_ms, partial_grace_ms=partial_grace_ms,
                      journal=file, materialize_ms=materialize_ms)  # fmt: skip
            log._cleanup.retire_later(stale)
            log._cleanup.sweep = sweep
            log._materialized, log._full_since = (stored, now_ms), full
            return log
        except BaseException:
            if file is not None:
                file.close()
            raise

    def flush(self, now_ms: int) -> None:
        """With a journal: write out now what only the journal holds (the edge's tiles,
        the checkpoint), so that the storage is whole (a clean stop does this)."""
        self._check_usable()
        if self._journal is not None and self._journal.size:
            self._materialize(now_ms)

    def close(self) -> None:
        self._index.close()
        if self._journal is not None:
            self._journal.close()  # what it holds is replayed by the next open

    # -- write path (sans-IO: stage, sign elsewhere, commit) -----------------

    def stage(
        self, entries: Sequence[LogEntryInput], now_ms: int, scts: Sequence[bool] | None = None
    ) -> StagedBatch:
        """Sequence ``entries`` after everything staged so far; return what must be
        signed (``to_sign``: one SCT input per entry, then the tree-head input).
        ``scts`` says, per entry, whether to sign an SCT for it (default: all); an
        entry without is logged all the same and covered by the tree head. (The
        issuer logs each final certificate, whose SCT nobody would use.)

        A staged batch builds on the previous staged one, not on the committed
        tree, so the next batch can be staged while this one's signatures are out.
        Commit batches with :meth:`commit` strictly in the order they were staged."""
        self._check_usable()
        self._cleanup.tick(now_ms)
        wanted = (True,) * len(entries) if scts is None else tuple(scts)
        if len(wanted) != len(entries):
            raise ValueError("scts must say yes or no for each entry")
        tip = self._tip
        timestamp = max(now_ms, tip.timestamp)
        results: list[tuple[int, int, bool]] = []
        fresh: list[TileLeaf] = []
        rows: list[IndexRow] = []
        identities = [e.identity for e in entries]
        seen = dict(self._index.by_identities(i for i in identities if i not in self._staged_ids))
        inputs: list[bytes] = []
        for entry, identity, sct in zip(entries, identities, wanted, strict=True):
            hit = seen.get(identity) or self._staged_ids.get(identity)
            if hit is not None:
                idx, ts, duplicate = hit[0], hit[1], True
            else:
                idx, ts, duplicate = tip.state.size + len(fresh), timestamp, False
                leaf = TileLeaf.from_input(entry, timestamp, leaf_index_extension(idx))
                fresh.append(leaf)
                seen[identity] = (idx, timestamp)
                rows.append((idx, b"", identity, timestamp))  # leaf hash filled in below
            results.append((idx, ts, duplicate))
            if sct:
                inputs.append(sct_signature_input(ts, entry.entry_type, entry.signed_entry,
                                                  leaf_index_extension(idx)))  # fmt: skip
        state, writes, full, durable, encoded = tip.state, {}, {}, {}, ()
        if fresh:
            encoded, leaf_hashes = zip(*(leaf.encode_and_hash() for leaf in fresh), strict=True)
            rows = [(i, h, ident, t) for (i, _, ident, t), h in zip(rows, leaf_hashes, strict=True)]
            state, changed = tip.state.extend(list(leaf_hashes), list(encoded))
            writes = {tile.path: data for tile, data in changed.items()}
            issuers = {fingerprint(c): c for e in entries for c in e.chain}
            writes.update(
                {issuer_key(fp): c for fp, c in issuers.items() if fp not in self._issuers}
            )
            full = {t: d for t, d in changed.items() if not t.is_partial}
            durable = {k: d for k, d in writes.items() if not k.startswith("tile/")}
            durable.update((t.path, d) for t, d in full.items())
        root = tip.root
        if fresh:
            pending = {**self._pending, **{t: d for t, d in full.items() if t.level != DATA_LEVEL}}
            root = merkle.range_hash(
                lambda lvl, idx: self._reader.node(state, lvl, idx, pending), 0, state.size
            )
            self._pending = pending
            for i, _, ident, t in rows:
                self._staged_ids[ident] = (i, t)
        head = TreeHead(state, timestamp, root)
        if fresh or not entries:
            inputs.append(tree_head_signature_input(timestamp, state.size, root))
        staged = StagedBatch(next(self._sequence), tuple(results), wanted, tuple(inputs), head,
                             writes, durable, tuple(encoded), rows, full,
                             bool(fresh) or not entries)  # fmt: skip
        if staged.publishes:
            self._tip = head
        self._staged.append(staged)
        return staged

    def stage_refresh(self, now_ms: int) -> StagedBatch | None:
        """A fresh tree head for the current tree (keeps get-sth recent), or None when
        none is due: ``now_ms`` is not past the newest head, or batches are staged
        (their commits publish fresh heads). Deletes the superseded partial tiles
        whose grace period is over."""
        self._check_usable()
        self._cleanup.tick(now_ms)
        self._cleanup.run(self._state)
        if self._journal is not None and self._journal.size:
            self._materialize(now_ms)  # the idle log's storage catches up
        if self._staged or now_ms <= self._tip.timestamp:
            return None
        return self.stage([], now_ms)

    def commit(self, staged: StagedBatch, signatures: Sequence[bytes]) -> list[AppendResult]:
        """Make ``staged`` durable with its ``signatures`` (in ``to_sign`` order):
        tiles and issuers, then the checkpoint, each fsynced; then the index.
        Returns one result (with its SCT) per entry, in order.

        Raises ``LogUnavailable`` if ``staged`` is not the oldest batch staged (or the
        log failed since); a signature that does not verify raises ``SignatureError``
        and a failed write ``OSError`` or ``sqlite3.Error``: after any failure the
        instance refuses work (reopen it) and every batch staged after is void."""
        self._check_usable()
        if not self._staged or self._staged[0] is not staged:
            raise LogUnavailable("batches commit in the order they were staged, each once")
        if len(signatures) != len(staged.to_sign):
            raise SignatureError(f"{len(staged.to_sign)} signatures needed, got {len(signatures)}")
        self._unusable = True  # until every step below has succeeded
        head = staged.head
        sct_signatures = iter(signatures)
        results = [
            AppendResult(idx, ts, SignedCertificateTimestamp(
                self.log_id, ts, leaf_index_extension(idx),
                DigitallySigned(next(sct_signatures))) if sct else None, duplicate)
            for (idx, ts, duplicate), sct in zip(staged.results, staged.scts, strict=True)
        ]  # fmt: skip
        if staged.publishes:
            sth = SignedTreeHead(head.state.size, head.timestamp, head.root,
                                 DigitallySigned(signatures[-1]))  # fmt: skip
            sth.verify(self._public_key)
            checkpoint = encode_checkpoint(sth, self.origin, self.log_id)
            if self._journal is None:
                if staged.writes:
                    self._storage.write_many(staged.writes)
                self._storage.write_many({CHECKPOINT_KEY: checkpoint})
            else:  # full tiles and issuers first; the record is the commit point
                if staged.durable:
                    self._storage.write_many(staged.durable)
                record = JournalRecord(head.state.size - len(staged.leaves), staged.leaves,
                                       checkpoint)  # fmt: skip
                self._journal.append(record.encode())
            old, self._state, self._sth, self._checkpoint = self._state, head.state, sth, checkpoint
            for tile, data in staged.full.items():
                self._reader.add_full(tile, data)
                self._pending.pop(tile, None)
            if staged.rows:
                self._index.add(staged.rows, head.state.size)
            for _, _, ident, _ in staged.rows:
                self._staged_ids.pop(ident, None)
            self._issuers.update(fingerprint(d) for k, d in staged.writes.items()
                                 if k.startswith("issuer/"))  # fmt: skip
            if self._journal is None:
                self._cleanup.retire(old.size, head.state.size, staged.full)
            else:
                self._full_since.extend(staged.full)
        self._staged.popleft()
        if self._journal is not None and (
            self._journal.size > JOURNAL_MAX_BYTES
            or head.timestamp - self._materialized[1] >= self._materialize_ms
        ):
            self._materialize(head.timestamp)
        self._unusable = False
        self._cleanup.run(self._state)
        return results

    def _materialize(self, now_ms: int) -> None:
        """Write the committed tree's edge tiles, then its checkpoint object, and empty
        the journal; retire the partial tiles written last time that it grew past."""
        assert self._journal is not None
        self._unusable = True  # until the storage and the journal agree again
        checkpoint = {CHECKPOINT_KEY: self._checkpoint}
        if self._state.size != self._materialized[0]:
            write_edge(self._storage, self._state, checkpoint)
        else:  # a fresh tree head for the same tree: the checkpoint alone
            self._storage.write_many(checkpoint)
        self._journal.reset()
        self._cleanup.retire(self._materialized[0], self._state.size, self._full_since)
        self._materialized, self._full_since = (self._state.size, now_ms), []
        self._unusable = False

    @property
    def staged_batches(self) -> int:
        """Batches staged and not yet committed."""
        return len(self._staged)

    def append_batch(self, entries: Sequence[LogEntryInput], now_ms: int) -> list[AppendResult]:
        """Stage, sign with the injected signer, commit: for tests and tools that
        may wait on their signer (an actor stages and commits itself)."""
        staged = self.stage(entries, now_ms)
        return self.commit(staged, self._sign_many(list(staged.to_sign)))

    def refresh_checkpoint(self, now_ms: int) -> SignedTreeHead:
        """:meth:`stage_refresh` and :meth:`commit` with the injected signer."""
        staged = self.stage_refresh(now_ms)
        if staged is not None:
            self.commit(staged, self._sign_many(list(staged.to_sign)))
        return self._sth

    @property
    def retiring_tiles(self) -> int:
        """Superseded partial tiles waiting out their grace period."""
        return self._cleanup.retiring

    def _check_usable(self) -> None:
        if self._unusable:
            raise LogUnavailable("a storage write failed during an append; reopen the log")


def _no_signer(data: bytes) -> bytes:
    raise LogUnavailable("this log was opened without a signer: stage(), sign, commit()")


def _log_id(public_key: ec.EllipticCurvePublicKey) -> bytes:
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return log_id(spki)
