"""One writer per store, with real `trustchain run` processes.

A second TrustChain on the same stores (another control socket) is refused with
one line naming the store and the first one's pid, and the first goes on; after
a SIGKILL the kernel has released the locks, a new process starts on the same
stores and every certificate acknowledged before is still in the log. Each
store alone, locked by another process, is enough to refuse a start.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from trustchain.actors.locks import DIRECTORY_LOCK, softhsm_token_dir
from trustchain.config import HsmConfig, load_config
from trustchain.protocols.client import ControlClient
from trustchain.supervisors import TrustChainError

from .conftest import TRUSTCHAIN, cli, wait_for, write_config
from .test_cli_ct import issue

ZONE = "pki.example.com"

HOLD = """
import sys
from pathlib import Path
from trustchain.actors.locks import Store, StoreLock
lock = StoreLock.acquire(Store(Path(sys.argv[1]), sys.argv[2], directory=sys.argv[3] == "dir"))
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def held_by_another_process(path: Path, key: str, directory: bool) -> Iterator[int]:
    """Another process holds ``path``'s store lock until the block ends; yields its pid."""
    kind = "dir" if directory else "file"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), key, kind],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=10)


def wait_until_serving(socket: Path, process: subprocess.Popen[str]) -> None:
    """Polls with a status call (a SIGKILLed process leaves its socket file behind)."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"trustchain run exited early:\n{process.stderr.read()}")  # type: ignore[union-attr]
        try:
            with ControlClient(socket, timeout=30) as client:
                client.call("runtime", "status")
            return
        except (TrustChainError, OSError):
            assert time.monotonic() < deadline, "TrustChain did not come up"
            time.sleep(0.05)


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([TRUSTCHAIN, "--config", str(config), "run"],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_second_run_on_the_same_stores_is_refused_and_a_sigkill_frees_them(
    short_tmp: Path, softhsm: HsmConfig
) -> None:
    config = write_config(short_tmp, softhsm)
    socket = short_tmp / "ctl.sock"
    first = start(config)
    second_socket = short_tmp / "other.sock"
    try:
        wait_for(socket, first)
        certificates = [issue(config, short_tmp, f"before.{ZONE}")[0]]

        second = subprocess.run(
            [TRUSTCHAIN, "--config", str(config), "--socket", str(second_socket), "run"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        line = one_line(second)
        assert line == (
            f"error: {short_tmp}/ct/tiles is in use by another TrustChain (pid {first.pid}); "
            "stop it first, or point ctlog.storage_dir elsewhere [store_locked]"
        )
        assert not second_socket.exists()

        # The first one never noticed: it still serves and issues.
        certificates.append(issue(config, short_tmp, f"during.{ZONE}")[0])

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        third = start(config)
        try:
            wait_until_serving(socket, third)  # the kernel dropped the SIGKILLed one's locks
            for certificate in certificates:
                proof = cli(config, "ct", "proof", str(certificate))
                assert proof.returncode == 0, proof.stderr
                assert "inclusion     OK" in proof.stdout
        finally:
            stop(third)
    finally:
        stop(first)


def stores(config: Path) -> list[tuple[str, Path, bool]]:
    loaded = load_config(config)
    conf = Path(loaded.hsm.softhsm2_conf)
    tokendir = softhsm_token_dir(conf)
    assert tokendir is not None
    return [
        ("ctlog.storage_dir", loaded.ctlog.storage_dir, True),
        ("ctlog.index_db", loaded.ctlog.index_db, False),
        ("ca.database", loaded.ca.database, False),
        ("ca.crl_dir", loaded.ca.crl_dir, True),
        (f"directories.tokendir in {conf}", tokendir, True),
        ("renewal.directory", loaded.renewal.directory, True),
    ]


@pytest.mark.parametrize("index", range(6), ids=lambda i: ["tiles", "index", "ca", "crl",
                                                         "tokens", "renewal"][i])  # fmt: skip
def test_each_store_alone_locked_elsewhere_refuses_the_start_naming_it(
    short_tmp: Path, softhsm: HsmConfig, index: int
) -> None:
    config = write_config(short_tmp, softhsm)
    key, path, directory = stores(config)[index]
    with held_by_another_process(path, key, directory) as pid:
        line = one_line(cli(config, "run"))
    assert line == (
        f"error: {path} is in use by another TrustChain (pid {pid}); "
        f"stop it first, or point {key} elsewhere [store_locked]"
    )
    # Refused before the socket, the HSM or any store was opened.
    assert not (short_tmp / "ctl.sock").exists()
    assert not (short_tmp / "ca.sqlite3").exists()
    assert not (short_tmp / "ct" / "index.sqlite3").exists()


def token_files(tokendir: Path) -> list[tuple[Path, int, int]]:
    """Every file of the token directory but the lock, with its size and mtime."""
    return sorted(
        (p.relative_to(tokendir), p.stat().st_size, p.stat().st_mtime_ns)
        for p in tokendir.rglob("*")
        if p.name != DIRECTORY_LOCK
    )


def test_hsm_init_leaves_a_token_in_use_alone(short_tmp: Path, softhsm: HsmConfig) -> None:
    config = write_config(short_tmp, softhsm)
    conf = Path(softhsm.softhsm2_conf)
    tokendir = softhsm_token_dir(conf)
    assert tokendir is not None
    before = token_files(tokendir)
    with held_by_another_process(tokendir, "tokens", directory=True) as pid:
        done = cli(config, "hsm", "init")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        rf"SoftHSM token 'trustchain-test' left as it is: {re.escape(str(tokendir))} is in use "
        rf"by a running "
        rf"TrustChain \(pid {pid}\)\n",
        done.stdout,
    )
    assert token_files(tokendir) == before
    # Once free, it looks (and finds the token) as before.
    again = cli(config, "hsm", "init")
    assert again.returncode == 0 and "already exists" in again.stdout, again.stderr
