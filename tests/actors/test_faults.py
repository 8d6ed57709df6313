"""Faults of the environment under a running CA (real SoftHSM, a real tmpfs, SQLite on
disk): a full disk under the CT log and a token taken away from the HSM are answered
fast with typed errors, shown as faults, retried with backoff, and recovered from
with no restart of any actor. Each test prints how long recovery took."""

from __future__ import annotations

import errno
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from trustchain.actors.ca import CaStoreUnavailable
from trustchain.actors.ct import LogUnavailable
from trustchain.actors.ctlog import CTLogActor, GetSTH
from trustchain.actors.hsm import HSMActor
from trustchain.actors.hsm.errors import HsmUnavailable
from trustchain.actors.issuer import (
    GetCertificate,
    IssueCertificate,
    IssuerActor,
    RevokeCertificate,
)
from trustchain.config import CaConfig, CtLogConfig, HsmConfig
from trustchain.supervisors import (
    ActorState,
    Backoff,
    ChildSpec,
    Registry,
    TrustChainError,
    start_root,
)

from ..ca.conftest import dns_csr, make_key
from ..conftest import own_token

ZONE = "pki.example.com"
BACKOFF = Backoff(min_s=0.02, max_s=0.2, jitter=0.2)


class Tree:
    def __init__(self, hsm: HsmConfig, directory: Path, ca_dir: Path | None = None) -> None:
        tag = uuid.uuid4().hex[:8]
        ca_dir = ca_dir or directory
        self.ca = CaConfig(
            root_key=f"root-{tag}",
            intermediate_key=f"int-{tag}",
            permitted_zones=[ZONE],
            base_url=f"http://{ZONE}",
            database=ca_dir / "ca.sqlite3",
            crl_dir=ca_dir / "crl",
        )
        self.ctlog = CtLogConfig(key=f"log-{tag}", storage_dir=directory / "ct" / "tiles",
                                 index_db=directory / "ct" / "index.sqlite3",
                                 checkpoint_interval_s=0.1)  # fmt: skip
        self.registry = Registry()
        self.gave_up: list[str] = []
        children = [
            ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, hsm)),
            ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, self.ctlog)),
            ChildSpec("issuer", lambda ctx: IssuerActor.start(ctx, self.ca), start_timeout_s=60),
        ]
        self.root = start_root(self.registry, "root", children, max_restarts=3, period_s=60,
                               on_give_up=self.gave_up.append, backoff=BACKOFF)  # fmt: skip
        self.key = make_key("ec-p256")

    def issue(self) -> dict[str, Any]:
        csr = dns_csr(self.key, f"www.{ZONE}").decode()
        return self.registry.ask("issuer", IssueCertificate(csr), timeout=30)

    def faults(self, name: str) -> list[str]:
        return [f["resource"] for f in self.registry.cell(name).health()["faults"]]

    def assert_nothing_restarted(self) -> None:
        for name in ("hsm", "ctlog", "issuer"):
            cell = self.registry.cell(name)
            assert (cell.state, cell.restarts) == (ActorState.RUNNING, 0), name
        assert not self.gave_up

    def stop(self) -> None:
        self.root.stop(block=True, timeout=30)


