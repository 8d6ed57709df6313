"""CTLogActor never waits on the HSM: batches are staged while earlier ones are out
for signing, commit in order, and an HSM that goes away mid-append is a fault of
the environment (``log_unavailable``), never a crash of the log."""

from __future__ import annotations

import base64
import threading
import uuid
from pathlib import Path
from typing import Any

import outcome
import pytest

from trustchain.actors.ct import InvalidChain, LogEntryInput, LogUnavailable, verify_consistency
from trustchain.actors.ctlog import (
    AddChain,
    CTLogActor,
    GetSTH,
    GetSTHConsistency,
    LogIssued,
)
from trustchain.actors.hsm import HSMActor
from trustchain.config import CtLogConfig, HsmConfig
from trustchain.supervisors import (
    ActorState,
    Backoff,
    ChildSpec,
    FakeClock,
    InvalidRequest,
    Registry,
    RestartChild,
    start_root,
)

from ..conftest import own_token, wait_until

BACKOFF = Backoff(min_s=0.02, max_s=0.2, jitter=0.2)


class LogTree:
    def __init__(self, hsm: HsmConfig, directory: Path) -> None:
        self.config = CtLogConfig(key=f"log-{uuid.uuid4().hex[:8]}",
                                  storage_dir=directory / "ct" / "tiles",
                                  index_db=directory / "ct" / "index.sqlite3")  # fmt: skip
        self.registry = Registry()
        self.root = start_root(self.registry, "root", [
            ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, hsm)),
            ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, self.config)),
        ], max_restarts=5, period_s=60, backoff=BACKOFF)  # fmt: skip

    def submit_many(self, entries: list[LogEntryInput]) -> list[outcome.Outcome]:
        """Send every entry at once (one tell each) and wait for all the answers."""
        answers: dict[int, outcome.Outcome] = {}
        done = threading.Event()

        def reply_for(i: int) -> Any:
            def reply(result: outcome.Outcome) -> None:
                answers[i] = only(result)
                if len(answers) == len(entries):
                    done.set()

            return reply

        for i, entry in enumerate(entries):
            self.registry.tell("ctlog", LogIssued((entry,)), reply_for(i))
        assert done.wait(60), f"{len(entries) - len(answers)} submissions never answered"
        return [answers[i] for i in range(len(entries))]


def only(result: outcome.Outcome) -> outcome.Outcome:
    """The outcome of a one-entry LogIssued's only entry (or of the whole message)."""
    if isinstance(result, outcome.Error):
        return result
    (each,) = result.unwrap()
    assert isinstance(each, outcome.Value | outcome.Error)
    return each


@pytest.fixture
def tree(tmp_path: Path) -> Any:
    hsm = own_token(tmp_path, f"ct-{uuid.uuid4().hex[:8]}")
    log = LogTree(hsm, tmp_path)
    yield log
    log.root.stop(block=True, timeout=30)


def entries(tag: str, count: int) -> list[LogEntryInput]:
    return [LogEntryInput.x509(f"{tag}-{i}".encode() * 4, (b"issuer",)) for i in range(count)]


def test_concurrent_submissions_get_distinct_consecutive_indices_in_consistent_heads(tree) -> None:
    first = tree.registry.ask("ctlog", GetSTH())
    results = [r.unwrap() for r in tree.submit_many(entries("a", 600))]
    indices = sorted(r["leaf_index"] for r in results)
    assert indices == list(range(600))
    second = tree.registry.ask("ctlog", GetSTH())
    assert second["tree_size"] == 600 and second["timestamp"] >= first["timestamp"]
    results = [r.unwrap() for r in tree.submit_many(entries("a", 10) + entries("b", 5))]
    assert [r["duplicate"] for r in results] == [True] * 10 + [False] * 5  # 10 known, 5 new
    assert sorted(r["leaf_index"] for r in results[10:]) == list(range(600, 605))
    proof = tree.registry.ask("ctlog", GetSTHConsistency(600, 605))["consistency"]
    third = tree.registry.ask("ctlog", GetSTH())
    verify_consistency(600, 605, base64.b64decode(second["sha256_root_hash"]),
                       base64.b64decode(third["sha256_root_hash"]), proof)  # fmt: skip


