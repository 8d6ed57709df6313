"""`trustchain dig` against a running DoQ listener: in-process (its output, one connection
for many names, its errors) and end to end (`trustchain run` with [resolver] on)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from trustchain.config import HsmConfig
from trustchain.protocols.cli import main

from .conftest import TRUSTCHAIN, cli, free_udp_port, wait_for, write_config
from .doq_fixtures import ZONE, DoqServer, DoqTree, doq_config, serving
from .test_doq import other_root


@pytest.fixture(scope="module")
def tree(softhsm: HsmConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DoqTree]:
    t = DoqTree(doq_config(tmp_path_factory.mktemp("dig"), softhsm))
    yield t
    t.stop()


@pytest.fixture(scope="module")
def server(tree: DoqTree) -> Iterator[DoqServer]:
    with serving(tree) as s:
        yield s


def dig_config(server: DoqServer, directory: Path) -> Path:
    r = server.config.resolver
    path = directory / "dig.toml"
    path.write_text(f"""
[ca]
permitted_zones = ["{ZONE}"]
database = "{server.config.ca.database}"

[resolver]
host = "::1"
port = {server.port}
origin = "{r.origin}"
names = {json.dumps(r.names)}
""")
    return path


def test_dig_prints_each_answer_as_dig_does_over_one_connection(
    server: DoqServer, tmp_path: Path
) -> None:
    accepted = server.endpoint.stats.accepted
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(dig_config(server, tmp_path)),
            "dig",
            "hypermesh",
            "caesar",
            "AAAA",
            "hypermesh",
            "A",
            f"nowhere.{ZONE}.",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count(";; ->>HEADER<<- opcode: QUERY") == 4
    assert f"hypermesh.{ZONE}. 300 IN AAAA 2001:db8::10" in out
    assert f"caesar.{ZONE}. 300 IN AAAA 2001:db8::21" in out
    assert f";hypermesh.{ZONE}.\t\tIN\tA" in out  # A: NODATA, the SOA in authority
    assert out.count("status: NOERROR") == 3 and out.count("status: NXDOMAIN") == 1
    assert out.count(";; Query time: ") == 4 and "(QUIC)" in out
    assert server.endpoint.stats.accepted == accepted + 1  # four names, one connection


def test_dig_against_another_root_fails_in_one_line(server: DoqServer, tmp_path: Path) -> None:
    config = dig_config(server, tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "--config",
            str(config),
            "dig",
            "hypermesh",
            "--ca",
            str(other_root(tmp_path)),
            "--timeout",
            "1",
        ],
    )
    assert result.exit_code == 1
    assert "error: no answer for hypermesh" in result.output and "root" in result.output
    missing = CliRunner().invoke(
        main, ["--config", str(config), "dig", "hypermesh", "--ca", str(tmp_path / "nope.pem")]
    )
    assert missing.exit_code == 1 and "no root certificate at" in missing.output
    bad = CliRunner().invoke(main, ["--config", str(config), "dig", "a..b"])
    assert bad.exit_code == 2 and "not a DNS name" in bad.output


def test_trustchain_run_serves_doq_when_resolver_is_enabled(
    short_tmp: Path, softhsm: HsmConfig
) -> None:
    resolver = {"enabled": True, "port": free_udp_port(), "origin": "pki.example.com",
                "names": ["dns.pki.example.com", "::1"],
                "records": {"hypermesh": ["2001:db8::10"]}}  # fmt: skip
    config = write_config(short_tmp, softhsm, resolver=resolver)
    process = subprocess.Popen(
        [TRUSTCHAIN, "--config", str(config), "run"], stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(short_tmp / "ctl.sock", process)
        deadline = time.monotonic() + 30
        while (dig := cli(config, "dig", "hypermesh", "--timeout", "1")).returncode != 0:
            assert time.monotonic() < deadline, dig.stderr
            time.sleep(0.2)
        assert "hypermesh.pki.example.com. 300 IN AAAA 2001:db8::10" in dig.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
