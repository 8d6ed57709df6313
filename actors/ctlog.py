"""CTLogActor: TrustChain's Certificate Transparency log (RFC 6962 API, tiles on disk).

Submissions (add-chain, add-pre-chain) are checked (the chain must lead to a
root this log accepts; a precertificate must carry the poison), then pooled.
The pool is sequenced as one durable append (``TileLog.append_batch``: tiles,
then the signed checkpoint, fsynced) when the mailbox runs dry, when it holds
``max_batch`` entries, or when its oldest entry has waited ``pool_period_ms``;
only then are the SCTs given out (zero merge delay, ``leaf_index`` in each SCT).
A pool of ``max_pool`` entries answers ``log_busy`` (HTTP 503 + Retry-After):
never an unbounded queue.

The log key is ECDSA P-256 in the HSM; a batch's SCTs are signed with one
``sign_batch``. Accepted roots come from the issuer (``accept_roots``) and are
kept beside the tiles, so a restart reloads everything from disk (crash-only:
``TileLog.open`` runs recovery, and nothing acknowledged is lost).

Faults of the environment are not bugs. When a durable append (or the idle
re-signing of the tree head) fails because the storage fails (ENOSPC, EIO, a
read-only file system, SQLite's "disk is full") or the HSM cannot sign, every
submitter in the batch gets ``log_unavailable`` (nothing was logged, so no
SCT exists), the instance is closed and reopened in place (``TileLog.open``
runs the same recovery a restart would), and the fault (``ct_storage`` or
``hsm``, since when, the last error) shows in status and ``/ready``. Until a
probe succeeds, submissions are refused at once with ``log_unavailable``
while reads go on being served from the last committed tree head. The probe
is a real durable write: re-signing and storing the checkpoint, retried with
the supervisor's backoff; when it succeeds, appends resume with no restart.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import outcome
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from trustchain.actors.ct import (
    IndexOutOfRange,
    LocalDirectoryStorage,
    LogEntryInput,
    TileLog,
    TileNotFound,
    TreeSizeOutOfRange,
    issuer_key_hash,
)
from trustchain.actors.ct.errors import CTError, LogUnavailable
from trustchain.actors.durable import replace_file
from trustchain.actors.hsm import EnsureKey, SignBatch, SignData
from trustchain.actors.token import HsmError
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
from trustchain.supervisors.messages import Bounds
from trustchain.supervisors.registry import Reply

POISON = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.3")
MAX_CHAIN = 10
# Bounds of the messages' arguments (see supervisors.messages). A certificate with
# many long SANs passes 64 KiB; why a chain is refused (too long, not DER) is said
# by the handlers, as ``invalid_chain``.
Chain = Annotated[list[bytes], Bounds(items=Bounds(max_length=1_048_576))]  # DER each
Size = Annotated[int, Bounds(min=0)]  # a tree size or leaf index
STORAGE = "ct_storage"  # the resource names shown in status and /ready
SIGNER = "hsm"
MIN_RETRY_S = 0.01  # even with backoff turned off, a retry is never a busy loop


class InvalidChain(CTError):
    """The submitted chain is malformed or does not lead to an accepted root (HTTP 400)."""

    code = "invalid_chain"


class LogBusy(CTError):
    """The submission pool is full: try again after ``retry_after_s`` (HTTP 503)."""

    code = "log_busy"


@dataclass(frozen=True)
class AddChain(Message):
    type: ClassVar[str] = "add_chain"
    chain: Chain  # the certificate, then its issuers


@dataclass(frozen=True)
class AddPreChain(Message):
    type: ClassVar[str] = "add_pre_chain"
    chain: Chain  # the precertificate, then its issuer(s)


@dataclass(frozen=True)
class GetSTH(Message):
    type: ClassVar[str] = "get_sth"


@dataclass(frozen=True)
class GetConsistency(Message):
    type: ClassVar[str] = "get_sth_consistency"
    first: Size
    second: Size


@dataclass(frozen=True)
class GetProofByHash(Message):
    type: ClassVar[str] = "get_proof_by_hash"
    hash: Annotated[bytes, Bounds(min_length=32, max_length=32)]  # SHA-256 Merkle leaf hash
    tree_size: Size


@dataclass(frozen=True)
class GetEntries(Message):
    type: ClassVar[str] = "get_entries"
    start: Size
    end: Size  # inclusive, as in RFC 6962


@dataclass(frozen=True)
class GetRoots(Message):
    type: ClassVar[str] = "get_roots"


@dataclass(frozen=True)
class GetEntryAndProof(Message):
    type: ClassVar[str] = "get_entry_and_proof"
    leaf_index: Size
    tree_size: Size


@dataclass(frozen=True)
class GetCheckpoint(Message):
    type: ClassVar[str] = "checkpoint"


@dataclass(frozen=True)
class GetTile(Message):
    type: ClassVar[str] = "tile"
    # "tile/0/x001/234", "tile/data/000.p/5", ...: an index of 2^63 takes 30 characters
    path: Annotated[str, Bounds(max_length=256)]


@dataclass(frozen=True)
class GetIssuer(Message):
    type: ClassVar[str] = "issuer"
    # the hex SHA-256 of the issuer certificate
    fingerprint: Annotated[str, Bounds(pattern="[0-9a-fA-F]{64}", what="64 hex digits")]


@dataclass(frozen=True)
class LogInfo(Message):
    type: ClassVar[str] = "log_info"


@dataclass(frozen=True)
class AcceptRoots(Message):
    type: ClassVar[str] = "accept_roots"
    certificates: Chain


@dataclass(frozen=True)
class _RefreshCheckpoint(Message):
    type: ClassVar[str] = "_refresh_checkpoint"


@dataclass(frozen=True)
class _RetryLog(Message):
    type: ClassVar[str] = "_retry_log"


def _failing_resource(exc: BaseException) -> str | None:
    """Which resource of the environment ``exc`` says is failing; None for a bug."""
    if isinstance(exc, OSError | sqlite3.OperationalError | LogUnavailable):
        return STORAGE
    if isinstance(exc, HsmError | ActorUnavailable | ActorCrashed | RequestTimeout):
        return SIGNER
    return None


def _load(der: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise InvalidChain(f"{what} is not a DER X.509 certificate: {exc}") from None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


class CTLogActor(SupervisedActor):
    def __init__(self, context: ActorContext, config: CtLogConfig, hsm: str = "hsm") -> None:
        super().__init__(context)
        self.config = config
        self.hsm = hsm
        self.log: TileLog | None = None
        self._pool: list[tuple[LogEntryInput, Reply]] = []
        self._pool_since = 0.0
        self._roots: dict[bytes, x509.Certificate] = {}  # SHA-256 of DER -> root
        self._verified_links: set[tuple[bytes, bytes]] = set()  # (child, issuer) DER digests
        self._down: str | None = None  # the failing resource, while appends are refused
        self._retries = 0  # failed probes in a row
        self._retry_pending = False

    # Lifecycle ----------------------------------------------------------------------

    def setup(self) -> None:
        self.config.storage_dir.mkdir(parents=True, exist_ok=True)
        self.config.index_db.parent.mkdir(parents=True, exist_ok=True)
        info = self.registry.ask(self.hsm, EnsureKey(self.config.key, "ec-p256"), timeout=60)
        self.public_key_der = info.public_key_der
        self.log = self._open_log()
        self._load_roots()
        self.every(self.config.checkpoint_interval_s, _RefreshCheckpoint())

    def cleanup(self) -> None:
        self._close_log()

    def _open_log(self) -> TileLog:
        return TileLog.open(
            LocalDirectoryStorage(self.config.storage_dir),
            self._sign,
            serialization.load_der_public_key(self.public_key_der),
            self.config.origin,
            self.config.index_db,
            now_ms=_now_ms(),
            sign_many=self._sign_many,
        )

    def _close_log(self) -> None:
        if self.log is not None:
            log, self.log = self.log, None
            try:
                log.close()
            except sqlite3.Error:
                pass  # closing what a failing disk left behind; reopening starts clean

    def _sign(self, data: bytes) -> bytes:
        return self.registry.ask(self.hsm, SignData(self.config.key, data))

    def _sign_many(self, items: list[bytes]) -> list[bytes]:
        return self.registry.ask(self.hsm, SignBatch(self.config.key, items), timeout=60)

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
        if self._down is None:
            return
        try:
            if self.log is None:
                self.log = self._open_log()
            self.log.refresh_checkpoint(_now_ms())  # the probe: a signed, durable write
        except Exception as exc:
            resource = _failing_resource(exc)
            if resource is None:
                raise
            self._retries += 1
            self._degrade(resource, exc)
            return
        resource, self._down, self._retries = self._down, None, 0
        self.clear_fault(resource)

    # Submissions --------------------------------------------------------------------

    def on_receive(self, envelope: Any) -> Any:
        result = super().on_receive(envelope)
        if self._pool and (
            self.actor_inbox.empty()
            or len(self._pool) >= self.config.max_batch
            or time.monotonic() - self._pool_since >= self.config.pool_period_ms / 1000
        ):
            self._sequence()
        return result

    @handles(AddChain)
    def add_chain(self, msg: AddChain) -> None:
        chain = self._check_chain(msg.chain, precert=False)
        self._submit(LogEntryInput.x509(msg.chain[0], tuple(msg.chain[1 : len(chain)])))

    @handles(AddPreChain)
    def add_pre_chain(self, msg: AddPreChain) -> None:
        chain = self._check_chain(msg.chain, precert=True)
        if len(chain) < 2:
            raise InvalidChain("a precertificate chain needs the issuing CA after the precert")
        spki = (
            chain[1]
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        entry = LogEntryInput.precert(
            msg.chain[0], issuer_key_hash(spki), tuple(msg.chain[1 : len(chain)])
        )
        self._submit(entry)

    def _submit(self, entry: LogEntryInput) -> None:
        if self._down is not None:
            raise self._unavailable()
        if len(self._pool) >= self.config.max_pool:
            retry = max(1, round(self.config.pool_period_ms / 1000))
            raise LogBusy(
                f"the log's pool is full ({self.config.max_pool}); try again shortly",
                retry_after_s=retry,
            )
        if not self._pool:
            self._pool_since = time.monotonic()
        self._pool.append((entry, self.defer()))

    def _sequence(self) -> None:
        """Append the pool durably, then answer every submitter with its SCT."""
        pool, self._pool = self._pool, []
        try:
            results = self._log.append_batch([entry for entry, _ in pool], _now_ms())
        except Exception as exc:
            resource = _failing_resource(exc)
            if resource is None:
                for _, reply in pool:
                    reply(outcome.Error(CTError(f"the log could not append: {exc}")))
                raise  # a bug: crash; the restart reopens and recovers the log
            self._degrade(resource, exc)
            refusal = self._unavailable()
            for _, reply in pool:
                reply(outcome.Error(refusal))
            return
        for (_, reply), result in zip(pool, results, strict=True):
            sct = result.sct
            reply(outcome.Value({
                "sct_version": 0,
                "id": sct.log_id,
                "timestamp": sct.timestamp,
                "extensions": sct.extensions,
                "signature": sct.signature.encode(),
                "leaf_index": result.leaf_index,
                "sct": sct.encode(),
                "duplicate": result.duplicate,
            }))  # fmt: skip

    def _check_chain(self, chain_der: list[bytes], precert: bool) -> list[x509.Certificate]:
        """Each certificate signed by the next, ending at (or under) an accepted root.

        Returns the chain up to and including the accepted root."""
        if not chain_der:
            raise InvalidChain("the chain is empty")
        if len(chain_der) > MAX_CHAIN:
            raise InvalidChain(f"the chain has more than {MAX_CHAIN} certificates")
        chain = [_load(der, f"chain[{i}]") for i, der in enumerate(chain_der)]
        try:
            poisoned = chain[0].extensions.get_extension_for_oid(POISON).critical
        except x509.ExtensionNotFound:
            poisoned = False
        except (x509.DuplicateExtension, ValueError) as exc:
            raise InvalidChain(f"chain[0]'s extensions cannot be read: {exc}") from None
        if precert and not poisoned:
            raise InvalidChain("add-pre-chain needs a precertificate (critical CT poison)")
        if not precert and poisoned:
            raise InvalidChain("add-chain was given a precertificate; use add-pre-chain")
        digests = [hashlib.sha256(der).digest() for der in chain_der]
        for i, cert in enumerate(chain):
            if digests[i] in self._roots:
                return chain[: i + 1]
            if i + 1 < len(chain):
                if not self._link(i, cert, digests[i], chain[i + 1], digests[i + 1]):
                    raise InvalidChain(f"chain[{i}] is not signed by chain[{i + 1}]")
                continue
            for digest, root in self._roots.items():
                if self._link(i, cert, digests[i], root, digest):
                    return chain
        raise InvalidChain("the chain does not lead to a root this log accepts (see get-roots)")

    def _link(
        self,
        i: int,
        cert: x509.Certificate,
        digest: bytes,
        issuer: x509.Certificate,
        issuer_digest: bytes,
    ) -> bool:
        """Is ``cert`` signed by ``issuer``? CA-to-CA links (not the submitted leaf,
        i > 0) are remembered by the digests of both DERs: the issuer submits the
        same intermediate with every certificate, and one ECDSA verify is ~55 us."""
        if i > 0 and (digest, issuer_digest) in self._verified_links:
            return True
        if not _issued_by(cert, issuer):
            return False
        if i > 0 and len(self._verified_links) < 4096:
            self._verified_links.add((digest, issuer_digest))
        return True

    # Accepted roots ---------------------------------------------------------------

    @handles(AcceptRoots)
    def accept_roots(self, msg: AcceptRoots) -> int:
        for der in msg.certificates:
            cert = _load(der, "root")
            self._roots[hashlib.sha256(der).digest()] = cert
        self._save_roots()
        return len(self._roots)

    def _roots_file(self) -> Path:
        return self.config.storage_dir.parent / "accepted-roots.pem"

    def _load_roots(self) -> None:
        path = self._roots_file()
        if path.exists():
            for cert in x509.load_pem_x509_certificates(path.read_bytes()):
                der = cert.public_bytes(serialization.Encoding.DER)
                self._roots[hashlib.sha256(der).digest()] = cert

    def _save_roots(self) -> None:
        data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self._roots.values())
        replace_file(self._roots_file(), data)

    # Reads (RFC 6962 §4, static-ct-api) ------------------------------------------

    @handles(GetSTH)
    def get_sth(self, msg: GetSTH) -> dict[str, Any]:
        return self._log.sth().to_json()

    @handles(GetConsistency)
    def get_sth_consistency(self, msg: GetConsistency) -> dict[str, Any]:
        if not 0 < msg.first <= msg.second:
            raise TreeSizeOutOfRange(f"need 0 < first <= second, got {msg.first}, {msg.second}")
        return {"consistency": self._log.consistency_proof(msg.first, msg.second)}

    @handles(GetProofByHash)
    def get_proof_by_hash(self, msg: GetProofByHash) -> dict[str, Any]:
        index = self._log.index_of(msg.hash)
        if index is None or index >= msg.tree_size:
            raise IndexOutOfRange(f"no leaf with that hash in the tree of size {msg.tree_size}")
        return {"leaf_index": index, "audit_path": self._log.inclusion_proof(index, msg.tree_size)}

    @handles(GetEntries)
    def get_entries(self, msg: GetEntries) -> dict[str, Any]:
        if msg.start < 0 or msg.end < msg.start:
            raise IndexOutOfRange(f"need 0 <= start <= end, got {msg.start}, {msg.end}")
        if msg.start >= self._log.size:
            raise IndexOutOfRange(f"start {msg.start} is beyond the tree size {self._log.size}")
        end = min(msg.end + 1, self._log.size, msg.start + self.config.max_entries_per_page)
        return {"entries": [{"leaf_input": leaf, "extra_data": extra}
                            for leaf, extra in self._log.get_entries(msg.start, end)]}  # fmt: skip

    @handles(GetRoots)
    def get_roots(self, msg: GetRoots) -> dict[str, Any]:
        return {"certificates": [c.public_bytes(serialization.Encoding.DER)
                                 for c in self._roots.values()]}  # fmt: skip

    @handles(GetEntryAndProof)
    def get_entry_and_proof(self, msg: GetEntryAndProof) -> dict[str, Any]:
        proof = self._log.inclusion_proof(msg.leaf_index, msg.tree_size)
        ((leaf, extra),) = self._log.get_entries(msg.leaf_index, msg.leaf_index + 1)
        return {"leaf_input": leaf, "extra_data": extra, "audit_path": proof}

    @handles(GetCheckpoint)
    def checkpoint(self, msg: GetCheckpoint) -> bytes:
        return self._log.checkpoint()

    @handles(GetTile)
    def tile(self, msg: GetTile) -> bytes:
        return self._log.tile(msg.path)

    @handles(GetIssuer)
    def issuer(self, msg: GetIssuer) -> bytes:
        try:
            fingerprint = bytes.fromhex(msg.fingerprint)
        except ValueError:
            raise TileNotFound(f"{msg.fingerprint!r} is not a hex fingerprint") from None
        return self._log.issuer(fingerprint)

    @handles(LogInfo)
    def log_info(self, msg: LogInfo) -> dict[str, Any]:
        sth = self._log.sth()
        key = serialization.load_der_public_key(self.public_key_der)
        return {
            "origin": self.config.origin,
            "log_id": self._log.log_id,
            "public_key": key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode("ascii"),
            "tree_size": sth.tree_size,
            "sth_timestamp": sth.timestamp,
            "sth_age_s": max(0.0, (_now_ms() - sth.timestamp) / 1000),
            "pool": len(self._pool),
            "tile_reads": self._log.tile_reads,
            "roots": len(self._roots),
        }

    @handles(_RefreshCheckpoint)
    def refresh_checkpoint(self, msg: _RefreshCheckpoint) -> None:
        if self._down is not None:
            return  # the retry probes instead, with backoff
        try:
            self._log.refresh_checkpoint(_now_ms())
        except Exception as exc:
            resource = _failing_resource(exc)
            if resource is None:
                raise
            self._degrade(resource, exc)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
