"""The CT log actor's reads (RFC 6962 §4, static-ct-api): served from the committed
tree, on the log's thread, between its appends (a mixin of ``CTLogActor``)."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization

from trustchain.actors.ct import (
    IndexOutOfRange,
    TileLog,
    TileNotFound,
    TreeSizeOutOfRange,
)
from trustchain.actors.ct.chains import ChainValidator
from trustchain.actors.ctlog.messages import (
    GetCheckpoint,
    GetEntries,
    GetEntryAndProof,
    GetIssuerCertificate,
    GetLogInfo,
    GetProofByHash,
    GetRoots,
    GetSTH,
    GetSTHConsistency,
    GetTile,
)
from trustchain.config import CtLogConfig
from trustchain.supervisors import handles


class LogReads:
    """The read handlers; ``CTLogActor`` provides what they stand on."""

    config: CtLogConfig
    chains: ChainValidator
    public_key_der: bytes
    _pool: list[Any]
    _out: Any

    @property
    def _log(self) -> TileLog:
        raise NotImplementedError

    def _now_ms(self) -> int:
        raise NotImplementedError

    @handles(GetSTH)
    def get_sth(self, msg: GetSTH) -> dict[str, Any]:
        return self._log.sth().to_json()

    @handles(GetSTHConsistency)
    def get_sth_consistency(self, msg: GetSTHConsistency) -> dict[str, Any]:
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
                                 for c in self.chains.roots.values()]}  # fmt: skip

    @handles(GetEntryAndProof)
    def get_entry_and_proof(self, msg: GetEntryAndProof) -> dict[str, Any]:
        proof = self._log.inclusion_proof(msg.leaf_index, msg.tree_size)
        ((leaf, extra),) = self._log.get_entries(msg.leaf_index, msg.leaf_index + 1)
        return {"leaf_input": leaf, "extra_data": extra, "audit_path": proof}

    @handles(GetCheckpoint)
    def get_checkpoint(self, msg: GetCheckpoint) -> bytes:
        return self._log.checkpoint()

    @handles(GetTile)
    def get_tile(self, msg: GetTile) -> bytes:
        return self._log.tile(msg.path)

    @handles(GetIssuerCertificate)
    def get_issuer_certificate(self, msg: GetIssuerCertificate) -> bytes:
        try:
            fingerprint = bytes.fromhex(msg.fingerprint)
        except ValueError:
            raise TileNotFound(f"{msg.fingerprint!r} is not a hex fingerprint") from None
        return self._log.issuer(fingerprint)

    @handles(GetLogInfo)
    def get_log_info(self, msg: GetLogInfo) -> dict[str, Any]:
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
            "sth_age_s": max(0.0, (self._now_ms() - sth.timestamp) / 1000),
            "pool": len(self._pool),
            "staged_batches": len(self._out),
            "tile_reads": self._log.tile_reads,
            "roots": len(self.chains.roots),
        }
