"""`trustchain ct ...` against a running TrustChain, and `ct verify`'s audit against a log
that serves tampered entries or proofs (in memory, through the same calls)."""

from __future__ import annotations

import base64
import datetime as dt
import random
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import (
    LogEntryType,
    SignedTreeHead,
    TimestampedEntry,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
)
from trustchain.actors.ct.checkpoint import sign_tree_head
from trustchain.actors.ct.rfc6962 import encode_merkle_tree_leaf
from trustchain.protocols.cli_ct import CheckFailed, audit

from ..ca.conftest import make_key
from .conftest import cli

ZONE = "pki.example.com"


def issue(config: Path, out: Path, name: str) -> tuple[Path, Path, int]:
    done = cli(config, "issue", name, "--out", str(out))
    assert done.returncode == 0, done.stderr
    match = re.search(r"^leaf_index\s+(\d+)$", done.stdout, re.MULTILINE)
    assert match, done.stdout
    return out / f"{name}.crt", out / f"{name}.chain.crt", int(match.group(1))


def one_line_error(done: Any) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: ")
    return done.stderr


def test_an_issued_certificate_is_proven_in_the_log(running, short_tmp: Path) -> None:
    config, _ = running
    cert, chain, leaf_index = issue(config, short_tmp, f"www.{ZONE}")
    with_chain = cli(config, "ct", "proof", str(cert), "--chain", str(chain))
    assert with_chain.returncode == 0, with_chain.stderr
    assert re.search(rf"^leaf index\s+{leaf_index}$", with_chain.stdout, re.MULTILINE)
    assert "SCT signature OK" in with_chain.stdout and "inclusion     OK" in with_chain.stdout
    # Without --chain the issuer's key comes from the CA's status; a full chain file works too.
    asked = cli(config, "ct", "proof", str(cert))
    assert asked.returncode == 0, asked.stderr
    fullchain = short_tmp / "fullchain.pem"
    fullchain.write_text(cert.read_text() + chain.read_text())
    assert cli(config, "ct", "proof", str(fullchain)).returncode == 0


def test_sth_verify_and_info_check_the_whole_log(running, short_tmp: Path) -> None:
    config, _ = running
    for i in range(3):
        issue(config, short_tmp, f"h{i}.{ZONE}")
    sth = cli(config, "ct", "sth")
    assert sth.returncode == 0, sth.stderr
    assert "signature     OK" in sth.stdout
    found = re.search(r"^tree size\s+(\d+)$", sth.stdout, re.MULTILINE)
    assert found, sth.stdout
    size = int(found.group(1))
    assert size >= 6  # a precertificate and a final certificate each
    verified = cli(config, "ct", "verify", "--from-size", "1", "--sample", "4")
    assert verified.returncode == 0, verified.stderr
    lines = verified.stdout.splitlines()
    assert lines[0].endswith("entries; their root matches the signed tree head")
    assert re.fullmatch(r"consistency 1 -> \d+ OK", lines[1]) and lines[-1] == "OK"
    assert cli(config, "ct", "verify").returncode == 0
    too_far = cli(config, "ct", "verify", "--from-size", "999999")
    assert too_far.returncode == 2 and "--from-size must be 1.." in too_far.stderr
    info = cli(config, "ct", "info")
    assert info.returncode == 0 and "trust.example.com/ct/log" in info.stdout
    assert "BEGIN PUBLIC KEY" in info.stdout


def test_a_tampered_certificate_fails_proof_with_one_line(running, short_tmp: Path) -> None:
    config, _ = running
    cert, chain, _ = issue(config, short_tmp, f"www.{ZONE}")
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    assert der.count(b"www.pki") == 1
    tampered = x509.load_der_x509_certificate(der.replace(b"www.pki", b"wwx.pki"))
    bad = short_tmp / "tampered.pem"
    bad.write_bytes(tampered.public_bytes(serialization.Encoding.PEM))
    for extra in ([], ["--chain", str(chain)]):
        error = one_line_error(cli(config, "ct", "proof", str(bad), *extra))
        assert "signature does not verify under its issuer" in error and "altered" in error


