"""CTLogActor: TrustChain's Certificate Transparency log (RFC 6962 API, tiles on disk).

Submissions (add-chain, add-pre-chain) are checked (the chain must lead to a
root this log accepts; a precertificate must carry the poison), then pooled.
The pool is sequenced as one batch (``TileLog.stage``) when the mailbox runs
dry, when it holds ``max_batch`` entries, or when its oldest entry has waited
``pool_period_ms``, and while fewer than ``MAX_STAGED`` batches are out. The
actor never waits: it sends the batch's SCT and tree-head inputs to the HSM
(``request``, one ``sign_batch``) and goes on checking and staging the next
batch, which builds on the staged one; the continuation makes the batch
durable (``TileLog.commit``: tiles, then the signed checkpoint, fsynced),
strictly in staging order, and only then are the SCTs given out (zero merge
delay, ``leaf_index`` in each SCT). Submitters that arrive while batches are
out wait in the pool and go out together (group commit).

``AddChain``/``AddPreChain`` (the control socket, HTTP ``add-chain`` and
``add-pre-chain``) are fully checked. ``LogIssued`` carries a ready
``LogEntryInput`` from the in-process issuer, whose chain it built and signed
itself, and is logged without checks again; JSON cannot carry its field, so the
edges refuse it (``Message.from_args``: "in-process only").
A pool of ``max_pool`` entries answers ``log_busy`` (HTTP 503 + Retry-After):
never an unbounded queue.

The log key is ECDSA P-256 in the HSM; a batch's SCTs and tree head are
signed with one ``sign_batch``. Start-up does not wait either: the key
(``EnsureKey``) and an empty log's first tree head (``SignData``) are requested,
and the log is ready in the continuation.
Accepted roots come from the issuer (``accept_roots``) and are kept beside
the tiles (``ct.roots``), so a restart reloads everything from disk (crash-only:
``TileLog.open`` runs recovery, and nothing acknowledged is lost).

Faults of the environment are not bugs. When a durable append (or the idle
re-signing of the tree head) fails because the storage fails (ENOSPC, EIO, a
read-only file system, SQLite's "disk is full") or the HSM cannot sign, every
submitter in the batch, in every batch staged after it and in the pool gets
``log_unavailable`` (nothing was logged, so no SCT exists), the instance is
closed and reopened in place (``TileLog.open`` runs the same recovery a
restart would), and the fault (``ct_storage`` or ``hsm``, since when, the last
error) shows in status and ``/ready``. Until a probe succeeds, submissions are
refused at once with ``log_unavailable`` while reads go on being served from
the last committed tree head. The probe is a real durable write: re-signing
and storing the checkpoint, retried with the supervisor's backoff; when it
succeeds, appends resume with no restart. An HSM that restarts (or does not
answer within ``SIGN_TIMEOUT_S``) in the middle of an append is such a fault
too, never a crash of the log.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import deque
from dataclasses import dataclass
from typing import Any

import outcome
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import (
    AppendResult,
    LocalDirectoryStorage,
    LogEntryInput,
    TileLog,
)
from trustchain.actors.ct.chains import ChainValidator
from trustchain.actors.ct.errors import CTError, LogBusy, LogUnavailable
from trustchain.actors.ct.log import StagedBatch
from trustchain.actors.ct.roots import load_roots, roots_path, save_roots
from trustchain.actors.ctlog.messages import (
    AcceptRoots,
    AddChain,
    AddPreChain,
    LogIssued,
)
from trustchain.actors.ctlog.reads import LogReads
from trustchain.actors.hsm.errors import HsmError
from trustchain.actors.hsm.messages import EnsureKey, SignBatch, SignData
from trustchain.config import CtLogConfig
from trustchain.supervisors import (
    ActorContext,
    ActorCrashed,
    ActorUnavailable,
    Message,
    RequestTimeout,
    SupervisedActor,
    handles,
)
from trustchain.supervisors.registry import Reply

STORAGE = "ct_storage"  # the resource names shown in status and /ready
SIGNER = "hsm"
MIN_RETRY_S = 0.01  # even with backoff turned off, a retry is never a busy loop
MAX_STAGED = 2  # batches out for signing or committing at once (the pipeline's depth)
MAX_SIGN_ITEMS = 65_536  # what one sign_batch may carry (hsm.Batch)
SIGN_TIMEOUT_S = 60.0  # an HSM that has not signed a batch by then is failing


@dataclass(frozen=True)
class _RefreshCheckpoint(Message):
    """Time to sign a fresh checkpoint (the log's own timer)."""


@dataclass(frozen=True)
class _RetryLog(Message):
    """Time to try opening the log's storage again after a failure."""


@dataclass(frozen=True)
class _CheckSigning(Message):
    """Time to look for HSM signatures that are overdue."""


@dataclass(frozen=True)
class _Pooled:
    """A submission waiting in the pool for the next batch."""

    entry: LogEntryInput
    reply: Reply
    sct: bool = True  # sign an SCT for it (LogIssued.scts)


class _Batch:
    """A staged batch on its way: out for signing, then waiting its turn to commit."""

    def __init__(self, staged: StagedBatch, replies: list[Reply], sent_at: float, probe: bool):
        self.staged, self.replies, self.sent_at, self.probe = staged, replies, sent_at, probe
        self.signatures: list[bytes] | None = None


def _failing_resource(exc: BaseException) -> str | None:
    """Which resource of the environment ``exc`` says is failing; None for a bug."""
    if isinstance(exc, OSError | sqlite3.OperationalError | LogUnavailable):
        return STORAGE
    if isinstance(exc, HsmError | ActorUnavailable | ActorCrashed | RequestTimeout):
        return SIGNER
    return None


class CTLogActor(LogReads, SupervisedActor):
    def __init__(self, context: ActorContext, config: CtLogConfig, hsm: str = "hsm") -> None:
        super().__init__(context)
        self.config = config
        self.hsm = hsm
        self.log: TileLog | None = None
        self._pool: list[_Pooled] = []
        self._pool_since = 0.0
        self._out: deque[_Batch] = deque()  # staged batches, oldest first (commit order)
        self._epoch = 0  # bumped when the log fails: answers for older batches are void
        self.chains = ChainValidator()  # the accepted roots and the verdict on a chain
        self._down: str | None = None  # the failing resource, while appends are refused
        self._retries = 0  # failed probes in a row
        self._retry_pending = False

    # Lifecycle ----------------------------------------------------------------------

    def setup(self) -> None:
        """Start without waiting: the key (``EnsureKey``), an empty log's first tree
        head (``SignData``, then ``TileLog.create``), then open it and be ready; an
        error in any step fails the start."""
        self.config.storage_dir.mkdir(parents=True, exist_ok=True)
        self.config.index_db.parent.mkdir(parents=True, exist_ok=True)
        self.starting()
        self.request(self.hsm, EnsureKey(self.config.key, "ec-p256"), self._have_key)

    def _have_key(self, result: outcome.Outcome) -> None:
        self.public_key_der = result.unwrap().public_key_der
        if TileLog.exists(self._storage()):
            self._open_at_start()
            return
        now_ms = self._now_ms()
        first = SignData(self.config.key, TileLog.first_tree_head_input(now_ms))
        self.request(self.hsm, first, lambda signed: self._first_head_signed(now_ms, signed))

    def _first_head_signed(self, now_ms: int, result: outcome.Outcome) -> None:
        TileLog.create(
            self._storage(), self._public_key(), self.config.origin, now_ms, result.unwrap()
        )
        self._open_at_start()

    def _open_at_start(self) -> None:
        self.log = self._open_log()
        for der in load_roots(roots_path(self.config.storage_dir)):
            self.chains.add_root(der)
        self.every(self.config.checkpoint_interval_s, _RefreshCheckpoint())
        self.every(SIGN_TIMEOUT_S / 4, _CheckSigning())
        # A tree head as old as the downtime is re-signed now, not a period later: the
        # monitor, which starts after the log, checks at once and would call it stale.
        self.send_self(_RefreshCheckpoint())
        self.ready()

    def cleanup(self) -> None:
        if self.log is not None and self._down is None:
            try:  # a clean stop leaves the storage whole; the journal has it otherwise
                self.log.flush(self._now_ms())
            except (OSError, sqlite3.Error, LogUnavailable):
                pass
        self._close_log()

    def _storage(self) -> LocalDirectoryStorage:
        return LocalDirectoryStorage(self.config.storage_dir)

    def _open_log(self) -> TileLog:
        return TileLog.open(  # no signer: this actor stages, has the HSM sign, commits
            self._storage(),
            None,
            self._public_key(),
            self.config.origin,
            self.config.index_db,
            now_ms=self._now_ms(),
            journal=self.config.journal,
            materialize_ms=round(self.config.checkpoint_interval_s * 1000),
        )

    def _close_log(self) -> None:
        if self.log is not None:
            log, self.log = self.log, None
            try:
                log.close()
            except sqlite3.Error:
                pass  # closing what a failing disk left behind; reopening starts clean

    def _public_key(self) -> ec.EllipticCurvePublicKey:
        key = serialization.load_der_public_key(self.public_key_der)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise TypeError("the log key is EC P-256")  # EnsureKey(..., "ec-p256") made it
        return key

    def _now_ms(self) -> int:
        return int(self.clock.time() * 1000)

    @property
    def _log(self) -> TileLog:
        if self.log is None:
            raise self._unavailable()
        return self.log

    # Faults of the environment ------------------------------------------------------

    def _unavailable(self) -> LogUnavailable:
        fault = self.fault(self._down) if self._down else None
        why = f" ({self._down}: {fault.error})" if fault else ""
        return LogUnavailable(
            f"the log cannot append now{why}; nothing was logged; it retries with backoff, "
            "try again shortly",
            retry_after_s=1,
        )

    def _degrade(self, resource: str, exc: BaseException) -> None:
        """Refuse appends, reopen the log in place (recovery), retry with backoff."""
        if self._down is not None and self._down != resource:
            self.clear_fault(self._down)
        self._down = resource
        self._close_log()
        try:
            self.log = self._open_log()  # reads go on from the committed state
        except Exception as reopen:
            if _failing_resource(reopen) is None:
                raise
        delay = max(MIN_RETRY_S, self.context.backoff.delay(self._retries))
        self.report_fault(resource, exc, next_retry_s=delay)
        if not self._retry_pending:
            self._retry_pending = True
            self.after(delay, _RetryLog())

    @handles(_RetryLog)
    def retry_log(self, msg: _RetryLog) -> None:
        self._retry_pending = False
        if self._down is None or self._out:
            return
        try:
            if self.log is None:
                self.log = self._open_log()
            staged = self.log.stage_refresh(self._now_ms())  # the probe: a signed, durable write
        except Exception as exc:
            resource = _failing_resource(exc)
            if resource is None:
                raise
            self._retries += 1
            self._degrade(resource, exc)
            return
        if staged is None:
            self._recovered()
        else:
            self._send(staged, [], probe=True)

    def _recovered(self) -> None:
        resource, self._down, self._retries = self._down, None, 0
        if resource is not None:
            self.clear_fault(resource)

    def _fail(self, exc: BaseException) -> None:
        """A batch failed: answer it, every batch staged after it and the pool."""
        replies = [reply for batch in self._out for reply in batch.replies]
        replies += [pooled.reply for pooled in self._pool]
        probed = any(batch.probe for batch in self._out)
        self._out.clear()
        self._pool = []
        self._epoch += 1
        resource = _failing_resource(exc)
        if resource is None:
            for reply in replies:
                reply(outcome.Error(CTError(f"the log could not append: {exc}")))
            raise exc  # a bug: crash; the restart reopens and recovers the log
        if probed:
            self._retries += 1
        self._degrade(resource, exc)
        refusal = self._unavailable()
        for reply in replies:
            reply(outcome.Error(refusal))

    # Submissions --------------------------------------------------------------------

    def on_receive(self, envelope: Any) -> Any:
        result = super().on_receive(envelope)
        if (
            self._pool
            and len(self._out) < MAX_STAGED
            and (
                self.actor_inbox.empty()
                or len(self._pool) >= self.config.max_batch
                or self.clock.monotonic() - self._pool_since >= self.config.pool_period_ms / 1000
            )
        ):
            self._sequence()
        return result

    @handles(LogIssued)
    def log_issued(self, msg: LogIssued) -> None:
        """Pooled like other submissions; answered when the last entry is done."""
        self._check_room(len(msg.entries))
        reply = self.defer()
        results: list[outcome.Outcome | None] = [None] * len(msg.entries)
        left = [len(msg.entries)]

        def entry_done(index: int, result: outcome.Outcome) -> None:
            results[index] = result
            left[0] -= 1
            if not left[0]:
                reply(outcome.Value(results))

        if not msg.entries:
            reply(outcome.Value([]))
        for index, entry in enumerate(msg.entries):
            self._pool_entry(_Pooled(entry, functools.partial(entry_done, index), msg.scts))

    @handles(AddChain)
    def add_chain(self, msg: AddChain) -> None:
        self._submit(self.chains.entry(msg.chain, precert=False))

    @handles(AddPreChain)
    def add_pre_chain(self, msg: AddPreChain) -> None:
        self._submit(self.chains.entry(msg.chain, precert=True))

    def _submit(self, entry: LogEntryInput) -> None:
        self._check_room(1)
        self._pool_entry(_Pooled(entry, self.defer()))

    def _check_room(self, count: int) -> None:
        if self._down is not None:
            raise self._unavailable()
        if len(self._pool) + count > self.config.max_pool:
            retry = max(1, round(self.config.pool_period_ms / 1000))
            raise LogBusy(
                f"the log's pool is full ({self.config.max_pool}); try again shortly",
                retry_after_s=retry,
            )

    def _pool_entry(self, pooled: _Pooled) -> None:
        if not self._pool:
            self._pool_since = self.clock.monotonic()
        self._pool.append(pooled)

    def _sequence(self) -> None:
        """Stage up to ``max_batch`` pooled entries and send their inputs for signing."""
        size = min(self.config.max_batch, MAX_SIGN_ITEMS - 1)  # one more: the tree head
        pool, self._pool = self._pool[:size], self._pool[size:]
        if self._pool:
            self._pool_since = self.clock.monotonic()
        try:
            entries, scts = [p.entry for p in pool], [p.sct for p in pool]
            staged = self._log.stage(entries, self._now_ms(), scts)
        except Exception as exc:
            self._pool[:0] = pool  # answered with the rest
            self._fail(exc)
            return
        self._send(staged, [pooled.reply for pooled in pool])

    def _send(self, staged: StagedBatch, replies: list[Reply], probe: bool = False) -> None:
        batch = _Batch(staged, replies, self.clock.monotonic(), probe)
        self._out.append(batch)
        epoch = self._epoch
        self.request(
            self.hsm,
            SignBatch(self.config.key, list(staged.to_sign)),
            lambda result: self._signed(epoch, batch, result),
        )

    def _signed(self, epoch: int, batch: _Batch, result: outcome.Outcome) -> None:
        """The HSM answered for ``batch``: commit every batch whose turn has come."""
        if epoch != self._epoch:
            return  # the log failed meanwhile, and that batch was answered then
        if isinstance(result, outcome.Error):
            self._fail(result.error)
            return
        batch.signatures = result.unwrap()
        while self._out and self._out[0].signatures is not None:
            done, signatures = self._out[0], self._out[0].signatures
            try:
                results = self._log.commit(done.staged, signatures)
            except Exception as exc:
                self._fail(exc)
                return
            self._out.popleft()
            for reply, appended in zip(done.replies, results, strict=True):
                reply(outcome.Value(_sct_reply(appended)))
            if done.probe:
                self._recovered()

    @handles(_CheckSigning)
    def check_signing(self, msg: _CheckSigning) -> None:
        if self._out and self._out[0].signatures is None:
            waited = self.clock.monotonic() - self._out[0].sent_at
            if waited > SIGN_TIMEOUT_S:
                self._fail(RequestTimeout(f"the HSM has not signed a batch in {waited:.0f} s"))

    # Accepted roots ---------------------------------------------------------------

    @handles(AcceptRoots)
    def accept_roots(self, msg: AcceptRoots) -> int:
        for der in msg.certificates:
            self.chains.add_root(der)
        save_roots(roots_path(self.config.storage_dir), self.chains.roots.values())
        return len(self.chains.roots)

    @handles(_RefreshCheckpoint)
    def refresh_checkpoint(self, msg: _RefreshCheckpoint) -> None:
        if self._down is not None:
            return  # the retry probes instead, with backoff
        try:
            staged = self._log.stage_refresh(self._now_ms())
        except Exception as exc:
            self._fail(exc)
            return
        if staged is not None:
            self._send(staged, [])


def _sct_reply(result: AppendResult) -> dict[str, Any]:
    sct = result.sct
    if sct is None:
        return {"leaf_index": result.leaf_index, "timestamp": result.timestamp,
                "duplicate": result.duplicate}  # fmt: skip
    return {
        "sct_version": 0,
        "id": sct.log_id,
        "timestamp": sct.timestamp,
        "extensions": sct.extensions,
        "signature": sct.signature.encode(),
        "leaf_index": result.leaf_index,
        "sct": sct.encode(),
        "duplicate": result.duplicate,
    }
