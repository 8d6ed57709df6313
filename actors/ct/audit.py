"""Checks of what a CT log says, made by a party that does not trust it; sans-IO.

Both outside views of the log use these: the monitor actor (``HeadChecker``: each
new tree head against the last one verified, RFC 6962 §5.3, RFC 9162 §8.2) and
``trustchain ct`` (a tree head, a certificate's SCT and inclusion, the whole log
recomputed from its entries, RFC 6962 §3.4, §4). Every function takes what was
fetched, already in hand, and returns what it verified or raises ``CheckFailed``,
whose message says what did not verify. ``Misbehaviour`` (a ``CheckFailed``)
also names the kind of lie, for the monitor's alerts and counters.

Replies carry bytes in-process and base64 over the control socket; both are
accepted where the monitor reads them (``as_bytes``).

Not done here: fetching (the monitor's requests, the CLI's control socket), time
(``now_ms`` is passed in), deciding which key to trust (the caller pins the one
``public_key_of`` checks), gossip, and keeping verified heads across restarts.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .checkpoint import SignedTreeHead
from .entries import TileLeaf
from .errors import CTError, ProofError, SignatureError
from .merkle import EMPTY_ROOT, leaf_hash, root_from_leaf_hashes, verify_consistency
from .merkle import verify_inclusion as verify_inclusion_proof
from .rfc6962 import (
    SCT_LIST_OID,
    DigitallySigned,
    LogEntryType,
    SignedCertificateTimestamp,
    TimestampedEntry,
    decode_merkle_tree_leaf,
    decode_sct_list,
    issuer_key_hash,
    log_id,
    precert_tbs_from_certificate,
    verify_sct,
)


class AlertKind(enum.StrEnum):
    BAD_SIGNATURE = "bad_signature"  # malformed head, or its signature does not verify
    SHRINKING = "shrinking"  # a head smaller than one already verified
    FORK = "fork"  # same size as a verified head, another root
    INCONSISTENT = "inconsistent"  # the consistency proof does not verify
    STALE = "stale"  # the newest head is older than max_sth_age_s


class CheckFailed(Exception):
    """Something the log said, or a certificate, did not verify; the message says what."""


class Misbehaviour(CheckFailed):
    """Evidence that the log misbehaves, of a kind the monitor alerts on (never a reply)."""

    def __init__(self, kind: AlertKind, text: str, cause: BaseException | None = None) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.cause = cause  # what could not be parsed, for callers that say it their way


@contextlib.contextmanager
def failing_as(what: str) -> Iterator[None]:
    """A CT verification error inside becomes ``CheckFailed("<what>: <why>")``."""
    try:
        yield
    except CTError as exc:
        raise CheckFailed(f"{what}: {exc.message}") from None


def as_bytes(value: bytes | str) -> bytes:
    """Replies carry bytes in-process and base64 over the control socket."""
    return value if isinstance(value, bytes) else base64.b64decode(value, validate=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def spki_der(key: Any) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_of(info: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The log key from a log_info reply, checked against its log ID."""
    key = serialization.load_pem_public_key(info["public_key"].encode())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CheckFailed(f"the log key is {type(key).__name__}, not ECDSA P-256")
    if log_id(spki_der(key)) != base64.b64decode(info["log_id"]):
        raise CheckFailed("log_info's log_id is not the SHA-256 of its public key")
    return key


# Tree heads ------------------------------------------------------------------------


def describe(sth: SignedTreeHead) -> str:
    return f"size {sth.tree_size} root {sth.root_hash.hex()[:16]}… at {sth.timestamp}"


def parse_sth(body: Mapping[str, Any]) -> SignedTreeHead:
    """An RFC 6962 §4.3 get-sth body as a SignedTreeHead (signature not checked)."""
    try:
        root = as_bytes(body["sha256_root_hash"])
        signature = DigitallySigned.decode(as_bytes(body["tree_head_signature"]))
        size, timestamp = body["tree_size"], body["timestamp"]
    except (KeyError, TypeError, ValueError, binascii.Error, CTError) as exc:
        raise Misbehaviour(
            AlertKind.BAD_SIGNATURE, f"malformed tree head: {exc!r}", cause=exc
        ) from None
    if not (isinstance(size, int) and isinstance(timestamp, int) and size >= 0 and len(root) == 32):
        raise Misbehaviour(
            AlertKind.BAD_SIGNATURE,
            "malformed tree head: bad size, time or root",
            cause=ValueError("bad size, time or root"),
        )
    return SignedTreeHead(size, timestamp, root, signature)


