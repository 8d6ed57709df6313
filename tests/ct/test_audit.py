"""The outside checks of a log (actors/ct/audit.py), on values in memory: no actor, no socket."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustchain.actors.ct import (
    LogEntryType,
    SignedTreeHead,
    TimestampedEntry,
    consistency_proof,
    inclusion_proof,
    issuer_key_hash,
    leaf_hash,
    log_id,
    precert_tbs_from_certificate,
    root_from_leaf_hashes,
    sct_list_extension_value,
)
from trustchain.actors.ct.audit import (
    AlertKind,
    CheckFailed,
    HeadChecker,
    Misbehaviour,
    certificate_included,
    consistent,
    entry_hashes,
    entry_included,
    parse_sth,
    public_key_of,
    root_matches,
    signed_tree_head,
    spki_der,
    verified_sct,
)
from trustchain.actors.ct.checkpoint import sign_tree_head
from trustchain.actors.ct.merkle import EMPTY_ROOT
from trustchain.actors.ct.rfc6962 import (
    SCT_LIST_OID,
    encode_merkle_tree_leaf,
    leaf_index_extension,
    sign_sct,
)

KEY = ec.derive_private_key(7_000_001, ec.SECP256R1())
OTHER = ec.derive_private_key(7_000_002, ec.SECP256R1())
LEAVES = [
    encode_merkle_tree_leaf(TimestampedEntry(i, LogEntryType.X509_ENTRY, b"cert-%d" % i))
    for i in range(13)
]
HASHES = [leaf_hash(leaf) for leaf in LEAVES]


def sign(key: ec.EllipticCurvePrivateKey = KEY):
    return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))


def head(
    size: int, timestamp: int = 1_000, key: ec.EllipticCurvePrivateKey = KEY
) -> SignedTreeHead:
    return sign_tree_head(sign(key), size, timestamp, root_from_leaf_hashes(HASHES[:size]))


def node(level: int, index: int) -> bytes:
    return root_from_leaf_hashes(HASHES[index << level : (index + 1) << level])


def b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(i).decode() for i in items]


def body(sth: SignedTreeHead, encode: Any = lambda b: base64.b64encode(b).decode()) -> dict:
    return {
        "tree_size": sth.tree_size,
        "timestamp": sth.timestamp,
        "sha256_root_hash": encode(sth.root_hash),
        "tree_head_signature": encode(sth.signature.encode()),
    }


# Tree heads ----------------------------------------------------------------------


@pytest.mark.parametrize("encode", [bytes, lambda b: base64.b64encode(b).decode()])
def test_a_tree_head_parses_from_bytes_in_process_and_base64_over_the_socket(encode) -> None:
    sth = head(5)
    assert parse_sth(body(sth, encode)) == sth


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"tree_size": None}, "malformed tree head: TypeError"),  # not a size at all
        ({"tree_size": -1}, "malformed tree head: bad size, time or root"),
        ({"sha256_root_hash": "AAAA"}, "malformed tree head: bad size, time or root"),
        ({"tree_head_signature": "not base64!"}, "malformed tree head: Error"),
    ],
)
def test_a_malformed_tree_head_is_a_bad_signature_alert(change, text) -> None:
    reply = body(head(5)) | change
    if change.get("tree_size", 0) is None:
        del reply["tree_size"]
        text = "malformed tree head: KeyError"
    with pytest.raises(Misbehaviour) as alert:
        parse_sth(reply)
    assert alert.value.kind is AlertKind.BAD_SIGNATURE
    assert alert.value.text.startswith(text), alert.value.text


def test_the_cli_checks_a_tree_head_signature_and_says_which_head() -> None:
    sth = head(5)
    assert signed_tree_head(body(sth), KEY.public_key()) == sth
    with pytest.raises(CheckFailed, match=r"^the tree head \(size 5\) does not verify: "):
        signed_tree_head(body(sth), OTHER.public_key())
    broken = body(sth)
    del broken["timestamp"]
    with pytest.raises(CheckFailed, match=r"does not verify: malformed: KeyError\('timestamp'\)"):
        signed_tree_head(broken, KEY.public_key())


def test_the_log_key_must_hash_to_the_log_id() -> None:
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    lid = log_id(spki_der(KEY.public_key()))
    info = {"public_key": pem.decode(), "log_id": base64.b64encode(lid).decode()}
    assert public_key_of(info) == KEY.public_key()
    with pytest.raises(CheckFailed, match="log_id is not the SHA-256 of its public key"):
        public_key_of(info | {"log_id": base64.b64encode(bytes(32)).decode()})


# HeadChecker: each head against the last verified one ---------------------------


def checker() -> HeadChecker:
    return HeadChecker(KEY.public_key(), max_sth_age_ms=60_000)


def test_a_growing_log_asks_for_a_consistency_proof_and_accepts_a_valid_one() -> None:
    heads, first, grown = checker(), head(4), head(13, 2_000)
    assert heads.check(first) is None  # the first head: nothing to compare with
    heads.accept(first)
    assert heads.check(grown) == (4, 13)
    heads.accept(grown, consistency_proof(node, 4, 13))
    assert heads.verified == grown


def test_a_consistency_proof_that_does_not_verify_is_an_inconsistent_alert() -> None:
    heads, first = checker(), head(4)
    heads.accept(first)
    proof = consistency_proof(node, 4, 13)
    proof[0] = bytes(32)
    with pytest.raises(Misbehaviour, match="no consistency from size 4 to 13") as alert:
        heads.accept(head(13, 2_000), proof)
    assert alert.value.kind is AlertKind.INCONSISTENT
    assert heads.verified == first  # the lie is not taken as the last verified head


@pytest.mark.parametrize(
    ("second", "kind"),
    [
        (head(3, 2_000), AlertKind.SHRINKING),
        (sign_tree_head(sign(), 4, 2_000, bytes(32)), AlertKind.FORK),
        (sign_tree_head(sign(), 0, 2_000, bytes(32)), AlertKind.FORK),  # empty, non-empty root
        (head(5, 2_000, key=OTHER), AlertKind.BAD_SIGNATURE),
    ],
)
def test_a_head_that_contradicts_the_verified_one_is_alerted(second, kind) -> None:
    heads = checker()
    heads.accept(head(4))
    with pytest.raises(Misbehaviour) as alert:
        heads.check(second)
    assert alert.value.kind is kind


def test_the_same_head_again_needs_no_proof_and_the_empty_tree_has_the_empty_root() -> None:
    heads = checker()
    heads.accept(head(4))
    assert heads.check(head(4, 5_000)) is None  # re-signed later, same tree
    assert checker().check(sign_tree_head(sign(), 0, 1, EMPTY_ROOT)) is None


def test_a_head_older_than_the_limit_is_stale_at_the_time_passed_in() -> None:
    heads = checker()
    heads.check_age(head(4, 1_000), now_ms=61_000)  # exactly at the limit: fresh
    with pytest.raises(Misbehaviour, match=r"60\.0 s old \(limit 60 s; .*\); why") as alert:
        heads.check_age(head(4, 1_000), now_ms=61_001, why="; why")
    assert alert.value.kind is AlertKind.STALE


# The whole log, from its entries --------------------------------------------------


def test_entries_hash_to_the_signed_root_and_their_proofs_verify() -> None:
    entries = [{"leaf_input": s} for s in b64(LEAVES)]
    hashes = entry_hashes(entries[:4], 0) + entry_hashes(entries[4:], 4)
    assert hashes == HASHES
    root = root_matches(hashes, head(13))
    consistent(hashes, 7, root, {"consistency": b64(consistency_proof(node, 7, 13))})
    for index in (0, 6, 12):
        reply = {"leaf_index": index, "audit_path": b64(inclusion_proof(node, index, 13))}
        entry_included(hashes, index, root, reply)


def test_each_check_of_the_whole_log_says_what_failed() -> None:
    with pytest.raises(CheckFailed, match=r"^entry 5 is not an RFC 6962 MerkleTreeLeaf"):
        entry_hashes([{"leaf_input": s} for s in b64([b"\x07" + LEAVES[5][1:]])], 5)
    with pytest.raises(CheckFailed, match=r"^the 12 entries hash to root "):
        root_matches(HASHES[:12], head(13))
    root = root_from_leaf_hashes(HASHES)
    with pytest.raises(CheckFailed, match=r"^the consistency proof from size 7 to 13 does not"):
        consistent(HASHES, 7, root, {"consistency": b64([bytes(32)])})
    path = b64(inclusion_proof(node, 3, 13))
    with pytest.raises(CheckFailed, match=r"^entry 2's hash is at index 3 in the log"):
        entry_included(HASHES, 2, root, {"leaf_index": 3, "audit_path": path})
    with pytest.raises(CheckFailed, match=r"^the inclusion proof of entry 3 does not verify"):
        entry_included(HASHES, 3, root, {"leaf_index": 3, "audit_path": path[:-1]})


# One certificate: its embedded SCT and its inclusion ------------------------------


def _certificate(
    issuer_key: ec.EllipticCurvePrivateKey,
    sct_list: bytes | None,
    subject_key: ec.EllipticCurvePrivateKey = OTHER,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.com")])
    ca = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuing CA")])
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca)
        .public_key(subject_key.public_key())
        .serial_number(42)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
    )
    if sct_list is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(SCT_LIST_OID), sct_list), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def test_a_certificates_sct_and_inclusion_are_verified_from_the_certificate_alone() -> None:
    issuer_key = ec.derive_private_key(7_000_003, ec.SECP256R1())
    issuer = _certificate(issuer_key, None, issuer_key)  # only its public key matters here
    issuer_hash = issuer_key_hash(spki_der(issuer.public_key()))
    # The SCT signs the TBS without the SCT list, so any list stands in for the real one.
    bare = _certificate(issuer_key, b"\x04\x00").public_bytes(serialization.Encoding.DER)
    entry = TimestampedEntry(
        5_000,
        LogEntryType.PRECERT_ENTRY,
        precert_tbs_from_certificate(bare),
        issuer_hash,
        leaf_index_extension(3),
    )
    lid = log_id(spki_der(KEY.public_key()))
    sct = sign_sct(sign(), lid, entry)
    cert = _certificate(issuer_key, sct_list_extension_value([sct]))

    found, leaf = verified_sct(cert, issuer, KEY.public_key())
    assert found == sct
    hashes = [*HASHES[:3], leaf.leaf_hash(), *HASHES[4:]]
    sth = sign_tree_head(sign(), 13, 6_000, root_from_leaf_hashes(hashes))
    path = inclusion_proof(
        lambda level, i: root_from_leaf_hashes(hashes[i << level : (i + 1) << level]), 3, 13
    )
    reply = {"leaf_index": 3, "audit_path": b64(path)}
    assert certificate_included(sct, leaf.leaf_hash(), reply, sth) == 3
    with pytest.raises(CheckFailed, match=r"^the SCT says leaf 3, the log says 4"):
        certificate_included(sct, leaf.leaf_hash(), reply | {"leaf_index": 4}, sth)
    with pytest.raises(CheckFailed, match=r"^the certificate has no SCT from this log"):
        verified_sct(cert, issuer, OTHER.public_key())
    with pytest.raises(CheckFailed, match=r"^the certificate carries no embedded SCT list"):
        verified_sct(issuer, issuer, KEY.public_key())
    other_issuer = _certificate(OTHER, None, KEY)  # another key: another issuer key hash
    with pytest.raises(CheckFailed, match=r"^the embedded SCT does not verify"):
        verified_sct(cert, other_issuer, KEY.public_key())
