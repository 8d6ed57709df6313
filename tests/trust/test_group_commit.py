"""The detector's group commit: decisions made while others are queued share one
transaction, and no caller hears of a decision before it is on disk."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import outcome
import pytest

from trustchain.actors.detector import Decide, GetTrustStatus
from trustchain.actors.trust import space
from trustchain.supervisors import Registry

from .consensus import Consensus, approved


@pytest.fixture
def tree(hsm: Registry, tmp_path: Path) -> Iterator[Consensus]:
    made = Consensus(hsm, tmp_path, 4)
    yield made
    made.stop()


def on_disk(database: Path, digest: bytes) -> bool:
    """Whether another connection (another process would see the same) finds it."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return (
            db.execute("SELECT 1 FROM decisions WHERE digest = ?", (digest,)).fetchone() is not None
        )
    finally:
        db.close()


def test_each_answer_comes_after_its_decision_is_on_disk_and_decisions_share_commits(
    tree: Consensus,
    plot: space.Plot,
) -> None:
    assert tree.register(plot).unwrap()["registered"]
    before = tree.ask(GetTrustStatus())["commits"]
    csrs = [f"group commit {i}".encode() for i in range(24)]
    decides = [Decide(csr, tree.prove(csr)) for csr in csrs]
    durable_when_answered: dict[int, bool] = {}
    answers: list[outcome.Outcome] = []
    original = tree.registry.tell

    def tell(name: str, message: Any, reply: Any = None) -> None:
        if isinstance(message, Decide) and reply is not None:
            digest = message.proofs.digest(message.csr_der)
            index = decides.index(message)

            def checked(result: outcome.Outcome) -> None:  # runs as the answer is given
                durable_when_answered[index] = on_disk(tree.config.database, digest)
                reply(result)

            return original(name, message, checked)
        return original(name, message, reply)

    tree.registry.tell = tell  # type: ignore[method-assign]
    try:
        answers = tree.send_many(list(decides))
    finally:
        del tree.registry.tell
    for answer in answers:
        approved(answer)
    assert durable_when_answered == dict.fromkeys(range(len(decides)), True)
    after = tree.ask(GetTrustStatus())["commits"]
    assert after["decisions"] - before["decisions"] == len(decides)
    assert 1 <= after["groups"] - before["groups"] <= len(decides)