def signed_tree_head(body: Mapping[str, Any], key: ec.EllipticCurvePublicKey) -> SignedTreeHead:
    """A get-sth reply, its signature verified with ``key``."""
    try:
        sth = parse_sth(body)
        sth.verify(key)
    except (Misbehaviour, SignatureError) as exc:
        cause = exc.cause if isinstance(exc, Misbehaviour) else exc
        why = cause.message if isinstance(cause, CTError) else f"malformed: {cause!r}"
        raise CheckFailed(
            f"the tree head (size {body.get('tree_size')}) does not verify: {why}"
        ) from None
    return sth


class HeadChecker:
    """The pinned key, the last verified head, and the verdict on a new head.

    ``check(sth)`` returns None when the head can be accepted as is, or the
    (first, second) sizes of the consistency proof to fetch, then ``accept``.
    """

    def __init__(self, public_key: ec.EllipticCurvePublicKey, max_sth_age_ms: int) -> None:
        self.public_key = public_key
        self.max_sth_age_ms = max_sth_age_ms
        self.verified: SignedTreeHead | None = None

    def check(self, sth: SignedTreeHead) -> tuple[int, int] | None:
        try:
            sth.verify(self.public_key)
        except SignatureError:
            raise Misbehaviour(
                AlertKind.BAD_SIGNATURE, f"tree head ({describe(sth)}) is not signed by the log key"
            ) from None
        if sth.tree_size == 0 and sth.root_hash != EMPTY_ROOT:
            raise Misbehaviour(
                AlertKind.FORK, f"an empty tree with a non-empty root ({describe(sth)})"
            )
        last = self.verified
        if last is None or last.tree_size == 0:
            return None
        if sth.tree_size < last.tree_size:
            raise Misbehaviour(
                AlertKind.SHRINKING,
                f"tree shrank from {last.tree_size} to {sth.tree_size} ({describe(sth)})",
            )
        if sth.tree_size == last.tree_size:
            if sth.root_hash != last.root_hash:
                raise Misbehaviour(
                    AlertKind.FORK,
                    f"two signed roots for size {sth.tree_size}: {last.root_hash.hex()} "
                    f"and {sth.root_hash.hex()}",
                )
            return None
        return last.tree_size, sth.tree_size

    def accept(self, sth: SignedTreeHead, proof: Sequence[bytes] = ()) -> None:
        """Make ``sth`` the last verified head (``proof``: from the previous one, if needed)."""
        last = self.verified
        if last is not None and 0 < last.tree_size < sth.tree_size:
            try:
                verify_consistency(
                    last.tree_size, sth.tree_size, last.root_hash, sth.root_hash, proof
                )
            except ProofError as exc:
                raise Misbehaviour(
                    AlertKind.INCONSISTENT,
                    f"no consistency from size {last.tree_size} to {sth.tree_size}: {exc.message}",
                ) from None
        if last is None or (sth.tree_size, sth.timestamp) > (last.tree_size, last.timestamp):
            self.verified = sth

    def check_age(self, sth: SignedTreeHead, now_ms: int, why: str = "") -> None:
        sth_age_ms = now_ms - sth.timestamp
        if sth_age_ms > self.max_sth_age_ms:
            raise Misbehaviour(
                AlertKind.STALE,
                f"the newest tree head is {sth_age_ms / 1000:.1f} s old (limit "
                f"{self.max_sth_age_ms / 1000:g} s; {describe(sth)}){why}",
            )


# One certificate: its SCT and its inclusion ----------------------------------------


def embedded_scts(cert: x509.Certificate) -> list[SignedCertificateTimestamp]:
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SCT_LIST_OID))
        der = ext.value.public_bytes()
        # extnValue is an OCTET STRING around the TLS-encoded list (RFC 6962 §3.3).
        if der[0] != 0x04 or der[1] == 0x80:
            raise ValueError("the SCT list is not an OCTET STRING")
        header = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
        return decode_sct_list(der[header:])
    except x509.ExtensionNotFound:
        raise CheckFailed("the certificate carries no embedded SCT list") from None
    except (ValueError, IndexError, CTError) as exc:
        raise CheckFailed(f"the certificate's SCT list is malformed: {exc}") from None


