"""`trustchain dns txt add|del|list` against a real `trustchain run` (the resolver and
its DoQ listener on): what certbot's manual hooks do, seen by `trustchain dig` over
DoQ; names relative to the origin without a dot, absolute with one; errors in one
line, no traceback, a non-zero exit."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from trustchain.config import HsmConfig

from .conftest import TRUSTCHAIN, cli, free_udp_port, wait_for, write_config

ORIGIN = "pki.example.com"
NAME = f"_acme-challenge.x.{ORIGIN}"
TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
OTHER = "gO0FAX1Fi-4nrvmDXmmI0RQTxmdnOz2XsBeOyy1VH0E"


@pytest.fixture
def serving(short_tmp: Path, softhsm: HsmConfig) -> Iterator[Path]:
    """A running TrustChain whose resolver keeps its challenges under ``short_tmp``."""
    resolver = {"enabled": True, "port": free_udp_port(), "origin": ORIGIN,
                "names": [f"dns.{ORIGIN}", "::1"], "records": {"x": ["2001:db8::10"]},
                "challenge_db": f"{short_tmp}/resolver/challenges.sqlite3"}  # fmt: skip
    config = write_config(short_tmp, softhsm, resolver=resolver)
    process = subprocess.Popen(
        [TRUSTCHAIN, "--config", str(config), "run"], stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(short_tmp / "ctl.sock", process)
        deadline = time.monotonic() + 30  # the DoQ listener waits for its certificate
        while (dig := cli(config, "dig", "x", "--timeout", "1")).returncode != 0:
            assert time.monotonic() < deadline, dig.stderr
            time.sleep(0.2)
        yield config
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_certbots_hooks_publish_and_remove_the_txt_record(serving: Path, short_tmp: Path) -> None:
    added = cli(serving, "dns", "txt", "add", NAME, TOKEN)  # the auth hook
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(f'{NAME}. TXT "{TOKEN}" until ')
    assert (short_tmp / "resolver" / "challenges.sqlite3").is_file()
    apex = cli(serving, "dns", "txt", "add", "_acme-challenge", OTHER)  # no dot: relative
    assert apex.returncode == 0 and apex.stdout.startswith(f"_acme-challenge.{ORIGIN}. TXT")
    dig = cli(serving, "dig", NAME, "TXT", f"_acme-challenge.{ORIGIN}", "TXT")
    assert dig.returncode == 0, dig.stderr
    assert f'{NAME}. 60 IN TXT "{TOKEN}"' in dig.stdout
    assert f'_acme-challenge.{ORIGIN}. 60 IN TXT "{OTHER}"' in dig.stdout
    listed = cli(serving, "dns", "txt", "list")
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        f"{NAME}.",
        f"_acme-challenge.{ORIGIN}.",
    ]
    removed = cli(serving, "dns", "txt", "del", NAME, TOKEN)  # the cleanup hook
    assert removed.returncode == 0 and removed.stdout.strip().endswith("removed")
    gone = cli(serving, "dig", NAME, "TXT")
    assert "status: NXDOMAIN" in gone.stdout and TOKEN not in gone.stdout
    again = cli(serving, "dns", "txt", "del", NAME, TOKEN)  # a second cleanup is harmless
    assert again.returncode == 0 and "not there" in again.stdout


BAD = [
    (("www." + ORIGIN, TOKEN), "does not start with _acme-challenge"),
    (("_acme-challenge.x", TOKEN), f"is not in the zone {ORIGIN}"),  # dots: absolute
    ((NAME, "tab\there"), "printable ASCII"),
    (("a..b", TOKEN), "not a DNS name"),
]


def test_bad_names_and_values_fail_in_one_line(serving: Path) -> None:
    for args, says in BAD:
        result = cli(serving, "dns", "txt", "add", *args)
        assert result.returncode != 0 and says in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.startswith("error:")
    assert cli(serving, "dns", "txt", "list").stdout == ""
