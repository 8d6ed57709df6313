"""`trustchain status` as a person reads it: one line per actor, at 80 columns too."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from trustchain.protocols.cli import status_table


def actor(name: str, supervisor: str | None, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "supervisor": supervisor,
        "state": "running",
        "restarts": 0,
        "last_failure": None,
        "mailbox": 0,
        "handled": 0,
        "uptime_s": 3725.0,
        "faults": [],
    } | fields


def tree() -> dict[str, Any]:
    now = time.time()
    failure = {
        "type": "HsmUnavailable",
        "at": now - 300,
        "message": "the HSM token 'trustchain' is not present; check the slot",
    }
    fault = {
        "resource": "ct_storage",
        "since": now - 75,
        "down_s": 75.0,
        "retries": 9,
        "next_retry_s": 5.0,
        "error": "OSError: [Errno 28] No space left on device: '/var/lib/trustchain/ct'",
    }
    actors = [
        actor("root", None, handled=3),
        actor("hsm", "root", handled=128734),
        actor(
            "ctlog",
            "root",
            restarts=2,
            mailbox=12,
            handled=54021,
            last_failure=failure,
            faults=[fault],
        ),
        actor("validator-1", "trust"),  # listed before its supervisor: shown under it
        actor("trust", "root"),
        actor("monitor", "root", state="restarting", restarts=1, uptime_s=0.0),
    ]
    return {"pid": 4242, "uptime_s": 3725.0, "actors": actors}


def render(columns: int) -> list[str]:
    console = Console(width=columns, record=True)
    console.print(status_table(tree(), console.width))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_at_80_columns_every_actor_is_one_line_and_no_header_folds() -> None:
    lines = render(80)
    assert all(len(line) <= 80 for line in lines)
    header = next(line for line in lines if "actor" in line)
    assert header.split() == ["actor", "state", "restarts", "mailbox", "uptime", "problem"]
    rows = lines[lines.index(header) + 2 :]
    rows = [row for row in rows if row.strip()]
    assert [row.split()[0] for row in rows] == [
        "root",
        "hsm",
        "ctlog",
        "trust",
        "validator-1",
        "monitor",
    ]
    ctlog = next(row for row in rows if "ctlog" in row)
    assert ctlog.split()[1:5] == ["degraded", "2", "12", "1h02m"]
    assert "ct_storage down" in ctlog and ctlog.endswith("…")


def test_children_are_indented_under_their_supervisor() -> None:
    rows = {line.split()[0]: line for line in render(80) if line.strip()}
    indent = {name: len(rows[name]) - len(rows[name].lstrip()) for name in ("root", "trust")}
    assert indent["trust"] == indent["root"] + 2
    assert rows["validator-1"].index("validator-1") == rows["trust"].index("trust") + 2


def test_a_wide_terminal_shows_handled_and_the_whole_problem() -> None:
    text = "\n".join(render(240))
    assert "handled" in text and "128734" in text
    assert (
        "ct_storage down 1m15s: OSError: [Errno 28] No space left on device: "
        "'/var/lib/trustchain/ct'; last: HsmUnavailable 5m00s ago: the HSM token" in text
    )
