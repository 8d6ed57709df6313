"""RFC 6962 §3 structures, TLS-encoded byte for byte, plus the static-ct-api SCT extension.

Implements: LogEntryType and TimestampedEntry / MerkleTreeLeaf (§3.4), the
SignedCertificateTimestamp v1 and its signed input (§3.2), the tree-head signed
input (§3.5), SignedCertificateTimestampList and the DER value of the embedded
SCT extension 1.3.6.1.4.1.11129.2.4.2 (§3.3), and the C2SP static-ct-api
``leaf_index`` extension (type 0, 40-bit big-endian index; 8 bytes in all).

Invariants: ``decode(encode(x)) == x`` and decoders reject trailing bytes, so
every value has exactly one encoding. Signatures are always ECDSA (3) over
SHA-256 (4), DER-encoded, produced by an injected ``sign(data) -> bytes`` that
hashes ``data`` itself. Not done here: RSA log keys, v2 (RFC 9162) SCTs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors import der

from ._tls import Reader, opaque, uint
from .errors import MalformedStructure, SignatureError

Signer = Callable[[bytes], bytes]
"""``sign(data)`` returns a DER ECDSA P-256 signature over SHA-256(data)."""

SCT_LIST_OID = "1.3.6.1.4.1.11129.2.4.2"
POISON_OID = "1.3.6.1.4.1.11129.2.4.3"
HASH_SHA256 = 4
SIG_ECDSA = 3
SCT_VERSION_V1 = 0
SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP = 0
SIGNATURE_TYPE_TREE_HASH = 1
MERKLE_LEAF_VERSION_V1 = 0
LEAF_TYPE_TIMESTAMPED_ENTRY = 0
EXTENSION_LEAF_INDEX = 0
MAX_LEAF_INDEX = (1 << 40) - 1


class LogEntryType(IntEnum):
    X509_ENTRY = 0
    PRECERT_ENTRY = 1


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def log_id(spki_der: bytes) -> bytes:
    """RFC 6962 §3.2 LogID: SHA-256 of the log's DER SubjectPublicKeyInfo."""
    return sha256(spki_der)


def issuer_key_hash(issuer_spki_der: bytes) -> bytes:
    """RFC 6962 §3.2 PreCert.issuer_key_hash: SHA-256 of the issuer's SPKI."""
    return sha256(issuer_spki_der)


@dataclass(frozen=True, slots=True)
class TimestampedEntry:
    """§3.4 TimestampedEntry. ``certificate`` is the ASN.1Cert (x509_entry) or
    the precert TBSCertificate (precert_entry, poison removed)."""

    timestamp: int
    entry_type: LogEntryType
    certificate: bytes
    issuer_key_hash: bytes | None = None
    extensions: bytes = b""

    def __post_init__(self) -> None:
        is_precert = self.entry_type == LogEntryType.PRECERT_ENTRY
        if is_precert != (self.issuer_key_hash is not None):
            raise MalformedStructure("issuer_key_hash is set exactly for precert entries")
        if self.issuer_key_hash is not None and len(self.issuer_key_hash) != 32:
            raise MalformedStructure("issuer_key_hash is 32 bytes")

    def signed_entry(self) -> bytes:
        """The ``select (entry_type)`` part: ASN.1Cert, or PreCert."""
        body = opaque(self.certificate, 3, minimum=1)
        return body if self.issuer_key_hash is None else self.issuer_key_hash + body

    def encode(self) -> bytes:
        return (
            uint(self.timestamp, 8)
            + uint(self.entry_type, 2)
            + self.signed_entry()
            + opaque(self.extensions, 2)
        )

    @classmethod
    def read(cls, r: Reader) -> TimestampedEntry:
        timestamp = r.uint(8)
        raw_type = r.uint(2)
        try:
            entry_type = LogEntryType(raw_type)
        except ValueError:
            raise MalformedStructure(f"unknown LogEntryType {raw_type}") from None
        key_hash = r.fixed(32) if entry_type == LogEntryType.PRECERT_ENTRY else None
        certificate = r.opaque(3, minimum=1)
        return cls(timestamp, entry_type, certificate, key_hash, r.opaque(2))

    @classmethod
    def decode(cls, data: bytes) -> TimestampedEntry:
        r = Reader(data)
        entry = cls.read(r)
        r.finish()
        return entry

    def identity(self) -> bytes:
        """SHA-256 of (entry_type, signed_entry): what deduplication keys on."""
        return sha256(uint(self.entry_type, 2) + self.signed_entry())


