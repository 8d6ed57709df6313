"""CTMonitorActor against a real log (HSM key, tiles on disk) and against a log that lies.

The lying log is a test-only actor answering the same public messages as
CTLogActor (log_info, get_sth, get_sth_consistency) from an in-memory tree that
it can tamper with on request; the monitor sees nothing else of it. The liar's
tree runs on a FakeClock, which both actors read: a test moves time one tick at
a time and waits for exactly that check to finish (``status["checking"]``), so
"alerted once" is checked over a known number of checks, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from loguru import logger

from trustchain.actors.ct import log_id, root_from_leaf_hashes
from trustchain.actors.ct import merkle as ct_merkle
from trustchain.actors.ct.audit import AlertKind
from trustchain.actors.ct.checkpoint import sign_tree_head
from trustchain.actors.ctlog import (
    AcceptRoots,
    AddChain,
    CTLogActor,
    GetLogInfo,
    GetSTH,
    GetSTHConsistency,
)
from trustchain.actors.hsm import HSMActor
from trustchain.actors.monitor import CTMonitorActor, GetMonitorStatus
from trustchain.config import CtLogConfig, HsmConfig, MonitorConfig
from trustchain.supervisors import (
    ActorContext,
    ActorState,
    ChildSpec,
    FakeClock,
    Message,
    Registry,
    RestartChild,
    SupervisedActor,
    TrustChainError,
    handles,
    start_root,
)

from ..conftest import wait_until

FAST = MonitorConfig(interval_s=0.05, max_sth_age_s=5.0)  # for the real log, on real time
TICK = MonitorConfig(interval_s=1.0, max_sth_age_s=10.0)  # for the liar, on a FakeClock


def status(registry: Registry) -> dict[str, Any]:
    return registry.ask("monitor", GetMonitorStatus())


def wait_verified(registry: Registry, size: int) -> None:
    """Until the monitor's last verified head has ``size`` entries."""
    wait_until(lambda: (status(registry)["verified"] or {}).get("tree_size") == size,
               f"a verified head of size {size}", timeout=20)  # fmt: skip


def settled(registry: Registry) -> dict[str, Any]:
    """The monitor's status once no check is in flight (every reply of it handled)."""
    wait_until(lambda: not status(registry)["checking"], "the check to finish")
    return status(registry)


def tick(registry: Registry, clock: FakeClock, answered: bool = True) -> dict[str, Any]:
    """Move time on by one interval: one tick runs (advance() queues it before the
    status request, so it is handled first); the status once its check is done
    (``answered``), or at once (a log that never answers)."""
    clock.advance(TICK.interval_s)
    now = status(registry)
    return settled(registry) if answered else now


