"""TrustChain end to end with the four-proof consensus as shipped (``trust.enabled`` is on
by default; only its state is moved into the test's directory): `trustchain run` builds
the tree with the trust subtree (validators, detector) before the issuer; `trustchain
issue` proves as this machine's asset, registers it, and gets a certificate the
validators approved, whose record keeps their signed votes; a request without proofs is
refused; and TrustChain's own HTTPS certificate (the renewal actor) went through the
same vote."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.ca import new_csr, new_key
from trustchain.actors.trust import formats
from trustchain.actors.trust.votes import Decision, check_decision
from trustchain.config import HsmConfig

from ..conftest import wait_until
from ..protocols.conftest import TRUSTCHAIN, cli, free_port, free_udp_port, wait_for, write_config

ZONE = "pki.example.com"  # write_config's permitted zone


@dataclass
class Running:
    config: Path
    directory: Path
    https_port: int

    def send(self, actor: str, kind: str, args: dict[str, Any] | None = None) -> Any:
        done = cli(self.config, "send", actor, kind, "--args", json.dumps(args or {}))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def asset_of(self, key_file: Path) -> str:
        """The asset id (hex of the Ed25519 public key) of a key file TrustChain made."""
        key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        assert key_file.stat().st_mode & 0o777 == 0o600
        return key.public_key().public_bytes_raw().hex()

    def https_certificate(self) -> x509.Certificate:
        """The certificate the HTTPS edge serves (waiting for the renewal actor to have
        one), checked against TrustChain's root."""
        root = cli(self.config, "ca", "root")
        assert root.returncode == 0, root.stderr
        context = ssl.create_default_context(cadata=root.stdout)
        served: list[bytes] = []

        def handshake() -> bool:
            try:
                with socket.create_connection(("::1", self.https_port), timeout=5) as raw, \
                        context.wrap_socket(raw, server_hostname="::1") as tls:  # fmt: skip
                    served.append(tls.getpeercert(binary_form=True) or b"")
                return True
            except OSError:
                return False

        wait_until(handshake, "the HTTPS edge with TrustChain's own certificate", timeout=30)
        return x509.load_der_x509_certificate(served[-1])

    def check_approved(self, serial: str, csr_der: bytes | None, asset: str) -> dict[str, Any]:
        """The issuance record of ``serial`` keeps a decision that re-verifies against the
        validators' own keys (2f+1 signed approving votes); with the CSR, for its digest."""
        record = self.send("issuer", "get_certificate", {"serial": serial})
        decision = Decision.from_json(record["decision"])
        keys = {}
        for i in range(1, 5):
            key = self.send(f"validator-{i}", "get_validator_key")
            keys[key["validator"]] = ed25519.Ed25519PublicKey.from_public_bytes(
                bytes.fromhex(key["public_key"])
            )
        check_decision(decision, keys, f=1)  # raises unless signed, for one digest, a quorum
        assert decision.outcome == "approve" and len(decision.votes) >= 3
        if csr_der is not None:
            epoch = self.send("detector", "get_trust_params")["epoch"]
            digest = formats.request_digest(csr_der, bytes.fromhex(asset), epoch)
            assert decision.digest == digest  # bound to this CSR and this asset
        return record


@pytest.fixture(scope="module")
def running(softhsm: HsmConfig) -> Iterator[Running]:
    directory = Path(tempfile.mkdtemp(prefix="tc-"))  # a short path: the control socket's
    port = free_port()
    http = {"port": port, "plain_port": -1, "names": [f"ct.{ZONE}", "::1"]}
    resolver = {"enabled": True, "port": free_udp_port(), "origin": ZONE,
                "names": [f"dns.{ZONE}", "::1"]}  # fmt: skip
    # the consensus as shipped; two of TrustChain's own certificates (HTTPS and DoQ)
    config = write_config(directory, softhsm, http=http, trust={}, resolver=resolver)
    log = directory / "stderr.log"
    with log.open("wb") as stderr:  # a file, not a pipe: nobody reads it while it runs
        process = subprocess.Popen([TRUSTCHAIN, "--config", str(config), "run"], stderr=stderr)
    try:
        wait_for(directory / "ctl.sock", process, timeout=60)
        yield Running(config, directory, port)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
        shutil.rmtree(directory, ignore_errors=True)


def test_the_tree_runs_the_validators_and_the_detector_by_default(running: Running) -> None:
    status = json.loads(cli(running.config, "status", "--json").stdout)
    actors = {actor["name"]: actor for actor in status["actors"]}
    names = list(actors)
    assert names.index("trust") < names.index("issuer")
    for name in ("validator-1", "validator-2", "validator-3", "validator-4", "detector"):
        assert actors[name]["supervisor"] == "trust" and actors[name]["state"] == "running"
    table = cli(running.config, "status")
    assert "trust: N=4 f=1; decisions:" in table.stdout, table.stdout


def test_trustchains_two_certificates_register_its_asset_once_and_nothing_is_refused(
    running: Running,
) -> None:
    running.https_certificate()
    wait_until(lambda: dig_ok(running), "the DoQ listener's certificate")
    trust = cli(running.config, "send", "detector", "get_trust_status")
    status = json.loads(trust.stdout)
    assert status["decisions"]["reject"] == 0 and status["alerts_total"] == 0, status


def dig_ok(running: Running) -> bool:
    return cli(running.config, "dig", "hypermesh", "--timeout", "1").returncode == 0


