"""A failing resource is visible where operators look: ``/ready`` (503 naming the actor,
the resource, since when and why), the HTTP API (503 + Retry-After), and the
``trustchain status`` table (``degraded``)."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from rich.console import Console

from trustchain.config import HsmConfig
from trustchain.protocols.cli import status_table

from ..actors.test_faults import fill, until
from .test_http import Edge, edge_config


@pytest.fixture
def full_disk_edge(softhsm: HsmConfig, tmp_path: Path) -> Iterator[tuple[Edge, Path]]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and `make test` run as root)")
    import subprocess

    tiles = tmp_path / "ct" / "tiles"
    tiles.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(tiles)], check=True)
    try:
        edge = Edge(edge_config(tmp_path, softhsm))
        try:
            yield edge, tiles
        finally:
            edge.stop()
    finally:  # whatever happened: a mount left behind would outlive the test run
        subprocess.run(["umount", "-l", str(tiles)], check=False)


def test_ready_and_the_ct_api_say_the_log_storage_is_down_and_recover(
    full_disk_edge: tuple[Edge, Path],
) -> None:
    edge, tiles = full_disk_edge
    cert = edge.issue("before")
    assert edge.get("/ready").status == 200
    filler = fill(tiles)
    until(lambda: edge.get("/ready").status == 503, "/ready to notice the full disk")
    body = edge.get("/ready").json()
    (fault,) = body["faults"]
    assert (fault["actor"], fault["resource"]) == ("ctlog", "ct_storage")
    assert "No space left on device" in fault["error"] and fault["since"].endswith("+00:00")
    assert "not_running" not in body  # every actor runs; one resource is down
    chain = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
             for c in (cert, edge.intermediate)]  # fmt: skip
    refused = edge.post_json("/ct/v1/add-chain", {"chain": chain})
    assert refused.status == 503 and refused.headers.get("retry-after") == "1"
    assert refused.json()["error"]["code"] == "log_unavailable"
    assert edge.get("/ct/v1/get-sth").status == 200  # reads go on
    filler.unlink()
    until(lambda: edge.get("/ready").status == 200, "/ready once space is back")
    assert edge.post_json("/ct/v1/add-chain", {"chain": chain}).status == 200


def test_status_table_shows_a_degraded_actor_and_its_fault() -> None:
    actor = {
        "name": "ctlog", "supervisor": "root", "state": "running", "restarts": 0,
        "last_failure": None, "mailbox": 0, "handled": 12, "uptime_s": 61.0,
        "faults": [{"resource": "ct_storage", "error": "OSError: [Errno 28] No space left",
                    "since": time.time() - 75, "down_s": 75.0, "retries": 9,
                    "next_retry_s": 5.0}],
    }  # fmt: skip
    console = Console(width=200, record=True)
    console.print(status_table({"pid": 1, "uptime_s": 61.0, "actors": [actor]}))
    text = console.export_text()
    assert "degraded" in text
    assert "ct_storage down 1m15s: OSError: [Errno 28] No space left" in text
