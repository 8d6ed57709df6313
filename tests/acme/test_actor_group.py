"""AcmeActor's group commit: the requests and peers' results waiting together in its
mailbox are handled in one transaction, answered and acted on only once it commits;
a group the store cannot take holds nothing: every request of it is refused (503) and
no effect of it is performed, and a peer's result in it is fed again later. A request
that writes nothing, handled before its group wrote anything, is answered at once.

To have requests wait together deterministically, the actor here can be held (``_Hold``:
its thread waits until the test lets it go) while they are sent.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import outcome
import pytest

from trustchain.actors.acme import AcmeActor, AcmeRequest
from trustchain.actors.detector.messages import ValidateChallenge
from trustchain.supervisors import ActorUnavailable, Message, handles

from ..actors.test_faults import fill
from .test_actor import ActorClient, Tree, _validate, small_disk
from .test_core import BASE, ZONE, approval, body, header

__all__ = ["small_disk"]  # the fixture, used by name
WAIT_S = 10.0


@dataclass(frozen=True)
class _Hold(Message):
    release: threading.Event


@dataclass(frozen=True)
class _Crash(Message):
    pass


class HeldAcme(AcmeActor):
    @handles(_Hold)
    def hold(self, msg: _Hold) -> None:
        msg.release.wait(WAIT_S)  # (a test's own stall: what is sent meanwhile waits together)

    @handles(_Crash)
    def crash(self, msg: _Crash) -> None:
        raise RuntimeError("a bug, in the middle of a group")


class Held:
    """The ACME actor held while requests are sent, then let go: they wait together."""

    def __init__(self, tree: Tree) -> None:
        self.tree, self.release = tree, threading.Event()
        self.answers: queue.Queue[tuple[int, outcome.Outcome]] = queue.Queue()
        self.clients: dict[int, ActorClient] = {}

    def __enter__(self) -> Held:
        self.tree.registry.tell("acme", _Hold(self.release))
        return self

    def send(self, i: int, client: ActorClient, url: str, payload: dict[str, Any] | None) -> None:
        request = AcmeRequest("POST", url, client.sign(url, payload), "application/jose+json")
        self.clients[i] = client
        self.tree.registry.tell("acme", request, lambda result: self.answers.put((i, result)))

    def __exit__(self, *exc: object) -> None:
        self.release.set()

    def collected(self, count: int) -> dict[int, dict[str, Any]]:
        got = dict(self.answers.get(timeout=WAIT_S) for _ in range(count))
        answers = {i: result.unwrap() for i, result in got.items()}
        for i, answer in answers.items():  # each client's next nonce, as its send keeps
            self.clients[i].nonce = header(answer, "Replay-Nonce")
        return answers


def commits(tree: Tree) -> dict[str, int]:
    return dict(tree.status()["commits"])


def clients(tree: Tree, count: int) -> list[ActorClient]:
    registered = []
    for _ in range(count):
        client = ActorClient(tree)
        client.register()
        registered.append(client)
    return registered


@pytest.fixture
def held_tree(tmp_path: Path) -> Iterator[Tree]:
    running = Tree(tmp_path / "acme.sqlite3", actor=HeldAcme)
    yield running
    running.stop()


def new_order(i: int) -> dict[str, Any]:
    return {"identifiers": [{"type": "dns", "value": f"g{i}.{ZONE}"}]}


def test_requests_waiting_together_share_one_commit_and_each_gets_its_answer(
    held_tree: Tree,
) -> None:
    tree = held_tree
    group = clients(tree, 6)
    before = commits(tree)
    with Held(tree) as held:
        for i, client in enumerate(group):
            held.send(i, client, BASE + "/acme/new-order", new_order(i))
    answers = held.collected(len(group))
    after = commits(tree)
    assert after["groups"] - before["groups"] == 1
    assert after["members"] - before["members"] == len(group)
    for i, answer in answers.items():
        assert answer["status"] == 201, body(answer)
        assert body(answer)["identifiers"] == new_order(i)["identifiers"]
        order = group[i].post(header(answer, "Location") or "")  # durable: readable again
        assert body(order)["status"] == "pending"
    assert tree.status()["orders"] == {"pending": len(group)}


def test_a_group_the_disk_refuses_answers_each_request_503_and_asks_no_validator(
    small_disk: Path,
) -> None:
    tree = Tree(small_disk / "acme.sqlite3", actor=HeldAcme)
    try:
        first, second = clients(tree, 2)
        order = body(first.order(f"c.{ZONE}"))
        authz = body(first.post(order["authorizations"][0]))
        challenge = next(c["url"] for c in authz["challenges"] if c["type"] == "http-01")
        filler = fill(small_disk)
        with Held(tree) as held:
            held.send(0, first, challenge, {})  # would ask the validators
            held.send(1, second, BASE + "/acme/new-order", new_order(1))
        answers = held.collected(2)
        for answer in answers.values():
            assert answer["status"] == 503 and header(answer, "Retry-After"), answer
        assert tree.faults() == ["acme_store"]
        with pytest.raises(queue.Empty):
            tree.asked["detector"].get(timeout=0.2)  # no effect of the refused group
        filler.unlink()
        _recovered(tree)
        assert body(first.post(order["authorizations"][0]))["status"] == "pending"
        assert body(first.post(challenge, {}))["status"] == "processing"
        message, _ = tree.next("detector")
        assert isinstance(message, ValidateChallenge)
    finally:
        tree.stop()


def test_a_validators_result_in_a_refused_group_is_fed_again_once_the_disk_takes_it(
    small_disk: Path,
) -> None:
    tree = Tree(small_disk / "acme.sqlite3")
    try:
        (client,) = clients(tree, 1)
        order = body(client.order(f"v.{ZONE}"))
        authz_url = order["authorizations"][0]
        authz = body(client.post(authz_url))
        challenge = next(c["url"] for c in authz["challenges"] if c["type"] == "http-01")
        assert body(client.post(challenge, {}))["status"] == "processing"
        message, reply = tree.next("detector")
        filler = fill(small_disk)
        tree.answer("detector", reply, approval(_validate(message), tree.clock.time()))
        _until(lambda: tree.faults() == ["acme_store"])
        filler.unlink()
        _recovered(tree)
        _until(lambda: body(client.post(authz_url))["status"] == "valid")
    finally:
        tree.stop()


def _recovered(tree: Tree) -> None:
    for _ in range(200):
        tree.clock.advance(1.0)
        if not tree.faults():
            return
        time.sleep(0.01)
    raise AssertionError(f"the store fault never cleared: {tree.faults()}")


def _until(condition: Any) -> None:
    for _ in range(300):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("never")


def test_a_read_before_any_write_of_its_group_is_answered_and_one_after_is_not(
    small_disk: Path,
) -> None:
    tree = Tree(small_disk / "acme.sqlite3", actor=HeldAcme)
    try:
        reader, writer, later = clients(tree, 3)
        url = header(reader.order(f"r.{ZONE}"), "Location") or ""
        later.nonce = header(later.post(BASE + "/acme/new-order", new_order(9)), "Replay-Nonce")
        filler = fill(small_disk)
        with Held(tree) as held:
            held.send(0, reader, url, None)  # POST-as-GET: reads what is committed
            held.send(1, writer, BASE + "/acme/new-order", new_order(1))  # writes
            held.send(2, later, url, None)  # reads after a write of its group
        answers = held.collected(3)
        assert answers[0]["status"] == 200 and body(answers[0])["status"] == "pending"
        assert answers[1]["status"] == 503 and answers[2]["status"] == 503
        filler.unlink()
        _recovered(tree)
    finally:
        tree.stop()


def test_a_crash_in_the_middle_of_a_group_keeps_nothing_of_it_and_says_so(
    held_tree: Tree,
) -> None:
    tree = held_tree
    (client,) = clients(tree, 1)
    cell = tree.registry.cell("acme")
    before = cell.restarts
    with Held(tree) as held:
        held.send(0, client, BASE + "/acme/new-order", new_order(0))
        tree.registry.tell("acme", _Crash())  # handled after the order, before any commit
    index, result = held.answers.get(timeout=WAIT_S)
    assert index == 0 and isinstance(result, outcome.Outcome)
    with pytest.raises(ActorUnavailable, match="crashed before answering"):
        result.unwrap()  # told, not left waiting
    _until(lambda: cell.restarts > before and "orders" in tree.status())
    assert tree.status()["orders"] == {}  # the order's write was rolled back