@pytest.fixture
def errors() -> Iterator[list[str]]:
    """The loguru ERROR lines written while the test runs."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="ERROR")
    yield lines
    logger.remove(sink)


# A log that lies -----------------------------------------------------------------


@dataclass(frozen=True)
class Grow(Message):
    count: int


@dataclass(frozen=True)
class Misbehave(Message):
    kind: str  # an AlertKind value


class LogRefuses(TrustChainError):
    code = "log_refuses"


class LyingLog(SupervisedActor):
    """Honest until told otherwise; then every head it serves shows one kind of lie."""

    def __init__(
        self, context: ActorContext, key: ec.EllipticCurvePrivateKey, lie: str | None = None
    ) -> None:
        super().__init__(context)
        self.key = key
        self.leaves = [uuid.uuid4().bytes * 2 for _ in range(5)]
        self.lie = lie
        self.stale_since = 0

    def _sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def _head(self, leaves: list[bytes], timestamp: int | None = None) -> dict[str, Any]:
        now = round(self.clock.time() * 1000) if timestamp is None else timestamp
        return sign_tree_head(self._sign, len(leaves), now, root_from_leaf_hashes(leaves)).to_json()

    def _served_leaves(self) -> list[bytes]:
        """The tree this log currently pretends to have."""
        if self.lie == AlertKind.FORK:
            return [*self.leaves[:-1], b"\x01" * 32]  # same size, last entry swapped
        if self.lie == AlertKind.SHRINKING:
            return self.leaves[:-1]
        if self.lie == AlertKind.INCONSISTENT:
            return [b"\x02" * 32, *self.leaves[1:], b"\x03" * 32]  # grown, history rewritten
        return self.leaves

    @handles(GetLogInfo)
    def log_info(self, msg: GetLogInfo) -> dict[str, Any]:
        if self.lie == "garbage_info":
            return {"public_key": "not a key", "log_id": 7}
        spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {"public_key": pem.decode(), "log_id": log_id(spki)}

    @handles(GetSTH)
    def get_sth(self, msg: GetSTH) -> dict[str, Any]:
        if self.lie == AlertKind.BAD_SIGNATURE:
            head = self._head([*self.leaves, b"\x04" * 32])
            tampered = self._head([*self.leaves, b"\x05" * 32])["sha256_root_hash"]
            head["sha256_root_hash"] = tampered
            return head  # a grown tree whose root is not the one signed
        if self.lie == AlertKind.STALE:
            return self._head(self.leaves, self.stale_since)  # an hour-old head, every time
        if self.lie == "refuse":
            raise LogRefuses("the log refuses to answer")
        if self.lie == "silent":
            self.defer()  # and never answer
            return {}
        return self._head(self._served_leaves())

    @handles(GetSTHConsistency)
    def get_sth_consistency(self, msg: GetSTHConsistency) -> dict[str, Any]:
        leaves = self._served_leaves()

        def node(level: int, index: int) -> bytes:
            return root_from_leaf_hashes(leaves[index << level : (index + 1) << level])

        return {"consistency": ct_merkle.consistency_proof(node, msg.first, msg.second)}

    @handles(Grow)
    def grow(self, msg: Grow) -> int:
        self.leaves += [uuid.uuid4().bytes * 2 for _ in range(msg.count)]
        return len(self.leaves)

    @handles(Misbehave)
    def misbehave(self, msg: Misbehave) -> None:
        self.lie = msg.kind
        self.stale_since = round(self.clock.time() * 1000) - 3_600_000


@dataclass
class Liar:
    registry: Registry
    clock: FakeClock


def start_liar(lie: str | None = None) -> tuple[Liar, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    registry, clock = Registry(), FakeClock(wall=dt.datetime.now(dt.UTC).timestamp())
    root = start_root(registry, "root", [
        ChildSpec("liar", lambda ctx: LyingLog.start(ctx, key, lie)),
        ChildSpec("monitor", lambda ctx: CTMonitorActor.start(ctx, TICK, ctlog="liar")),
    ], clock=clock)  # fmt: skip
    return Liar(registry, clock), root


@pytest.fixture
def lying() -> Iterator[Liar]:
    liar, root = start_liar()
    yield liar
    root.stop(block=True, timeout=30)


def test_an_honest_log_growing_raises_no_alert(lying: Liar, errors: list[str]) -> None:
    registry, clock = lying.registry, lying.clock
    assert settled(registry)["verified"]["tree_size"] == 5  # the first check, at start
    assert registry.ask("liar", Grow(3)) == 8
    assert tick(registry, clock)["verified"]["tree_size"] == 8
    assert registry.ask("liar", Grow(9)) == 17
    now = tick(registry, clock)
    assert now["verified"]["tree_size"] == 17
    assert now["status"] == "ok" and now["last_check"] == "ok"
    assert now["alerts_total"] == 0 and now["consistency_proofs"] == 2
    assert errors == []


@pytest.mark.parametrize("kind", list(AlertKind))
def test_each_lie_raises_its_own_alert_once(
    lying: Liar, errors: list[str], kind: AlertKind
) -> None:
    registry, clock = lying.registry, lying.clock
    settled(registry)
    registry.ask("liar", Grow(2))
    honest = tick(registry, clock)["verified"]
    assert honest["tree_size"] == 7

    registry.ask("liar", Misbehave(kind.value))
    first = tick(registry, clock)
    assert first["alerts"] == {k.value: int(k == kind) for k in AlertKind}
    for n in range(1, 6):  # the same lie, told at five more checks ...
        after = tick(registry, clock)
        assert after["checks"] == first["checks"] + n
        assert after["alerts"] == first["alerts"]  # ... is alerted once
    assert after["status"] == "alert" and after["last_check"] == "alert"
    assert after["last_alert"]["kind"] == kind.value and after["last_alert"]["text"]
    assert after["verified"]["tree_size"] == 7  # nothing the liar said was accepted
    assert after["verified"]["root_hash"] == honest["root_hash"]
    assert len(errors) == 1 and f"[{kind.value}]" in errors[0] and "ERROR" in errors[0]


@pytest.mark.parametrize("how", ["refuse", "silent"])
def test_a_log_that_stops_answering_goes_stale_once_per_outage(errors: list[str], how: str) -> None:
    liar, root = start_liar()
    registry, clock = liar.registry, liar.clock
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        verified = settled(registry)["verified"]
        assert verified is not None
        registry.ask("liar", Misbehave(how))
        # Up to max_sth_age_s after the last verified head: errors, no alert.
        for _ in range(round(TICK.max_sth_age_s / TICK.interval_s) - 1):
            assert tick(registry, clock, answered=how == "refuse")["alerts_total"] == 0
        # Past it: stale, once, however many more checks fail.
        for _ in range(12):
            now = tick(registry, clock, answered=how == "refuse")
        assert now["alerts"] == {k.value: int(k == AlertKind.STALE) for k in AlertKind}
        if how == "refuse":  # errors are counted, but are not themselves evidence
            assert now["fetch_failures"] == 21 and "refuses" in now["last_fetch_error"]
            assert sum("cannot check" in line for line in warnings) == 1  # once per outage
        else:  # each unanswered check is abandoned after max_sth_age_s, and a new one begun
            assert now["checking"] and "has not answered" in now["last_alert"]["text"]
            assert now["fetch_failures"] == 1
        assert len(errors) == 1
        # Answering again, the log is checked again (an unanswered check was abandoned).
        registry.ask("liar", Misbehave("honest"))
        registry.ask("liar", Grow(4))
        for _ in range(round(TICK.max_sth_age_s / TICK.interval_s) + 1):
            clock.advance(TICK.interval_s)
            if (status(registry)["verified"] or {}).get("tree_size") == 9:
                break
        wait_verified(registry, 9)
        assert settled(registry)["last_check"] == "ok"
    finally:
        logger.remove(sink)
        root.stop(block=True, timeout=30)


def test_an_unusable_log_info_is_retried_and_never_crashes_the_monitor() -> None:
    liar, root = start_liar("garbage_info")
    registry, clock = liar.registry, liar.clock
    try:
        assert settled(registry)["fetch_failures"] == 1  # the first check, at start
        for n in (2, 3):
            assert tick(registry, clock)["fetch_failures"] == n
        assert status(registry)["status"] == "starting" and status(registry)["verified"] is None
        registry.ask("liar", Misbehave("honest"))
        assert tick(registry, clock)["verified"]["tree_size"] == 5
        assert registry.cell("monitor").restarts == 0
        assert status(registry)["alerts_total"] == 0
    finally:
        root.stop(block=True, timeout=30)


# The real log ------------------------------------------------------------------


class Certificates:
    """A root kept in memory and leaves it signs: what add_chain accepts."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Monitor Test Root")])
        self.root = self._build(name, name, self.key.public_key(), ca=True)
        self.name = name

    def _build(self, subject: x509.Name, issuer: x509.Name, public_key: Any, ca: bool) -> bytes:
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def leaf(self) -> bytes:
        return self._build(x509.Name([]), self.name, self.key.public_key(), ca=False)


