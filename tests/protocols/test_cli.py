"""`trustchain` as a user runs it: a real process, a real SoftHSM token, the CLI."""

from __future__ import annotations

import base64
import json
import os
import pty
import signal
import subprocess

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..conftest import wait_until
from .conftest import TRUSTCHAIN, cli, wait_for, write_config


def test_status_shows_a_table_of_the_tree(running) -> None:
    config, _ = running
    done = cli(config, "status")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "running" in rows["hsm"] and "running" in rows["root"]
    hsm, root = rows["hsm"], rows["root"]
    assert len(hsm) - len(hsm.lstrip()) > len(root) - len(root.lstrip())  # under its supervisor
    # not a terminal: rich's 80 columns, where "handled" is left out
    for column in ("actor", "state", "restarts", "mailbox", "uptime", "problem"):
        assert column in done.stdout


def test_status_json_is_machine_readable(running) -> None:
    config, _ = running
    status = json.loads(cli(config, "status", "--json").stdout)
    names = {a["name"] for a in status["actors"]}
    assert names == {"root", "hsm", "ctlog", "issuer", "monitor", "renewal"}


def test_send_signs_in_the_hsm_and_the_signature_verifies(running) -> None:
    config, _ = running
    data = base64.b64encode(b"hello").decode()
    done = cli(
        config,
        "send",
        "hsm",
        "sign_data",
        "--args",
        json.dumps({"label": "cli-test-key", "data": data}),
    )
    assert done.returncode == 0, done.stderr
    signature = base64.b64decode(json.loads(done.stdout))
    key = json.loads(
        cli(config, "send", "hsm", "get_public_key", "--args", '{"label": "cli-test-key"}').stdout
    )
    public = serialization.load_pem_public_key(key["public_key"].encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, b"hello", ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send", "hsm", "sign_data", "--args", '{"label": "nope", "data": ""}'], "[unknown_key]"),
        (["send", "hsm", "sign_data", "--args", "{oops"], "--args is not valid JSON"),
        (["send", "nobody", "ping"], "[unknown_actor]"),
        (["restart", "nobody"], "[unknown_actor]"),
    ],
)
def test_errors_print_one_line_without_a_traceback(running, args, message) -> None:
    config, _ = running
    done = cli(config, *args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_restart_through_the_cli_keeps_the_address(running) -> None:
    config, _ = running
    done = cli(config, "restart", "hsm")
    assert done.returncode == 0, done.stderr
    assert "hsm: running (restarts 1)" in done.stdout
    assert cli(config, "send", "hsm", "list_keys").returncode == 0


def test_sigterm_stops_the_tree_removes_the_socket_and_exits_0(running, short_tmp) -> None:
    _, process = running
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not (short_tmp / "ctl.sock").exists()
    log = process.stderr.read()
    assert "SIGTERM received" in log and "TrustChain stopped" in log


def test_stop_command_stops_the_runtime(running) -> None:
    config, process = running
    assert cli(config, "stop").returncode == 0
    assert process.wait(timeout=30) == 0


def test_commands_without_a_runtime_say_it_is_not_running(short_tmp, softhsm) -> None:
    config = write_config(short_tmp, softhsm)
    done = cli(config, "status")
    assert done.returncode == 1
    assert "TrustChain is not running" in done.stderr


def test_a_bad_config_is_refused_with_the_dotted_key(short_tmp, softhsm) -> None:
    config = write_config(short_tmp, softhsm, drain_timeout_s="soon")
    done = cli(config, "run")
    assert done.returncode == 2
    assert "runtime.drain_timeout_s must be a number" in done.stderr


@pytest.mark.parametrize(
    ("resolver", "said"),
    [
        ({"records": {"laptop": ["10.0.0.1"]}}, "record 'laptop': '10.0.0.1' is an IPv4 address"),
        ({"upstreams": ["udp://192.0.2.53:53"]}, "upstream 'udp://192.0.2.53:53' is not"),
        ({"cnames": {"laptop": "caesar"}}, "laptop.trust.example.com. has both a CNAME"),
    ],
)
def test_a_zone_or_upstream_the_resolver_cannot_serve_is_refused_before_anything_starts(
    short_tmp, softhsm, resolver, said
) -> None:
    config = write_config(short_tmp, softhsm, resolver={"port": 0, **resolver})
    done = cli(config, "run")
    assert done.returncode == 2, done.stderr
    assert "[resolver] cannot be served: " + said in done.stderr
    assert "Traceback" not in done.stderr
    assert not (short_tmp / "ca.sqlite3").exists()  # nothing was started or written


def test_a_wrong_pin_stops_run_with_a_clear_reason(short_tmp, softhsm) -> None:
    config = write_config(short_tmp, softhsm)
    done = subprocess.run(
        [TRUSTCHAIN, "--config", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TRUSTCHAIN_HSM_PIN": "bad"},
    )
    assert done.returncode == 1
    assert "the PIN for token 'trustchain-test' was refused" in done.stderr


def test_json_logs_on_request(short_tmp, softhsm) -> None:
    config = write_config(short_tmp, softhsm)
    process = subprocess.Popen(
        [TRUSTCHAIN, "--config", str(config), "run", "--log-json"],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(short_tmp / "ctl.sock", process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    records = [json.loads(line) for line in process.stderr.read().splitlines()]
    assert any("TrustChain is running" in r["record"]["message"] for r in records)


def test_status_watch_refreshes_until_interrupted(running) -> None:
    """A separate process, so no fake clock: instead of sleeping and hoping it
    refreshed, it runs on a pseudo-terminal, where rich draws every refresh (into
    a pipe it draws only the last, on exit), and Ctrl-C comes once the table has
    been drawn three times; a watch that never redraws times out."""
    config, _ = running
    master, terminal = pty.openpty()
    watch = subprocess.Popen([TRUSTCHAIN, "--config", str(config), "status", "--watch", "0.1"],
                             stdout=terminal, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "COLUMNS": "200", "TERM": "xterm"})  # fmt: skip
    os.close(terminal)
    os.set_blocking(master, False)
    drawn: list[str] = []

    def screen() -> str:
        while True:
            try:
                chunk = os.read(master, 65536)
            except (BlockingIOError, OSError):  # nothing yet; EIO once the process is gone
                return "".join(drawn)
            if not chunk:
                return "".join(drawn)
            drawn.append(chunk.decode(errors="replace"))

    try:
        wait_until(lambda: screen().count("issuer") >= 3, "the table drawn three times", 30)
        watch.send_signal(signal.SIGINT)
        wait_until(lambda: screen() is not None and watch.poll() is not None, "the watch to exit")
        err, text = watch.stderr.read(), screen()
    finally:
        os.close(master)
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err
    assert "hsm" in text and "Traceback" not in err
