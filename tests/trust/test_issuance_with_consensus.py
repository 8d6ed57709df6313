"""TrustChain end to end with ``trust.enabled``: `trustchain run` builds the tree with the
trust subtree (validators, detector) before the issuer, and `trustchain issue` proves as
this machine's asset, registers it, and gets a certificate the validators approved."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.config import HsmConfig

TRUSTCHAIN = str(Path(sys.executable).parent / "trustchain")


def write_config(directory: Path, hsm: HsmConfig) -> Path:
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
root_key = "trust-e2e-root"
intermediate_key = "trust-e2e-intermediate"
permitted_zones = ["pki.example.com"]
database = "{directory}/ca.sqlite3"
crl_dir = "{directory}/crl"

[ctlog]
storage_dir = "{directory}/ct/tiles"
index_db = "{directory}/ct/index.sqlite3"

[renewal]
directory = "{directory}/tls"

[http]
enabled = false

[trust]
enabled = true
validators = 4
work_bits = 8
vdf_t = 256
space_blocks = 32
space_cost = 16
space_challenges = 4
stake_authority_key = "trust-e2e-stake"
database = "{directory}/trust/trust.sqlite3"
key_dir = "{directory}/trust/validators"
asset_key = "{directory}/asset.key"
""")  # fmt: skip
    return config


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRUSTCHAIN, "--config", str(config), *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})  # fmt: skip


@pytest.fixture
def running(softhsm: HsmConfig) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tc-"))  # a short path: the control socket's
    config = write_config(directory, softhsm)
    process = subprocess.Popen([TRUSTCHAIN, "--config", str(config), "run"],
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not (directory / "ctl.sock").exists():
        assert process.poll() is None, f"trustchain run exited:\n{process.stderr.read()}"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the control socket never appeared"
        time.sleep(0.05)
    yield config
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    shutil.rmtree(directory, ignore_errors=True)


def test_issue_goes_through_the_validators_and_the_trust_commands_show_it(running) -> None:
    config = running
    status = json.loads(cli(config, "status", "--json").stdout)
    names = [actor["name"] for actor in status["actors"]]
    for name in ("trust", "validator-1", "validator-4", "detector"):
        assert name in names
    out = config.parent / "out"
    issued = cli(config, "issue", "www.pki.example.com", "--out", str(out))
    assert issued.returncode == 0, issued.stderr
    assert (out / "www.pki.example.com.crt").exists()
    scores = json.loads(cli(config, "trust", "scores", "--json").stdout)
    assert [s["validator"] for s in scores] == [f"validator-{i}" for i in range(1, 5)]
    assert all(s["agreed"] >= 1 for s in scores)  # the registration, the request
    key = serialization.load_pem_private_key((config.parent / "asset.key").read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    asset = key.public_key().public_bytes_raw().hex()
    shown = cli(config, "trust", "asset", asset)
    assert shown.returncode == 0 and "successes" in shown.stdout, shown.stderr
    assert json.loads(cli(config, "trust", "evidence").stdout) == []
