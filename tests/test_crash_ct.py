"""A SIGKILLed TrustChain loses no acknowledged certificate and never forks its CT log.

A real `trustchain run` process issues certificates to client threads over the
control socket. It is SIGKILLed at seeded random moments under that load and
restarted, five times. After each restart:

* every certificate a client got back (acknowledged) is in the log: its
  precertificate entry, rebuilt from the certificate alone, has an inclusion
  proof against the new signed tree head, and the entry at its
  ``final_leaf_index`` (the issuer's record, once the final certificate, which
  follows the answer, is in: those a kill kept out are sent again at start-up) is
  the final certificate itself, also proven included;
* the new tree head is consistent with every tree head seen before, during the
  load and after each earlier restart (RFC 9162 consistency proofs, checked here).
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import (
    SignedCertificateTimestamp,
    SignedTreeHead,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from trustchain.actors.ct.rfc6962 import decode_merkle_tree_leaf
from trustchain.config import HsmConfig
from trustchain.protocols.cli_ct import precert_leaf, public_key_of, signed_tree_head
from trustchain.protocols.client import ControlClient
from trustchain.supervisors import TrustChainError

from .protocols.conftest import TRUSTCHAIN

SEED = 6962
KILLS = 5
CLIENTS = 4
ZONE = "pki.example.com"


def write_config(directory: Path, hsm: HsmConfig) -> Path:
    tag = uuid.uuid4().hex[:8]
    config = directory / "trustchain.toml"
    config.write_text(f"""