def test_an_hsm_restart_in_the_middle_of_appends_answers_unavailable_never_crashes_the_log(
    tree,
) -> None:
    tree.submit_many(entries("warm", 5))
    answers: list[outcome.Outcome] = []
    done = threading.Event()
    batch = entries("during", 300)

    def reply(result: outcome.Outcome) -> None:
        answers.append(only(result))
        if len(answers) == len(batch):
            done.set()

    for i, entry in enumerate(batch):
        tree.registry.tell("ctlog", LogIssued((entry,)), reply)
        if i == 20:
            tree.registry.cell("hsm").ref.stop(
                block=False
            )  # pykka stop: the supervisor restarts it
    assert done.wait(60)
    for result in answers:
        if isinstance(result, outcome.Error):
            assert isinstance(result.error, LogUnavailable), result.error
    cell = tree.registry.cell("ctlog")
    assert (cell.state, cell.restarts) == (ActorState.RUNNING, 0)

    def appends_again() -> bool:
        (result,) = tree.submit_many(entries(f"after-{uuid.uuid4().hex}", 1))
        return isinstance(result, outcome.Value)

    wait_until(appends_again, "the log appends again after the HSM is back", timeout=30)
    assert tree.registry.cell("ctlog").restarts == 0


def test_one_log_issued_carries_many_entries_with_or_without_scts(tree) -> None:
    first, second = entries("with", 3), entries("without", 3)
    with_scts = tree.registry.ask("ctlog", LogIssued(tuple(first)))
    without = tree.registry.ask("ctlog", LogIssued(tuple(second), scts=False))
    answers = [each.unwrap() for each in with_scts + without]
    assert [a["leaf_index"] for a in answers] == list(range(6))
    assert all("sct" in a for a in answers[:3]) and not any("sct" in a for a in answers[3:])
    sth = tree.registry.ask("ctlog", GetSTH())
    assert sth["tree_size"] == 6  # logged all the same, under a signed tree head
    (again,) = tree.registry.ask("ctlog", LogIssued((second[0],)))  # an SCT when asked
    answer = again.unwrap()
    assert answer["duplicate"] and "sct" in answer
    assert tree.registry.ask("ctlog", LogIssued(())) == []


def test_log_issued_is_in_process_only_and_add_chain_is_checked(tree) -> None:
    with pytest.raises(InvalidRequest, match="in-process only"):
        LogIssued.from_args({"entries": [{"certificate": "AAAA"}]})
    with pytest.raises(InvalidChain, match=r"not a DER X\.509"):  # the edges' form is checked
        tree.registry.ask("ctlog", AddChain([b"not a certificate"]))


def test_a_restarted_log_signs_a_fresh_tree_head_at_once_not_a_period_later(
    tmp_path: Path,
) -> None:
    """A tree head as old as the downtime would be stale to the monitor, which starts
    after the log and checks at once: the log re-signs it on starting."""
    hsm = own_token(tmp_path, f"ct-{uuid.uuid4().hex[:8]}")
    # an hour between idle re-signings: the timer cannot be what re-signs here
    config = CtLogConfig(
        key=f"log-{uuid.uuid4().hex[:8]}",
        storage_dir=tmp_path / "tiles",
        index_db=tmp_path / "index.sqlite3",
        checkpoint_interval_s=3_600,
    )
    clock, registry = FakeClock(), Registry()
    root = start_root(registry, "root", [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, hsm)),
        ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, config)),
    ], clock=clock)  # fmt: skip
    try:
        wait_until(lambda: registry.ask("ctlog", GetSTH())["timestamp"] == now_ms(clock),
                   "the first tree head")  # fmt: skip
        clock.advance(600)  # down for ten minutes, as far as the log can tell
        cell = registry.cell("ctlog")
        before = cell.incarnation
        registry.tell("root", RestartChild("ctlog"))
        wait_until(lambda: cell.incarnation > before and cell.state is ActorState.RUNNING,
                   "the log running again")  # fmt: skip
        wait_until(lambda: registry.ask("ctlog", GetSTH())["timestamp"] == now_ms(clock),
                   "a tree head signed now")  # fmt: skip
    finally:
        root.stop(block=True, timeout=30)


def now_ms(clock: FakeClock) -> int:
    return int(clock.time() * 1000)