def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> float:
    """Poll ``condition``; returns the seconds it took (bounded)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"never: {what}"
        time.sleep(0.005)
    return time.monotonic() - start


def final_index(tree: Tree, issued: dict[str, Any]) -> int | None:
    record = tree.registry.ask("issuer", GetCertificate(issued["serial"]))
    index: int | None = record["final_leaf_index"]
    return index


def issues_again(tree: Tree) -> Callable[[], bool]:
    def attempt() -> bool:
        try:
            tree.issue()
            return True
        except TrustChainError:
            return False

    return attempt


def mounted_tmpfs(directory: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs at ``directory``, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and `make test` run as root)")
    directory.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(directory)],
                   check=True)  # fmt: skip
    try:
        yield directory
    finally:  # whatever happened: a mount left behind would outlive the test run
        subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """Where the CT log keeps its tiles."""
    yield from mounted_tmpfs(tmp_path / "ct" / "tiles")


@pytest.fixture
def ca_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """Where the issuer keeps its database and CRLs."""
    yield from mounted_tmpfs(tmp_path / "ca")


def fill(directory: Path) -> Path:
    """Write a filler file until the file system says ENOSPC."""
    filler = directory / "filler"
    # Unbuffered: with a buffer, the bytes the full disk refused would be written again
    # by close() and raise ENOSPC out of the with block.
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                os.fsync(fh.fileno())
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_under_the_log_refuses_issuance_fast_and_resumes_when_space_is_back(
    softhsm: HsmConfig, tmp_path: Path, tmpfs: Path
) -> None:
    tree = Tree(softhsm, tmp_path)
    try:
        first = tree.issue()
        size_before = tree.registry.ask("ctlog", GetSTH())["tree_size"]
        filler = fill(tmpfs)
        # The journal's last page may still have room: what fits is logged (durably);
        # the first append that needs space refuses, and so does every one after it.
        fitted = []
        for _ in range(100):
            try:
                fitted.append(tree.issue())
            except LogUnavailable as exc:
                assert exc.code == "log_unavailable"
                break
        else:
            pytest.fail("a full disk never refused an append")
        refused = 1
        for _ in range(5):  # nothing unlogged is handed out: every attempt is refused
            with pytest.raises(LogUnavailable) as caught:
                tree.issue()
            assert caught.value.code == "log_unavailable"
            refused += 1
        assert tree.faults("ctlog") == ["ct_storage"]
        time.sleep(0.5)  # backed-off probes keep failing meanwhile; nobody restarts
        tree.assert_nothing_restarted()
        assert tree.registry.ask("ctlog", GetSTH())["tree_size"] >= size_before  # reads go on
        filler.unlink()
        took = until(issues_again(tree), "issuance resumes after space comes back")
        print(f"\nissuance resumed {1000 * took:.0f} ms after space came back ({refused} refused)")
        assert tree.faults("ctlog") == []
        tree.assert_nothing_restarted()
        last = tree.issue()
        assert last["leaf_index"] > first["leaf_index"]
        # Each final certificate follows its answer into the log, those the full disk held
        # back too (the issuer re-sends what it is owed once the log takes appends again).
        for issued in (first, *fitted, last):
            until(lambda issued=issued: final_index(tree, issued) is not None,
                  "the final certificate reaches the log")  # fmt: skip
            size = tree.registry.ask("ctlog", GetSTH())["tree_size"]
            assert issued["leaf_index"] < final_index(tree, issued) < size
    finally:
        tree.stop()


def test_a_token_taken_away_refuses_issuance_fast_and_resumes_when_it_is_back(
    tmp_path: Path,
) -> None:
    hsm = own_token(tmp_path / "hsm", "tc-faults")
    tree = Tree(hsm, tmp_path)
    tokens, away = tmp_path / "hsm" / "tokens", tmp_path / "hsm" / "tokens-away"
    try:
        tree.issue()
        tokens.rename(away)
        for _ in range(5):
            with pytest.raises((HsmUnavailable, LogUnavailable)) as caught:
                tree.issue()
            assert caught.value.code in ("hsm_unavailable", "log_unavailable")
        assert tree.faults("hsm") == ["hsm"]
        until(lambda: tree.faults("ctlog") == ["hsm"], "the log notices it cannot sign")
        time.sleep(0.5)
        tree.assert_nothing_restarted()
        away.rename(tokens)
        took = until(issues_again(tree), "issuance resumes after the token comes back")
        print(f"\nissuance resumed {1000 * took:.0f} ms after the token came back")
        until(lambda: tree.faults("hsm") == tree.faults("ctlog") == [], "faults cleared")
        tree.assert_nothing_restarted()
    finally:
        if away.exists():
            away.rename(tokens)
        tree.stop()


def test_a_full_disk_under_the_ca_database_refuses_fast_and_resumes_when_space_is_back(
    softhsm: HsmConfig, tmp_path: Path, ca_tmpfs: Path
) -> None:
    tree = Tree(softhsm, tmp_path, ca_dir=ca_tmpfs)
    try:
        first = tree.issue()
        filler = fill(ca_tmpfs)
        with pytest.raises(CaStoreUnavailable, match="nothing was recorded or handed out"):
            tree.issue()  # logged in CT (the log's disk is fine), not recorded: not handed out
        with pytest.raises(CaStoreUnavailable):
            tree.registry.ask("issuer", RevokeCertificate(first["serial"], "key_compromise"))
        assert tree.faults("issuer") == ["ca_store"]
        time.sleep(0.3)
        tree.assert_nothing_restarted()
        filler.unlink()
        took = until(issues_again(tree), "issuance resumes after space comes back")
        print(f"\nissuance resumed {1000 * took:.0f} ms after space came back (CA database)")
        until(lambda: tree.faults("issuer") == [], "the fault is cleared")
        revoked = tree.registry.ask("issuer", RevokeCertificate(first["serial"], "key_compromise"))
        assert revoked["status"] == "revoked"
        tree.assert_nothing_restarted()
    finally:
        tree.stop()