def test_issue_registers_proves_and_gets_a_certificate_the_validators_approved(
    running: Running,
) -> None:
    out = running.directory / "out"
    first = cli(running.config, "issue", f"www.{ZONE}", "--out", str(out))
    assert first.returncode == 0, first.stderr
    lines = dict(line.split(None, 1) for line in first.stdout.splitlines())
    for step in ("register", "work", "time"):  # what each proof cost this machine
        assert lines[step].endswith(" ms"), first.stdout
    asset = running.asset_of(running.directory / "trust" / "asset.key")
    assert lines["asset"] == asset  # made on first use, 0600, under trust.asset_key
    running.check_approved(lines["serial"], None, asset)
    assert (out / f"www.{ZONE}.crt").exists()

    # Registered for the epoch now: a second request proves work and time only.
    csr_pem = new_csr(new_key("ec-p256"), [f"api.{ZONE}"])
    (out / "api.csr").write_bytes(csr_pem)
    second = cli(running.config, "issue", "--csr", str(out / "api.csr"), "--out", str(out))
    assert second.returncode == 0, second.stderr
    lines = dict(line.split(None, 1) for line in second.stdout.splitlines())
    assert "register" not in lines and "work" in lines and "time" in lines, second.stdout
    csr_der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    record = running.check_approved(lines["serial"], csr_der, asset)
    assert record["names"] == [f"api.{ZONE}"] and record["status"] == "issued"

    shown = cli(running.config, "trust", "asset")  # this machine's, without an ASSET
    assert shown.returncode == 0, shown.stderr
    factors = dict(line.split() for line in shown.stdout.splitlines())
    assert factors["asset"] == asset  # the registration, both requests (halving weekly):
    assert 2.9 < float(factors["successes"]) <= 3
    scores = json.loads(cli(running.config, "trust", "scores", "--json").stdout)
    assert [s["validator"] for s in scores] == [f"validator-{i}" for i in range(1, 5)]
    assert all(s["agreed"] >= 2 for s in scores)  # the registration and both requests
    assert json.loads(cli(running.config, "trust", "evidence").stdout) == []


def test_a_request_without_proofs_is_refused_and_nothing_is_issued(
    running: Running, softhsm: HsmConfig
) -> None:
    running.https_certificate()  # the renewal actor has issued its own: the log is quiet
    before = running.send("ctlog", "get_sth")["tree_size"]
    csr = new_csr(new_key("ec-p256"), [f"raw.{ZONE}"]).decode()
    refused = cli(running.config, "send", "issuer", "issue_certificate",
                  "--args", json.dumps({"csr": csr}))  # fmt: skip
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: this CA issues only with the four-proof")
    assert refused.stderr.rstrip().endswith("[proofs_required]"), refused.stderr
    # `issue` with a config that turned the consensus off sends none either, and says why
    other = running.directory / "off"
    other.mkdir()
    off = write_config(other, softhsm, trust=None)
    sock = str(running.directory / "ctl.sock")
    unproven = cli(off, "--socket", sock, "issue", f"off.{ZONE}", "--out", str(other))
    assert unproven.returncode == 1 and "Traceback" not in unproven.stderr
    assert unproven.stderr == (
        "error: the running TrustChain issues only with the four-proof consensus's approval, "
        "but this command's config has trust.enabled = false, so it sent no proofs: give both "
        "the same config [proofs_required]\n"
    )
    # The next certificate's two entries (precertificate, final) follow the old tree
    # head directly: the refused request put nothing in the log.
    issued = cli(running.config, "issue", f"next.{ZONE}", "--out", str(running.directory))
    assert issued.returncode == 0, issued.stderr
    assert running.send("ctlog", "get_sth")["tree_size"] == before + 2


def test_trustchains_own_https_certificate_went_through_the_vote(running: Running) -> None:
    cert = running.https_certificate()
    asset = running.asset_of(running.directory / "tls" / "asset.key")  # the renewal's
    record = running.check_approved(format(cert.serial_number, "x"), None, asset)
    assert f"ct.{ZONE}" in record["names"]
    shown = cli(running.config, "trust", "asset", asset)
    assert shown.returncode == 0 and "successes" in shown.stdout, shown.stderr


def test_trust_asset_without_an_asset_key_yet_says_how_to_get_one(
    tmp_path: Path, softhsm: HsmConfig
) -> None:
    config = write_config(tmp_path, softhsm, trust={})
    done = cli(config, "trust", "asset")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no ASSET given, and this machine has no asset key yet" in done.stderr
    assert "`trustchain issue` makes one" in done.stderr


def test_trust_publish_puts_this_machines_asset_in_the_zone_and_records_lists_it(
    running: Running,
) -> None:
    published = cli(running.config, "trust", "publish", "edge-1", "2001:db8::e1", "2001:DB8::E2")
    assert published.returncode == 0, published.stderr
    assert "name       edge-1" in published.stdout
    assert "addresses  2001:db8::e1 2001:db8::e2" in published.stdout
    records = json.loads(cli(running.config, "trust", "records", "--json").stdout)
    (mine,) = [r for r in records if r["name"] == "edge-1"]
    assert mine["addresses"] == ["2001:db8::e1", "2001:db8::e2"] and not mine["quarantined"]
    bad = cli(running.config, "trust", "publish", "edge-1", "192.0.2.1")
    assert bad.returncode == 2 and "[asset_record_invalid]" in bad.stderr
