"""TrustChain end to end with ``trust.enabled``: `trustchain run` builds the tree with the
trust subtree (validators, detector) before the issuer, and `trustchain issue` proves as
this machine's asset, registers it, and gets a certificate the validators approved."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.config import HsmConfig

from ..protocols.conftest import TRUSTCHAIN, cli, wait_for, write_config


def trust_keys(directory: Path) -> dict[str, object]:
    """Small proofs, so that the test is quick; the rest as shipped."""
    return {
        "enabled": True, "validators": 4, "work_bits": 8, "vdf_t": 256, "space_blocks": 32,
        "space_cost": 16, "space_challenges": 4, "stake_authority_key": "trust-e2e-stake",
        "database": f"{directory}/trust/trust.sqlite3", "key_dir": f"{directory}/trust/validators",
        "asset_key": f"{directory}/asset.key",
    }  # fmt: skip


@pytest.fixture
def running(softhsm: HsmConfig) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tc-"))  # a short path: the control socket's
    config = write_config(directory, softhsm, trust=trust_keys(directory))
    process = subprocess.Popen([TRUSTCHAIN, "--config", str(config), "run"],
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(directory / "ctl.sock", process, timeout=60)
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
