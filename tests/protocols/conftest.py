from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustchain.config import HsmConfig


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def free_port() -> int:
    """A TCP port on [::1] that was free a moment ago (for listeners that need a number)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
        probe.bind(("::1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: Unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="tc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


TRUSTCHAIN = str(Path(sys.executable).parent / "trustchain")


def write_config(
    directory: Path,
    hsm: HsmConfig,
    http: dict[str, object] | None = None,
    trust: dict[str, object] | None = None,
    resolver: dict[str, object] | None = None,
    acme: dict[str, object] | None = None,
    **runtime: object,
) -> Path:
    """``http``: the [http] keys; without them the HTTP edge is off (no port to share).
    ``trust``: the [trust] keys; without them the consensus is off (it is on by default:
    a test of something else then needs no proofs), ``trust={}`` leaves it on as shipped.
    Its state (database, validators' keys, the CLI's asset key) is under ``directory``
    unless ``trust`` names other paths: no test writes under the checkout's var/.
    ``resolver``: the [resolver] keys (a dict value, e.g. ``records``, is its own
    table); without them the resolver and its DoQ listener are off (no port to share).
    ``acme``: the [acme] keys (``profiles``/``eab_keys`` as tables); without them ACME is
    off; its database is under ``directory`` unless named."""
    config = directory / "trustchain.toml"
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in runtime.items())
    http_keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (http or {"enabled": False}).items())
    trust_table = {
        "database": f"{directory}/trust/trust.sqlite3",
        "key_dir": f"{directory}/trust/validators",
        "asset_key": f"{directory}/trust/asset.key",
        **({"enabled": False} if trust is None else trust),  # trust={}: the default, on
    }
    trust_keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in trust_table.items())
    resolver_table = {"challenge_db": f"{directory}/resolver/challenges.sqlite3", **resolver} \
        if resolver is not None else {"enabled": False}  # fmt: skip
    resolver_keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in resolver_table.items()
                            if not isinstance(v, dict))  # fmt: skip
    resolver_keys += "".join(
        f"\n[resolver.{k}]\n" + "".join(f"{n} = {json.dumps(x)}\n" for n, x in v.items())
        for k, v in resolver_table.items() if isinstance(v, dict)
    )  # fmt: skip
    acme_table = {"database": f"{directory}/acme/acme.sqlite3",
                  **({"enabled": False} if acme is None else acme)}  # fmt: skip
    acme_keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in acme_table.items()
                        if not isinstance(v, dict))  # fmt: skip
    acme_keys += "".join(
        f"\n[acme.{k}]\n" + "".join(f"{json.dumps(n)} = {json.dumps(x)}\n" for n, x in v.items())
        for k, v in acme_table.items() if isinstance(v, dict)
    )  # fmt: skip
    config.write_text(
        f"""
[runtime]
control_socket = "{directory}/ctl.sock"
{extra}
[hsm]
module = "{hsm.module}"
token_label = "{hsm.token_label}"
pin_file = "{hsm.pin_file}"
softhsm2_conf = "{hsm.softhsm2_conf}"

[hsm.keys]
cli-test-key = "ec-p256"

[ca]
root_key = "cli-root"
intermediate_key = "cli-intermediate"
permitted_zones = ["pki.example.com"]
database = "{directory}/ca.sqlite3"
crl_dir = "{directory}/crl"

[ctlog]
storage_dir = "{directory}/ct/tiles"
index_db = "{directory}/ct/index.sqlite3"

[renewal]
directory = "{directory}/tls"

[http]
{http_keys}
[trust]
{trust_keys}
[resolver]
{resolver_keys}
[acme]
{acme_keys}"""
    )
    return config


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TRUSTCHAIN, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"trustchain run exited early:\n{process.stderr.read()}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the control socket never appeared"
        time.sleep(0.05)


@pytest.fixture
def running(short_tmp: Path, softhsm: HsmConfig) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    config = write_config(short_tmp, softhsm)
    process = subprocess.Popen(
        [TRUSTCHAIN, "--config", str(config), "run"], stderr=subprocess.PIPE, text=True
    )
    wait_for(short_tmp / "ctl.sock", process)
    yield config, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