@pytest.fixture
def real(softhsm: HsmConfig, tmp_path: Path) -> Iterator[Registry]:
    ctlog = CtLogConfig(key=f"log-{uuid.uuid4().hex[:8]}", storage_dir=tmp_path / "tiles",
                        index_db=tmp_path / "index.sqlite3", checkpoint_interval_s=0.2)  # fmt: skip
    registry = Registry()
    root = start_root(registry, "root", [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, softhsm)),
        ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, ctlog)),
        ChildSpec("monitor", lambda ctx: CTMonitorActor.start(ctx, FAST)),
    ], max_restarts=10, period_s=60)  # fmt: skip
    yield registry
    root.stop(block=True, timeout=30)


def add_entries(registry: Registry, certs: Certificates, count: int) -> int:
    done = threading.Semaphore(0)
    for _ in range(count):
        registry.tell("ctlog", AddChain([certs.leaf(), certs.root]), lambda _r: done.release())
    for _ in range(count):
        assert done.acquire(timeout=20)
    return registry.ask("ctlog", GetSTH())["tree_size"]


def test_it_verifies_the_real_logs_growing_heads(real: Registry) -> None:
    registry = real
    certs = Certificates()
    registry.ask("ctlog", AcceptRoots([certs.root]))
    sizes = []
    for count in (1, 5, 40):
        size = add_entries(registry, certs, count)
        wait_verified(registry, size)
        sizes.append(size)
    assert sizes == [1, 6, 46]
    now = status(registry)
    assert now["status"] == "ok" and now["alerts_total"] == 0
    assert now["consistency_proofs"] >= 2  # 1 -> 6 -> 46, at least
    assert now["verified"]["root_hash"] == registry.ask("ctlog", GetSTH())["sha256_root_hash"]


def test_a_log_restart_is_not_evidence(real: Registry) -> None:
    registry = real
    certs = Certificates()
    registry.ask("ctlog", AcceptRoots([certs.root]))
    size = add_entries(registry, certs, 3)
    wait_verified(registry, size)
    cell = registry.cell("ctlog")
    before = cell.incarnation
    registry.tell("root", RestartChild("ctlog"))
    wait_until(lambda: cell.incarnation > before and cell.state is ActorState.RUNNING,
               "the log to run again")  # fmt: skip
    size = add_entries(registry, certs, 4)
    wait_verified(registry, size)
    assert status(registry)["alerts_total"] == 0
