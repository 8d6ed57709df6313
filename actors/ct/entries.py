"""What the log stores per entry: static-ct-api ``TileLeaf`` and submissions.

A data tile (``tile/data/<N>``) is the concatenation of one TileLeaf per leaf of
the matching level-0 tile (C2SP static-ct-api, "Log entries")::

    struct {
        TimestampedEntry timestamped_entry;            // RFC 6962 §3.4
        select (entry_type) {
            case x509_entry: Empty;
            case precert_entry: ASN.1Cert pre_certificate;   // <1..2^24-1>
        };
        Fingerprint certificate_chain<0..2^16-1>;       // SHA-256 of each issuer
    } TileLeaf;

The Merkle leaf is rebuilt from ``timestamped_entry`` alone, so a data tile is
enough to recompute level 0 and to rebuild the deduplication index. Issuer
certificates themselves are stored once each at ``issuer/<hex fingerprint>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._tls import Reader, opaque, uint
from .errors import InvalidLogEntry, MalformedStructure
from .merkle import leaf_hash
from .rfc6962 import (
    LogEntryType,
    TimestampedEntry,
    encode_merkle_tree_leaf,
    precert_tbs_from_precertificate,
)


@dataclass(frozen=True, slots=True)
class LogEntryInput:
    """One submission: an add-chain (x509) or add-pre-chain (precert) body.

    ``certificate`` is the leaf certificate or the precertificate (DER);
    ``chain`` the issuer certificates (DER), nearest first; for a precert,
    ``issuer_key_hash`` and ``tbs_certificate`` (poison removed) form the PreCert.
    """

    entry_type: LogEntryType
    certificate: bytes
    chain: tuple[bytes, ...] = ()
    issuer_key_hash: bytes | None = None
    tbs_certificate: bytes | None = None
    signed_entry: bytes = field(init=False, repr=False, compare=False)
    """The RFC 6962 ``signed_entry`` (ASN.1Cert or PreCert), encoded once."""
    identity: bytes = field(init=False, repr=False, compare=False)
    """Deduplication key: SHA-256 of entry type and signed entry (no timestamp)."""

    def __post_init__(self) -> None:
        is_precert = self.entry_type == LogEntryType.PRECERT_ENTRY
        if is_precert != (self.tbs_certificate is not None):
            raise InvalidLogEntry("tbs_certificate is set exactly for precert entries")
        try:
            signed_entry = self.timestamped_entry(0).signed_entry()
        except MalformedStructure as exc:
            raise InvalidLogEntry(f"cannot be logged: {exc.message}") from None
        object.__setattr__(self, "signed_entry", signed_entry)
        object.__setattr__(
            self, "identity", hashlib.sha256(uint(self.entry_type, 2) + signed_entry).digest()
        )

    @classmethod
    def x509(cls, certificate: bytes, chain: Sequence[bytes] = ()) -> LogEntryInput:
        if not certificate:
            raise InvalidLogEntry("the certificate is empty")
        return cls(LogEntryType.X509_ENTRY, certificate, tuple(chain))

    @classmethod
    def precert(
        cls,
        precertificate: bytes,
        issuer_key_hash: bytes,
        chain: Sequence[bytes] = (),
        *,
        tbs_certificate: bytes | None = None,
    ) -> LogEntryInput:
        """``issuer_key_hash`` is SHA-256 of the SPKI of the CA that will sign the
        final certificate (``rfc6962.issuer_key_hash``). ``tbs_certificate``, the
        precertificate's TBS without the poison, is derived unless the caller built it
        (the in-process issuer, which added the poison to that very TBS)."""
        if len(issuer_key_hash) != 32:
            raise InvalidLogEntry("issuer_key_hash must be 32 bytes (SHA-256 of the SPKI)")
        tbs = tbs_certificate
        if tbs is None:
            try:
                tbs = precert_tbs_from_precertificate(precertificate)
            except MalformedStructure as exc:
                raise InvalidLogEntry(f"not a precertificate: {exc.message}") from None
        return cls(LogEntryType.PRECERT_ENTRY, precertificate, tuple(chain), issuer_key_hash, tbs)

    def timestamped_entry(self, timestamp: int, extensions: bytes = b"") -> TimestampedEntry:
        if self.tbs_certificate is not None:
            return TimestampedEntry(
                timestamp, self.entry_type, self.tbs_certificate, self.issuer_key_hash, extensions
            )
        return TimestampedEntry(timestamp, self.entry_type, self.certificate, None, extensions)


MERKLE_LEAF_PREFIX = b"\x00\x00"  # MerkleTreeLeaf version v1, leaf_type timestamped_entry


def fingerprint(cert_der: bytes) -> bytes:
    return hashlib.sha256(cert_der).digest()


@dataclass(frozen=True, slots=True)
class TileLeaf:
    timestamped_entry: TimestampedEntry
    pre_certificate: bytes | None
    chain_fingerprints: tuple[bytes, ...]

    @classmethod
    def from_input(cls, entry: LogEntryInput, timestamp: int, extensions: bytes = b"") -> TileLeaf:
        is_precert = entry.entry_type == LogEntryType.PRECERT_ENTRY
        return cls(
            entry.timestamped_entry(timestamp, extensions),
            entry.certificate if is_precert else None,
            tuple(fingerprint(c) for c in entry.chain),
        )

    def encode(self) -> bytes:
        return self.encode_and_hash()[0]

    def encode_and_hash(self) -> tuple[bytes, bytes]:
        """(TileLeaf encoding, Merkle leaf hash), encoding the entry only once."""
        entry = self.timestamped_entry.encode()
        pre = b"" if self.pre_certificate is None else opaque(self.pre_certificate, 3, 1)
        encoded = entry + pre + opaque(b"".join(self.chain_fingerprints), 2)
        return encoded, leaf_hash(MERKLE_LEAF_PREFIX + entry)

    @classmethod
    def read(cls, r: Reader) -> TileLeaf:
        entry = TimestampedEntry.read(r)
        pre = r.opaque(3, 1) if entry.entry_type == LogEntryType.PRECERT_ENTRY else None
        chain = r.opaque(2)
        if len(chain) % 32:
            raise MalformedStructure("certificate_chain is a list of 32-byte fingerprints")
        fps = tuple(chain[i : i + 32] for i in range(0, len(chain), 32))
        return cls(entry, pre, fps)

    @classmethod
    def decode(cls, data: bytes) -> TileLeaf:
        r = Reader(data)
        leaf = cls.read(r)
        r.finish()
        return leaf

    def merkle_tree_leaf(self) -> bytes:
        """RFC 6962 §3.4 MerkleTreeLeaf (``leaf_input`` of get-entries)."""
        return encode_merkle_tree_leaf(self.timestamped_entry)

    def leaf_hash(self) -> bytes:
        return leaf_hash(MERKLE_LEAF_PREFIX + self.timestamped_entry.encode())


def decode_data_tile(data: bytes) -> list[TileLeaf]:
    r = Reader(data)
    leaves = []
    while not r.at_end():
        leaves.append(TileLeaf.read(r))
    return leaves


def data_tile_offsets(data: bytes) -> list[int]:
    """Byte offset where each TileLeaf ends (to slice a partial tile from a wider one)."""
    r = Reader(data)
    ends = []
    while not r.at_end():
        TileLeaf.read(r)
        ends.append(r.pos)
    return ends


def extra_data(leaf: TileLeaf, issuers: Sequence[bytes]) -> bytes:
    """RFC 6962 §4.6 get-entries ``extra_data``: the x509 certificate_chain, or a
    PrecertChainEntry {pre_certificate, precertificate_chain}."""
    chain = opaque(b"".join(opaque(c, 3, 1) for c in issuers), 3)
    if leaf.pre_certificate is None:
        return chain
    return opaque(leaf.pre_certificate, 3, 1) + chain