def precert_leaf(
    cert: x509.Certificate, issuer: x509.Certificate, sct: SignedCertificateTimestamp
) -> TileLeaf:
    """The precertificate entry the log holds for ``cert``, rebuilt from ``cert`` alone."""
    tbs = precert_tbs_from_certificate(cert.public_bytes(serialization.Encoding.DER))
    entry = TimestampedEntry(
        sct.timestamp,
        LogEntryType.PRECERT_ENTRY,
        tbs,
        issuer_key_hash(spki_der(issuer.public_key())),
        sct.extensions,
    )
    return TileLeaf(entry, None, ())


def verified_sct(
    cert: x509.Certificate, issuer: x509.Certificate, key: ec.EllipticCurvePublicKey
) -> tuple[SignedCertificateTimestamp, TileLeaf]:
    """The SCT this log (``key``) embedded in ``cert``, verified, and the leaf it promises."""
    lid = log_id(spki_der(key))
    ours = [s for s in embedded_scts(cert) if s.log_id == lid]
    if not ours:
        raise CheckFailed(f"the certificate has no SCT from this log (log id {b64(lid)})")
    sct = ours[0]
    leaf = precert_leaf(cert, issuer, sct)
    with failing_as("the embedded SCT does not verify for this certificate"):
        verify_sct(sct, key, LogEntryType.PRECERT_ENTRY, leaf.timestamped_entry.signed_entry())
    return sct, leaf


def certificate_included(
    sct: SignedCertificateTimestamp, digest: bytes, reply: Mapping[str, Any], sth: SignedTreeHead
) -> int:
    """A get-proof-by-hash ``reply`` for the leaf hash ``digest`` of ``sct``'s entry,
    verified against ``sth``: the leaf index."""
    index, path = reply["leaf_index"], [base64.b64decode(p) for p in reply["audit_path"]]
    if sct.leaf_index() not in (None, index):
        raise CheckFailed(f"the SCT says leaf {sct.leaf_index()}, the log says {index}")
    with failing_as(f"the inclusion proof of leaf {index} does not verify"):
        verify_inclusion_proof(digest, index, sth.tree_size, path, sth.root_hash)
    return int(index)


# The whole log, from its entries ---------------------------------------------------


def entry_hashes(entries: Iterable[Mapping[str, Any]], start: int) -> list[bytes]:
    """The leaf hashes of a get-entries page whose first entry is ``start``; each
    entry must be an RFC 6962 MerkleTreeLeaf."""
    hashes = []
    for i, entry in enumerate(entries, start):
        data = base64.b64decode(entry["leaf_input"])
        with failing_as(f"entry {i} is not an RFC 6962 MerkleTreeLeaf"):
            decode_merkle_tree_leaf(data)
        hashes.append(leaf_hash(data))
    return hashes


def root_matches(hashes: Sequence[bytes], sth: SignedTreeHead) -> bytes:
    """The root of ``hashes``, which must be the one ``sth`` signed."""
    root = root_from_leaf_hashes(hashes)
    if root != sth.root_hash:
        raise CheckFailed(
            f"the {len(hashes)} entries hash to root {root.hex()}, but the signed tree "
            f"head says {sth.root_hash.hex()}"
        )
    return root


def consistent(hashes: Sequence[bytes], first: int, root: bytes, reply: Mapping[str, Any]) -> None:
    """A get-sth-consistency ``reply`` from the tree of ``hashes[:first]`` to that of
    all ``hashes`` (whose root is ``root``)."""
    size = len(hashes)
    proof = [base64.b64decode(p) for p in reply["consistency"]]
    with failing_as(f"the consistency proof from size {first} to {size} does not verify"):
        verify_consistency(first, size, root_from_leaf_hashes(hashes[:first]), root, proof)


def entry_included(
    hashes: Sequence[bytes], index: int, root: bytes, reply: Mapping[str, Any]
) -> None:
    """A get-proof-by-hash ``reply`` for entry ``index`` in the tree of ``hashes``."""
    if reply["leaf_index"] != index:
        raise CheckFailed(f"entry {index}'s hash is at index {reply['leaf_index']} in the log")
    path = [base64.b64decode(p) for p in reply["audit_path"]]
    with failing_as(f"the inclusion proof of entry {index} does not verify"):
        verify_inclusion_proof(hashes[index], index, len(hashes), path, root)