def test_a_certificate_without_an_sct_fails_proof(running, short_tmp: Path) -> None:
    config, _ = running
    key = make_key("ec-p256")
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "elsewhere")])
    now = dt.datetime.now(dt.UTC)
    own = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1).not_valid_before(now)
        .not_valid_after(now.replace(year=now.year + 1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    path = short_tmp / "own.pem"
    path.write_bytes(own.public_bytes(serialization.Encoding.PEM))
    error = one_line_error(cli(config, "ct", "proof", str(path), "--chain", str(path)))
    assert "no embedded SCT list" in error
    error = one_line_error(cli(config, "ct", "proof", str(path)))
    assert "no certificate in the issuer's CA certificates issued this one" in error


# `ct verify`'s audit, against a log that lies ------------------------------------


class FakeLog:
    """Answers get_entries / get_sth_consistency / get_proof_by_hash like the control socket
    (bytes as base64), from honest leaves, unless told to tamper with one answer."""

    def __init__(self, size: int, page: int = 4) -> None:
        self.leaves = [
            encode_merkle_tree_leaf(TimestampedEntry(i, LogEntryType.X509_ENTRY, b"cert-%d" % i))
            for i in range(size)
        ]
        self.hashes = [leaf_hash(leaf) for leaf in self.leaves]
        self.page = page
        self.tamper: str | None = None
        key = ec.generate_private_key(ec.SECP256R1())
        root = root_from_leaf_hashes(self.hashes)
        self.sth: SignedTreeHead = sign_tree_head(
            lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())), size, 1, root
        )

    def node(self, level: int, index: int) -> bytes:
        return root_from_leaf_hashes(self.hashes[index << level : (index + 1) << level])

    def __call__(self, type: str, args: dict[str, Any] | None) -> Any:
        assert args is not None
        b64 = lambda items: [base64.b64encode(i).decode() for i in items]  # noqa: E731
        if type == "get_entries":
            leaves = self.leaves[args["start"] : min(args["end"] + 1, args["start"] + self.page)]
            if self.tamper == "entry" and args["start"] == 4:
                leaves = [leaves[0][:-3] + b"X" + leaves[0][-2:], *leaves[1:]]  # cert's last byte
            if self.tamper == "garbage" and args["start"] == 4:
                leaves = [b"\x07" + leaves[0][1:], *leaves[1:]]
            return {"entries": [{"leaf_input": s} for s in b64(leaves)]}
        if type == "get_sth_consistency":
            proof = consistency_proof(self.node, args["first"], args["second"])
            if self.tamper == "consistency":
                proof[0] = bytes(32)
            return {"consistency": b64(proof)}
        assert type == "get_proof_by_hash"
        index = self.hashes.index(base64.b64decode(args["hash"]))
        path = inclusion_proof(self.node, index, args["tree_size"])
        if self.tamper == "inclusion" and index == len(self.leaves) - 1:
            path[-1] = bytes(32)
        if self.tamper == "index":
            index = (index + 1) % len(self.leaves)
        return {"leaf_index": index, "audit_path": b64(path)}


def test_the_audit_of_an_honest_log_reports_what_it_checked() -> None:
    log = FakeLog(13)
    lines = audit(log, log.sth, None, 5, random.Random(1))
    assert lines[:2] == [
        "13 entries; their root matches the signed tree head",
        "consistency 4 -> 13 OK",  # from the first page's size, by default
    ]
    checked = re.fullmatch(r"(\d+) inclusion proofs OK", lines[2])
    assert checked and 5 <= int(checked.group(1)) <= 7  # the sample, the first and the last


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("entry", "the 13 entries hash to root "),
        ("garbage", "entry 4 is not an RFC 6962 MerkleTreeLeaf"),
        ("consistency", "the consistency proof from size 7 to 13 does not verify"),
        ("inclusion", "the inclusion proof of entry 12 does not verify"),
        ("index", "entry 0's hash is at index 1 in the log"),
    ],
)
def test_the_audit_says_exactly_what_failed(tamper: str, message: str) -> None:
    log = FakeLog(13)
    log.tamper = tamper
    with pytest.raises(CheckFailed) as failed:
        audit(log, log.sth, 7, 3, random.Random(1))
    assert str(failed.value).startswith(message), str(failed.value)
