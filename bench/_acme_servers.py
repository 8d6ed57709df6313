"""The servers ``bench/acme.py`` measures: ``trustchain run`` from config/default.toml in a
temporary directory (``trustchain``), and pebble with pebble-challtestsrv as its DNS
(``pebble``); each yields (directory URL, CA certificate path, server pid). Kept apart so
the benchmark itself reads as clients, measurement and report.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from _test_ca import write_test_ca

ROOT = Path(__file__).resolve().parent.parent
TRUSTCHAIN = str(Path(sys.executable).parent / "trustchain")
ZONE = "trust.example.com"  # config/default.toml's permitted zone and resolver origin


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET6, kind) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def self_signed(directory: Path, names: list[str]) -> None:
    """A test CA and a leaf for ``names``: root.pem, cert.pem, key.pem under
    ``directory`` (pebble's package ships no test certificate)."""
    write_test_ca(directory, names, "Bench pebble root")


def wait_http(url: str, ca: str | bool, process: subprocess.Popen[Any], what: str) -> int:
    """Poll ``url`` until it answers 200 (or the process dies); returns the last status."""
    deadline = time.monotonic() + 120
    status = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early ({process.returncode})")
        try:
            status = requests.get(url, verify=ca, timeout=5).status_code
            if status == 200:
                return status
        except (requests.ConnectionError, requests.Timeout, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what}: {url} never answered 200 (last {status})")


@contextlib.contextmanager
def pebble(directory: Path, http01_port: int) -> Iterator[tuple[str, str, int]]:
    """pebble and pebble-challtestsrv (its DNS); yields (directory URL, CA path, pid)."""
    directory.mkdir()
    self_signed(directory, ["localhost", "::1", "127.0.0.1"])
    port, dns_port = free_port(), free_port(socket.SOCK_DGRAM)
    config = {
        "pebble": {
            "listenAddress": f"[::1]:{port}",
            "managementListenAddress": f"[::1]:{free_port()}",
            "certificate": str(directory / "cert.pem"),
            "privateKey": str(directory / "key.pem"),
            "httpPort": http01_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    (directory / "pebble.json").write_text(json.dumps(config))
    dns = subprocess.Popen(
        [
            "pebble-challtestsrv",
            "-dns01",
            f"[::1]:{dns_port}",
            "-management",
            f"[::1]:{free_port()}",
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # PEBBLE_AUTHZREUSE=0: every order validated, as trustchain's authorization_reuse_s = 0
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",
    }
    log = (directory / "pebble.log").open("w")
    server = subprocess.Popen(
        ["pebble", "-config", str(directory / "pebble.json"), "-dnsserver", f"[::1]:{dns_port}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"https://[::1]:{port}/dir"
    try:
        wait_http(url, str(directory / "root.pem"), server, "pebble")
        yield url, str(directory / "root.pem"), server.pid
    finally:
        for process in (server, dns):
            process.terminate()
            process.wait(10)
        log.close()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    return repr(value)


def to_toml(table: dict[str, Any], prefix: str = "") -> str:
    """The subset of TOML config/default.toml uses: tables of scalars and lists."""
    lines = [
        f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)
    ]
    out = (f"[{prefix}]\n" if prefix else "") + "".join(line + "\n" for line in lines)
    for k, v in table.items():
        if isinstance(v, dict):
            out += "\n" + to_toml(v, f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k))
    return out


def trustchain_config(directory: Path, http01_port: int, names: list[str]) -> Path:
    """config/default.toml with free ports, the bench's names in the zone, every order
    validated (no authorization reuse) and no rate limit in the way."""
    config = tomllib.loads((ROOT / "config" / "default.toml").read_text())
    config["runtime"]["log_level"] = "WARNING"
    config["http"].update(port=free_port(), plain_port=free_port())
    config["resolver"].update(port=free_port(socket.SOCK_DGRAM))
    config["resolver"]["records"] = {n.removesuffix("." + ZONE): ["::1"] for n in names}
    config["acme"].update(
        http01_port=http01_port,
        authorization_reuse_s=0,
        max_orders_per_account=10_000_000,
        max_certificates_per_name=10_000_000,
    )
    path = directory / "trustchain.toml"
    path.write_text(to_toml(config))
    return path


@contextlib.contextmanager
def trustchain(
    directory: Path, http01_port: int, names: list[str]
) -> Iterator[tuple[str, str, int]]:
    """``trustchain run`` in ``directory``; yields (directory URL, root CA path, pid)."""
    directory.mkdir()
    config = trustchain_config(directory, http01_port, names)
    port = tomllib.loads(config.read_text())["http"]["port"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TRUSTCHAIN, "--config", str(config), *args],
            cwd=directory, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    init = cli("hsm", "init")
    if init.returncode != 0:
        raise RuntimeError(f"trustchain hsm init failed: {init.stderr or init.stdout}")
    log = (directory / "trustchain.log").open("w")
    server = subprocess.Popen(
        [TRUSTCHAIN, "--config", str(config), "run"], cwd=directory, stdout=log, stderr=log
    )
    root = directory / "var" / "ca" / "root.pem"
    try:
        deadline = time.monotonic() + 120
        while not root.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"trustchain run did not start; see {directory}/trustchain.log")
            time.sleep(0.1)
        wait_http(f"https://[::1]:{port}/ready", str(root), server, "trustchain run")
        yield f"https://[::1]:{port}/acme/directory", str(root), server.pid
    finally:
        if server.poll() is None:
            stop = cli("stop")
            try:
                server.wait(60 if stop.returncode == 0 else 1)
            except subprocess.TimeoutExpired:
                server.send_signal(signal.SIGTERM)
                server.wait(60)
        log.close()