[runtime]
control_socket = "{directory}/ctl.sock"
[hsm]
module = "{hsm.module}"
token_label = "{hsm.token_label}"
pin_file = "{hsm.pin_file}"
softhsm2_conf = "{hsm.softhsm2_conf}"
[ca]
root_key = "crash-root-{tag}"
intermediate_key = "crash-int-{tag}"
permitted_zones = ["{ZONE}"]
database = "{directory}/ca.sqlite3"
crl_dir = "{directory}/crl"
[ctlog]
key = "crash-log-{tag}"
storage_dir = "{directory}/ct/tiles"
index_db = "{directory}/ct/index.sqlite3"
[http]
enabled = false
[renewal]
directory = "{directory}/tls"
[trust]
enabled = false  # this is about the log's durability; its requests carry no proofs
database = "{directory}/trust/trust.sqlite3"
key_dir = "{directory}/trust/validators"
asset_key = "{directory}/trust/asset.key"
[resolver]
enabled = false
""")
    return config


class Runtime:
    """One `trustchain run` process at a time, on the same state directory."""

    def __init__(self, config: Path, directory: Path) -> None:
        self.config, self.socket = config, directory / "ctl.sock"
        self.log = directory / "stderr.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [TRUSTCHAIN, "--config", str(self.config), "run"], stderr=log
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with ControlClient(self.socket, timeout=30) as client:
                    client.call("runtime", "status")
                return
            except (TrustChainError, OSError):
                assert time.monotonic() < deadline, "TrustChain did not come up"
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, "it died by itself"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


def pipelined(path: Path, requests: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """Many requests on one connection, 128 in flight at a time; the results, in order."""
    results: dict[int, Any] = {}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        for start in range(0, len(requests), 128):
            chunk = requests[start : start + 128]
            sock.sendall(
                b"".join(
                    json.dumps({"id": start + i, "to": to, "type": t, "args": a}).encode() + b"\n"
                    for i, (to, t, a) in enumerate(chunk)
                )
            )
            for _ in chunk:
                reply = json.loads(reader.readline())
                assert reply["ok"], reply
                results[reply["id"]] = reply["result"]
    return [results[i] for i in range(len(requests))]


class Issuing(threading.Thread):
    """A client issuing certificates until the connection dies; records what it got back."""

    def __init__(self, path: Path, csrs: list[str], acked: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.path, self.csrs, self.acked = path, csrs, acked

    def run(self) -> None:
        try:
            with ControlClient(self.path, timeout=30) as client:
                for i in range(10**6):
                    reply = client.call(
                        "issuer", "issue_certificate", {"csr": self.csrs[i % len(self.csrs)]}
                    )
                    self.acked.append(reply)  # list.append is atomic
        except (TrustChainError, OSError, ValueError):
            return  # killed mid-request: that one was never acknowledged


class Heads(threading.Thread):
    """Samples the signed tree head every 20 ms (each verified) until the process dies."""

    def __init__(
        self, path: Path, key: ec.EllipticCurvePublicKey, seen: list[SignedTreeHead]
    ) -> None:
        super().__init__(daemon=True)
        self.path, self.key, self.seen = path, key, seen

    def run(self) -> None:
        try:
            with ControlClient(self.path, timeout=30) as client:
                while True:
                    self.seen.append(signed_tree_head(client.call("ctlog", "get_sth"), self.key))
                    time.sleep(0.02)
        except (TrustChainError, OSError, ValueError):
            return


def make_csrs(count: int) -> list[str]:
    key = ec.generate_private_key(ec.SECP256R1())
    out = []
    for i in range(count):
        san = x509.SubjectAlternativeName([x509.DNSName(f"c{i}.{ZONE}")])
        builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
        csr = builder.add_extension(san, critical=False).sign(key, hashes.SHA256())
        out.append(csr.public_bytes(serialization.Encoding.PEM).decode())
    return out


def expected_leaves(reply: dict[str, Any]) -> tuple[bytes, bytes]:
    """(precert leaf hash rebuilt from the certificate, final certificate DER)."""
    cert = x509.load_pem_x509_certificate(reply["certificate"].encode())
    issuer = x509.load_pem_x509_certificate(reply["chain"].encode())
    sct = SignedCertificateTimestamp.decode(base64.b64decode(reply["sct"]))
    return precert_leaf(cert, issuer, sct).leaf_hash(), cert.public_bytes(
        serialization.Encoding.DER
    )


def check_log(
    path: Path,
    key: ec.EllipticCurvePublicKey,
    acked: list[dict[str, Any]],
    leaves: dict[str, tuple[bytes, bytes]],
    seen: list[SignedTreeHead],
) -> None:
    # The issuer's record of every acknowledged certificate survived; the final
    # certificates follow their answers into the log, and those a kill kept out are
    # sent again when the issuer starts: wait until each is in.
    deadline, first_look = time.monotonic() + 60, True
    while True:
        records = pipelined(
            path, [("issuer", "get_certificate", {"serial": r["serial"]}) for r in acked]
        )
        for reply, record in zip(acked, records, strict=True):
            assert record["certificate"] == reply["certificate"], reply["serial"]
        owed = [r["serial"] for r in records if r["final_leaf_index"] is None]
        if first_look:
            print(f"after a restart: {len(owed)} of {len(acked)} final certificates owed")
            first_look = False
        if not owed:
            break
        assert time.monotonic() < deadline, f"final certificates never logged: {owed[:5]}"
        time.sleep(0.05)
    finals = [record["final_leaf_index"] for record in records]
    (sth_body,) = pipelined(path, [("ctlog", "get_sth", {})])
    sth = signed_tree_head(sth_body, key)
    size, root = sth.tree_size, sth.root_hash
    requests = []
    for reply, final in zip(acked, finals, strict=True):
        if reply["serial"] not in leaves:
            leaves[reply["serial"]] = expected_leaves(reply)
        precert_hash, _ = leaves[reply["serial"]]
        requests.append(
            (
                "ctlog",
                "get_proof_by_hash",
                {"hash": base64.b64encode(precert_hash).decode(), "tree_size": size},
            )
        )
        requests.append(
            (
                "ctlog",
                "get_entry_and_proof",
                {"leaf_index": final, "tree_size": size},
            )
        )
    earlier = {(h.tree_size, h.root_hash): h for h in seen if h.tree_size > 0}
    for old_size, old_root in earlier:
        assert old_size <= size, f"the tree shrank from {old_size} to {size}"
        if old_size < size:
            requests.append(("ctlog", "get_sth_consistency", {"first": old_size, "second": size}))
        else:
            assert old_root == root, f"two roots for size {size}"
    results = pipelined(path, requests)
    for i, reply in enumerate(acked):
        precert_hash, final_der = leaves[reply["serial"]]
        proof, entry = results[2 * i], results[2 * i + 1]
        assert proof["leaf_index"] == reply["leaf_index"], reply["serial"]
        verify_inclusion(
            precert_hash,
            proof["leaf_index"],
            size,
            [base64.b64decode(p) for p in proof["audit_path"]],
            root,
        )
        leaf_input = base64.b64decode(entry["leaf_input"])
        assert decode_merkle_tree_leaf(leaf_input).certificate == final_der, reply["serial"]
        verify_inclusion(
            leaf_hash(leaf_input),
            finals[i],
            size,
            [base64.b64decode(p) for p in entry["audit_path"]],
            root,
        )
    proofs = iter(results[2 * len(acked) :])
    for old_size, old_root in earlier:
        if old_size < size:
            consistency = [base64.b64decode(p) for p in next(proofs)["consistency"]]
            verify_consistency(old_size, size, old_root, root, consistency)
    seen.append(sth)


@pytest.mark.slow
def test_sigkill_under_load_loses_no_acknowledged_certificate(softhsm: HsmConfig) -> None:
    directory = Path(tempfile.mkdtemp(prefix="tc-crash-"))  # short: Unix socket paths
    runtime = Runtime(write_config(directory, softhsm), directory)
    rng = random.Random(SEED)
    csrs = make_csrs(64)
    acked: list[dict[str, Any]] = []
    seen: list[SignedTreeHead] = []
    leaves: dict[str, tuple[bytes, bytes]] = {}
    try:
        runtime.start()
        with ControlClient(runtime.socket) as client:
            key = public_key_of(client.call("ctlog", "get_log_info"))
        for _ in range(KILLS):
            threads: list[threading.Thread] = [
                Issuing(runtime.socket, csrs[i::CLIENTS], acked) for i in range(CLIENTS)
            ]
            threads.append(Heads(runtime.socket, key, seen))
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.2, 1.0))
            runtime.kill()
            for thread in threads:
                thread.join(timeout=30)
            runtime.start()
            with ControlClient(runtime.socket) as client:  # the same log key after a restart
                assert public_key_of(client.call("ctlog", "get_log_info")) == key
            check_log(runtime.socket, key, acked, leaves, seen)
        assert len(acked) >= KILLS * 10, f"only {len(acked)} certificates were acknowledged"
    finally:
        runtime.stop()
        shutil.rmtree(directory, ignore_errors=True)
