"""Signed tree heads as RFC 6962 get-sth and as C2SP checkpoints (signed notes).

A checkpoint (c2sp.org/tlog-checkpoint) is the note text::

    <origin>\\n<tree size, decimal>\\n<base64 root hash>\\n

then a blank line and signature lines ``— <key name> <base64(key ID || sig)>``
(c2sp.org/signed-note). For static-ct-api the log's line is an "RFC 6962 note
signature" (signature type 0x05): key name = origin, key ID = the first four
bytes of SHA-256(origin || 0x0A || 0x05 || LogID), and the signature body is
``RFC6962NoteSignature { uint64 timestamp; TreeHeadSignature signature; }`` -
the §3.5 digitally-signed struct, so a get-sth response and a checkpoint carry
the same signature and convert into each other without the key.

Parsing is strict (canonical decimal, one base64 root of 32 bytes, no extension
lines as static-ct-api requires); signature lines of unknown keys are ignored;
the log's line must be present and verify, or ``CheckpointError`` is raised.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ._tls import Reader, uint
from .errors import CheckpointError, MalformedStructure, SignatureError
from .rfc6962 import DigitallySigned, Signer, sha256, tree_head_signature_input, verify_ecdsa

SIGNATURE_TYPE_RFC6962 = 0x05
_SIG_LINE = re.compile(r"\u2014 (\S+) ([A-Za-z0-9+/=]+)")


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """RFC 6962 §3.5 / §4.3 signed tree head."""

    tree_size: int
    timestamp: int
    root_hash: bytes
    signature: DigitallySigned

    def to_json(self) -> dict[str, Any]:
        """The RFC 6962 §4.3 get-sth response body."""
        return {
            "tree_size": self.tree_size,
            "timestamp": self.timestamp,
            "sha256_root_hash": base64.b64encode(self.root_hash).decode(),
            "tree_head_signature": base64.b64encode(self.signature.encode()).decode(),
        }

    def verify(self, public_key: ec.EllipticCurvePublicKey) -> None:
        data = tree_head_signature_input(self.timestamp, self.tree_size, self.root_hash)
        verify_ecdsa(public_key, self.signature, data)


def sign_tree_head(
    sign: Signer, tree_size: int, timestamp: int, root_hash: bytes
) -> SignedTreeHead:
    data = tree_head_signature_input(timestamp, tree_size, root_hash)
    return SignedTreeHead(tree_size, timestamp, root_hash, DigitallySigned(sign(data)))


def note_key_id(origin: str, log_id: bytes) -> bytes:
    return sha256(origin.encode() + b"\n" + bytes([SIGNATURE_TYPE_RFC6962]) + log_id)[:4]


def checkpoint_text(origin: str, tree_size: int, root_hash: bytes) -> str:
    return f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"


def encode_checkpoint(sth: SignedTreeHead, origin: str, log_id: bytes) -> bytes:
    if not origin or any(c.isspace() or c == "+" for c in origin):
        raise ValueError("the origin (key name) must be non-empty, without spaces or '+'")
    body = note_key_id(origin, log_id) + uint(sth.timestamp, 8) + sth.signature.encode()
    line = f"\u2014 {origin} {base64.b64encode(body).decode()}\n"
    return (checkpoint_text(origin, sth.tree_size, sth.root_hash) + "\n" + line).encode()


def parse_checkpoint(
    data: bytes, origin: str, log_id: bytes, public_key: ec.EllipticCurvePublicKey
) -> SignedTreeHead:
    """Parse a checkpoint and verify the log's RFC 6962 note signature."""
    try:
        note = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError("a checkpoint is UTF-8 text") from None
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise CheckpointError("a signed note contains no control characters but newline")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise CheckpointError("a signed note is text, a blank line, then signature lines")
    text, sig_lines = note[: split + 1], note[split + 2 : -1].split("\n")
    lines = text.split("\n")[:-1]
    if len(lines) != 3:
        raise CheckpointError("an RFC 6962 checkpoint has exactly three lines, no extensions")
    if lines[0] != origin:
        raise CheckpointError(f"checkpoint origin {lines[0]!r} is not {origin!r}")
    if not re.fullmatch(r"0|[1-9][0-9]{0,19}", lines[1]):
        raise CheckpointError("the tree size is a decimal without leading zeros")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise CheckpointError("the root hash is not base64") from None
    if len(root) != 32 or base64.b64encode(root).decode() != lines[2]:
        raise CheckpointError("the root hash is 32 bytes of canonical base64")
    key_id = note_key_id(origin, log_id)
    found: SignedTreeHead | None = None
    for line in sig_lines:
        m = _SIG_LINE.fullmatch(line)
        if m is None:
            raise CheckpointError(f"malformed signature line {line!r}")
        try:
            sig = base64.b64decode(m.group(2), validate=True)
        except binascii.Error:
            raise CheckpointError("a signature is base64") from None
        if m.group(1) != origin or sig[:4] != key_id:
            continue  # another key (a witness, say): signed-note says to ignore it
        try:
            r = Reader(sig[4:])
            timestamp = r.uint(8)
            signature = DigitallySigned.read(r)
            r.finish()
            found = SignedTreeHead(int(lines[1]), timestamp, root, signature)
            found.verify(public_key)
        except (MalformedStructure, SignatureError) as exc:
            raise CheckpointError(f"the log's checkpoint signature is invalid: {exc}") from None
    if found is None:
        raise CheckpointError("the checkpoint carries no signature by this log")
    return found