def encode_merkle_tree_leaf(entry: TimestampedEntry) -> bytes:
    """§3.4 MerkleTreeLeaf {version v1, leaf_type timestamped_entry, entry}."""
    return bytes([MERKLE_LEAF_VERSION_V1, LEAF_TYPE_TIMESTAMPED_ENTRY]) + entry.encode()


def decode_merkle_tree_leaf(data: bytes) -> TimestampedEntry:
    r = Reader(data)
    if r.uint(1) != MERKLE_LEAF_VERSION_V1 or r.uint(1) != LEAF_TYPE_TIMESTAMPED_ENTRY:
        raise MalformedStructure("MerkleTreeLeaf must be v1 timestamped_entry")
    entry = TimestampedEntry.read(r)
    r.finish()
    return entry


@dataclass(frozen=True, slots=True)
class DigitallySigned:
    """RFC 5246 §4.7 digitally-signed, as RFC 6962 uses it."""

    signature: bytes
    hash_algorithm: int = HASH_SHA256
    signature_algorithm: int = SIG_ECDSA

    def encode(self) -> bytes:
        return bytes([self.hash_algorithm, self.signature_algorithm]) + opaque(self.signature, 2)

    @classmethod
    def read(cls, r: Reader) -> DigitallySigned:
        hash_alg, sig_alg = r.uint(1), r.uint(1)
        return cls(r.opaque(2), hash_alg, sig_alg)

    @classmethod
    def decode(cls, data: bytes) -> DigitallySigned:
        r = Reader(data)
        out = cls.read(r)
        r.finish()
        return out


