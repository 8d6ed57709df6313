"""A full disk under the detector's trust database (a real 2 MiB tmpfs, filled with a
file until the kernel says ENOSPC, as ``tests/actors/test_faults.py`` does): the
detector answers ``trust_store_unavailable`` at once, changes nothing, shows the
fault (``trust_store``) in its health (what ``/ready`` and ``trustchain status``
show), crashes and restarts nothing, and recovers by itself once space is back: by
its backed-off probe, or by the next write that goes through.

The trees are ``consensus.Consensus`` (a FakeClock each: the probe runs
only when a test moves time, so what clears the fault is known), with only the
detector's database on the small disk. The last test runs `trustchain run` as
shipped, with the detector's database on the small disk: the issuer turns the fault
into a refusal of its own caller (nothing issued, nothing logged), and `trustchain
status` and ``/ready`` (over TrustChain's own HTTPS) show it until the probe finds
space again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trustchain.actors.detector import (
    Decide,
    Evidence,
    GetTrustStatus,
    SpaceChallenge,
    TrustScores,
    ValidateAssetTrust,
)
from trustchain.actors.trust.errors import ProofReplayed, TrustStoreUnavailable
from trustchain.actors.trust.store import TrustStore
from trustchain.config import HsmConfig
from trustchain.supervisors import Registry

from ..actors.test_faults import fill, mounted_tmpfs
from ..protocols.conftest import TRUSTCHAIN, cli, free_port, wait_for, write_config
from .byzantine import BEHAVIOURS
from .consensus import ASSET_ID, ASSET_KEY, Consensus, approved, refused, wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    yield from mounted_tmpfs(tmp_path / "small")


class OnSmallDisk(Consensus):
    """A consensus whose detector keeps its database on ``disk`` (the validators keep
    their keys and votes elsewhere, on a disk with room)."""

    disk: Path

    def start(self) -> None:
        self.config = dataclasses.replace(self.config, database=self.disk / "trust.sqlite3")
        super().start()

    def faults(self) -> list[dict[str, Any]]:
        faults: list[dict[str, Any]] = self.registry.cell(self.detector).health()["faults"]
        return faults

    def assert_nothing_restarted(self) -> None:
        for name in (*self.names, self.detector):
            cell = self.registry.cell(name)
            assert (cell.state.value, cell.restarts) == ("running", 0), name


@pytest.fixture
def tree(hsm: Registry, tmp_path: Path, small_disk: Path) -> Iterator[OnSmallDisk]:
    OnSmallDisk.disk = small_disk
    made = OnSmallDisk(hsm, tmp_path, 4)
    yield made
    made.stop()


def test_a_full_disk_refuses_decisions_at_once_changes_nothing_and_the_probe_recovers(
    tree: OnSmallDisk, plot
) -> None:
    assert tree.register(plot).unwrap()["registered"]
    approved(tree.decide(b"before"))
    wait_until(lambda: all(s["agreed"] == 2 for s in tree.ask(TrustScores())),
               "every vote so far scored")  # fmt: skip
    asked = (TrustScores(), ValidateAssetTrust(ASSET_ID), Evidence())
    before = [tree.ask(message) for message in asked]
    counted = tree.ask(GetTrustStatus())["decisions"]
    filler = fill(tree.disk)

    csr = b"while the disk is full"
    proofs = tree.prove(csr)
    for _ in range(3):  # answered without moving the clock: nothing waits for a deadline
        error = refused(tree.decide(csr, proofs), TrustStoreUnavailable)
        assert error.code == "trust_store_unavailable" and error.details["retry_after_s"] >= 1
        assert "was not recorded and counts for nothing" in error.message
        assert "SQLITE_FULL" in error.message
    challenge = tree.send(SpaceChallenge(ASSET_ID, plot.root.hex(), plot.n))
    assert "no challenge was given" in refused(challenge, TrustStoreUnavailable).message

    (fault,) = tree.faults()  # what /ready and `trustchain status` show
    assert fault["resource"] == "trust_store" and "SQLITE_FULL" in fault["error"]
    assert fault["retries"] >= 3 and fault["next_retry_s"] > 0
    assert [tree.ask(message) for message in asked] == before  # reads go on; scores as before
    assert tree.ask(GetTrustStatus())["decisions"] == counted
    tree.assert_nothing_restarted()
    store = TrustStore(tree.config.database)  # a second reader: nothing of it was written
    try:
        assert store.get_decision(proofs.digest(csr)) is None
        assert len(store.fingerprints) == 1  # the request decided before the disk filled
        assert store.get_challenge(ASSET_KEY, tree.epoch) is None
    finally:
        store.close()

    filler.unlink()
    assert [f["resource"] for f in tree.faults()] == ["trust_store"]  # nobody has looked yet
    tree.clock.advance(fault["next_retry_s"] * 2)  # the backoff's jitter at most doubles it
    wait_until(lambda: tree.faults() == [], "the probe to clear the fault")
    decision = approved(tree.decide(csr, proofs))  # not proof_replayed: nothing was kept
    assert decision.digest == proofs.digest(csr)
    refused(tree.decide(csr, proofs), ProofReplayed)  # now it was
    tree.assert_nothing_restarted()


def test_evidence_caught_on_a_full_disk_is_held_and_the_next_write_stores_it(
    hsm: Registry, tmp_path: Path, small_disk: Path, plot
) -> None:
    OnSmallDisk.disk = small_disk
    tree = OnSmallDisk(hsm, tmp_path, 4, {1: BEHAVIOURS["equivocating"]})
    try:
        assert tree.register(plot).unwrap()["registered"]
        proofs = tree.prove(b"once")
        approved(tree.decide(b"once", proofs))
        filler = fill(tree.disk)
        # Asked again, validator 1 signs the opposite vote: equivocation, caught while
        # nothing can be written. The quarantine holds in memory, the evidence waits.
        refused(tree.decide(b"once", proofs), TrustStoreUnavailable)
        liar = tree.names[0]
        wait_until(lambda: tree.ask(GetTrustStatus())["alerts"]["equivocation"] == 1,
                   "the equivocation caught")  # fmt: skip
        assert tree.ask(GetTrustStatus())["quarantined"] == [liar]
        assert tree.ask(Evidence()) == []  # not on disk yet
        assert [f["resource"] for f in tree.faults()] == ["trust_store"]

        filler.unlink()  # no probe runs (the clock stands still): the next write clears it
        decision = approved(tree.decide(b"after"))
        assert liar not in {v.validator for v in decision.votes}
        assert tree.faults() == []
        (evidence,) = tree.ask(Evidence())
        assert (evidence["validator"], evidence["digest"]) == (liar, proofs.digest(b"once").hex())
        store = TrustStore(tree.config.database)
        try:
            kept = store.get_validator_score(liar)
            assert kept is not None and kept.quarantined
        finally:
            store.close()
        tree.assert_nothing_restarted()
    finally:
        tree.stop()


def test_a_decision_answered_while_a_round_is_open_is_refused_not_lost(
    tree: OnSmallDisk, plot
) -> None:
    """Rounds in flight when the disk fills are answered (with the fault), none dropped."""
    assert tree.register(plot).unwrap()["registered"]
    messages = [Decide(f"r{i}".encode(), tree.prove(f"r{i}".encode())) for i in range(8)]
    filler = fill(tree.disk)
    answers = tree.send_many(messages)
    for answer in answers:
        refused(answer, TrustStoreUnavailable)
    filler.unlink()
    for answer in tree.send_many(messages):
        approved(answer)
    assert tree.faults() == []
    tree.assert_nothing_restarted()


# -- end to end: `trustchain run`, the issuer's refusal, status and /ready -----------------


@pytest.fixture
def running_on_small_disk(softhsm: HsmConfig) -> Iterator[tuple[Path, Path, int]]:
    """TrustChain as shipped (the consensus on), the detector's database on a filled-
    able tmpfs, HTTPS on a port of its own: (config, the small disk, the HTTPS port)."""
    directory = Path(tempfile.mkdtemp(prefix="tc-"))  # a short path: the control socket's
    disks = mounted_tmpfs(directory / "trustdb")
    disk = next(disks)
    port = free_port()
    http = {"port": port, "plain_port": -1, "names": ["ct.pki.example.com", "::1"]}
    config = write_config(directory, softhsm, http=http,
                          trust={"database": f"{disk}/trust.sqlite3"})  # fmt: skip
    log = directory / "stderr.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen([TRUSTCHAIN, "--config", str(config), "run"], stderr=stderr)
    try:
        wait_for(directory / "ctl.sock", process, timeout=60)
        yield config, disk, port
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()[-3000:]
        next(disks, None)  # unmounts
        shutil.rmtree(directory, ignore_errors=True)


def get_ready(config: Path, port: int) -> tuple[int, dict[str, Any]]:
    """GET /ready over TrustChain's own HTTPS (its certificate checked against its root),
    once the renewal actor has one."""
    root = cli(config, "ca", "root")
    assert root.returncode == 0, root.stderr
    context = ssl.create_default_context(cadata=root.stdout)
    got: list[tuple[int, dict[str, Any]]] = []

    def attempt() -> bool:
        try:
            with urllib.request.urlopen(f"https://[::1]:{port}/ready", context=context,
                                        timeout=5) as reply:  # fmt: skip
                got.append((reply.status, json.load(reply)))
        except urllib.error.HTTPError as reply:
            got.append((reply.code, json.load(reply)))
        except OSError:
            return False
        return True

    wait_until(attempt, "the HTTPS edge with TrustChain's own certificate", timeout=60)
    return got[-1]


def test_trustchain_run_refuses_issuance_on_a_full_trust_disk_shows_it_and_recovers(
    running_on_small_disk: tuple[Path, Path, int],
) -> None:
    config, disk, port = running_on_small_disk
    out = config.parent / "out"
    first = cli(config, "issue", "www.pki.example.com", "--out", str(out))
    assert first.returncode == 0, first.stderr  # registered, approved, issued
    wait_until(lambda: get_ready(config, port)[0] == 200, "ready", timeout=60)

    def tree_size() -> int:
        done = cli(config, "send", "ctlog", "get_sth")
        assert done.returncode == 0, done.stderr
        return int(json.loads(done.stdout)["tree_size"])

    logged = tree_size()
    filler = fill(disk)
    refused_ = cli(config, "issue", "api.pki.example.com", "--out", str(out))
    assert refused_.returncode == 1 and "Traceback" not in refused_.stderr
    assert refused_.stderr.rstrip().endswith("[trust_store_unavailable]"), refused_.stderr
    assert "nothing was approved" in refused_.stderr
    assert not (out / "api.pki.example.com.crt").exists()
    assert tree_size() == logged  # nothing was signed or logged for it

    status = json.loads(cli(config, "status", "--json").stdout)
    actors = {actor["name"]: actor for actor in status["actors"]}
    (fault,) = actors["detector"]["faults"]
    assert fault["resource"] == "trust_store" and "SQLITE_FULL" in fault["error"]
    assert actors["detector"]["state"] == "running" and actors["detector"]["restarts"] == 0
    table = cli(config, "status").stdout
    assert "degraded" in table and "trust_store down" in table, table
    code, ready = get_ready(config, port)
    assert code == 503 and "not_running" not in ready  # every actor runs; one resource is down
    assert ("detector", "trust_store") in [(f["actor"], f["resource"]) for f in ready["faults"]]

    filler.unlink()
    wait_until(lambda: get_ready(config, port)[0] == 200, "/ready once space is back (the probe)",
               timeout=30)  # fmt: skip
    again = cli(config, "issue", "api.pki.example.com", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert (out / "api.pki.example.com.crt").exists()
    status = json.loads(cli(config, "status", "--json").stdout)
    detector = next(a for a in status["actors"] if a["name"] == "detector")
    assert (detector["faults"], detector["restarts"]) == ([], 0)
