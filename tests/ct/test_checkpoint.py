"""Checkpoints: C2SP signed notes carrying an RFC 6962 tree-head signature."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import checkpoint as cp
from trustchain.actors.ct.errors import CheckpointError

from .conftest import ORIGIN, LogKey

LOG_ID = bytes(range(32))
ROOT = bytes(range(100, 132))


def make(log_key: LogKey, size: int = 12, ts: int = 1_700_000_000_000) -> bytes:
    sth = cp.sign_tree_head(log_key.sign, size, ts, ROOT)
    return cp.encode_checkpoint(sth, ORIGIN, LOG_ID)


def test_checkpoint_layout_follows_signed_note_and_static_ct_api(log_key: LogKey) -> None:
    note = make(log_key).decode()
    text, sig_line = note.split("\n\n")
    assert text == f"{ORIGIN}\n12\n{base64.b64encode(ROOT).decode()}"
    dash, name, sig_b64 = sig_line.rstrip("\n").split(" ")
    assert (dash, name) == ("\u2014", ORIGIN)
    sig = base64.b64decode(sig_b64)
    assert sig[:4] == cp.note_key_id(ORIGIN, LOG_ID)
    assert int.from_bytes(sig[4:12], "big") == 1_700_000_000_000
    assert sig[12:14] == b"\x04\x03"  # SHA-256, ECDSA


def test_parse_verifies_and_returns_the_tree_head(log_key: LogKey) -> None:
    sth = cp.parse_checkpoint(make(log_key), ORIGIN, LOG_ID, log_key.public)
    assert (sth.tree_size, sth.timestamp, sth.root_hash) == (12, 1_700_000_000_000, ROOT)
    body = sth.to_json()
    assert body["tree_size"] == 12 and body["sha256_root_hash"] == base64.b64encode(ROOT).decode()
    assert base64.b64decode(body["tree_head_signature"]) == sth.signature.encode()


def test_signatures_of_other_keys_are_ignored(log_key: LogKey) -> None:
    note = make(log_key) + "\u2014 witness.example/w1 AAAAAAAAAA==\n".encode()
    assert cp.parse_checkpoint(note, ORIGIN, LOG_ID, log_key.public).tree_size == 12


def _tampered(note: bytes) -> list[bytes]:
    text = note.decode()
    return [
        text.replace("\n12\n", "\n13\n").encode(),
        text.replace("\n12\n", "\n012\n").encode(),
        text.replace(ORIGIN, "other.example/log").encode(),
        text.replace("\n\n", "\nextension line\n\n").encode(),
        text.split("\n\n")[0].encode() + b"\n\n",
        note.replace(b"\n\n", b"\n"),
        note + b"\x01",
        b"\xff" + note,
    ]


def test_tampered_or_malformed_checkpoints_are_rejected(log_key: LogKey) -> None:
    for bad in _tampered(make(log_key)):
        with pytest.raises(CheckpointError):
            cp.parse_checkpoint(bad, ORIGIN, LOG_ID, log_key.public)


def test_a_checkpoint_signed_by_another_key_is_rejected(log_key: LogKey) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(CheckpointError):
        cp.parse_checkpoint(make(log_key), ORIGIN, LOG_ID, other)
    with pytest.raises(CheckpointError):  # right key, wrong log ID: no line of this log
        cp.parse_checkpoint(make(log_key), ORIGIN, bytes(32), log_key.public)