def verify_ecdsa(public_key: ec.EllipticCurvePublicKey, ds: DigitallySigned, data: bytes) -> None:
    if (ds.hash_algorithm, ds.signature_algorithm) != (HASH_SHA256, SIG_ECDSA):
        raise SignatureError("only ECDSA over SHA-256 signatures are accepted")
    try:
        public_key.verify(ds.signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("signature does not verify under the log key") from None


@dataclass(frozen=True, slots=True)
class SignedCertificateTimestamp:
    """§3.2 SignedCertificateTimestamp (v1)."""

    log_id: bytes
    timestamp: int
    extensions: bytes
    signature: DigitallySigned
    version: int = SCT_VERSION_V1

    def encode(self) -> bytes:
        return (
            bytes([self.version])
            + self.log_id
            + uint(self.timestamp, 8)
            + opaque(self.extensions, 2)
            + self.signature.encode()
        )

    @classmethod
    def decode(cls, data: bytes) -> SignedCertificateTimestamp:
        r = Reader(data)
        version = r.uint(1)
        if version != SCT_VERSION_V1:
            raise MalformedStructure(f"unsupported SCT version {version}")
        sct = cls(r.fixed(32), r.uint(8), r.opaque(2), DigitallySigned.read(r), version)
        r.finish()
        return sct

    def leaf_index(self) -> int | None:
        return leaf_index_from_extensions(self.extensions)


def sct_signature_input(
    timestamp: int, entry_type: LogEntryType, signed_entry: bytes, extensions: bytes
) -> bytes:
    """§3.2 the digitally-signed struct of an SCT (what the log key signs)."""
    return (
        bytes([SCT_VERSION_V1, SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP])
        + uint(timestamp, 8)
        + uint(entry_type, 2)
        + signed_entry
        + opaque(extensions, 2)
    )


def tree_head_signature_input(timestamp: int, tree_size: int, root_hash: bytes) -> bytes:
    """§3.5 TreeHeadSignature (what the log key signs for an STH)."""
    if len(root_hash) != 32:
        raise MalformedStructure("sha256_root_hash is 32 bytes")
    return (
        bytes([SCT_VERSION_V1, SIGNATURE_TYPE_TREE_HASH])
        + uint(timestamp, 8)
        + uint(tree_size, 8)
        + root_hash
    )


def sign_sct(sign: Signer, log_id_: bytes, entry: TimestampedEntry) -> SignedCertificateTimestamp:
    """Sign ``entry`` (its timestamp and extensions become the SCT's)."""
    data = sct_signature_input(
        entry.timestamp, entry.entry_type, entry.signed_entry(), entry.extensions
    )
    return SignedCertificateTimestamp(
        log_id_, entry.timestamp, entry.extensions, DigitallySigned(sign(data))
    )


def verify_sct(
    sct: SignedCertificateTimestamp,
    public_key: ec.EllipticCurvePublicKey,
    entry_type: LogEntryType,
    signed_entry: bytes,
) -> None:
    """Raise ``SignatureError`` unless ``sct`` signs ``signed_entry`` (§3.2)."""
    data = sct_signature_input(sct.timestamp, entry_type, signed_entry, sct.extensions)
    verify_ecdsa(public_key, sct.signature, data)


def leaf_index_extension(index: int) -> bytes:
    """static-ct-api CtExtensions holding only ``leaf_index`` (8 bytes)."""
    if not 0 <= index <= MAX_LEAF_INDEX:
        raise MalformedStructure(f"leaf index {index} does not fit in 40 bits")
    return bytes([EXTENSION_LEAF_INDEX]) + opaque(index.to_bytes(5, "big"), 2)


def parse_ct_extensions(data: bytes) -> dict[int, bytes]:
    """static-ct-api CtExtensions as {extension_type: extension_data}."""
    r = Reader(data)
    out: dict[int, bytes] = {}
    while not r.at_end():
        ext_type = r.uint(1)
        if ext_type in out:
            raise MalformedStructure(f"duplicate CT extension {ext_type}")
        out[ext_type] = r.opaque(2)
    return out


def leaf_index_from_extensions(data: bytes) -> int | None:
    value = parse_ct_extensions(data).get(EXTENSION_LEAF_INDEX)
    if value is None:
        return None
    if len(value) != 5:
        raise MalformedStructure("leaf_index extension data is 5 bytes")
    return int.from_bytes(value, "big")


def encode_sct_list(scts: Iterable[SignedCertificateTimestamp]) -> bytes:
    """§3.3 SignedCertificateTimestampList: SerializedSCT <1..2^16-1> list <1..2^16-1>."""
    body = b"".join(opaque(s.encode(), 2, minimum=1) for s in scts)
    return opaque(body, 2, minimum=1)


def decode_sct_list(data: bytes) -> list[SignedCertificateTimestamp]:
    outer = Reader(data)
    inner = Reader(outer.opaque(2, minimum=1))
    outer.finish()
    scts = []
    while not inner.at_end():
        scts.append(SignedCertificateTimestamp.decode(inner.opaque(2, minimum=1)))
    return scts


def sct_list_extension_value(scts: Iterable[SignedCertificateTimestamp]) -> bytes:
    """The extnValue contents of extension 1.3.6.1.4.1.11129.2.4.2: an OCTET
    STRING wrapping the TLS SCT list (pass it to ``x509.UnrecognizedExtension``)."""
    return der.octet_string(encode_sct_list(scts))


def precert_tbs_from_precertificate(precert_der: bytes) -> bytes:
    """§3.2 PreCert.tbs_certificate: the precertificate's TBS minus the poison."""
    return _without_extension(precert_der, POISON_OID)


def precert_tbs_from_certificate(cert_der: bytes) -> bytes:
    """The same bytes rebuilt from the final certificate by removing the embedded
    SCT list (how a TLS client verifies an embedded SCT, §3.2)."""
    return _without_extension(cert_der, SCT_LIST_OID)


def _without_extension(cert_der: bytes, oid: str) -> bytes:
    """The certificate's TBS re-encoded without extension ``oid`` (every other byte
    verbatim; an emptied [3] field is omitted, as certificate-transparency-go does)."""
    try:
        return der.strip_extension(der.certificate_tbs(cert_der), der.encode_oid(oid))
    except der.DerError as exc:
        raise MalformedStructure(f"cannot remove extension {oid}: {exc}") from None
