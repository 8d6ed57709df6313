"""An actor's mailbox has a lane for queries (``Message.query``: reads that change
nothing): they are answered before the messages queued ahead of them, each lane in
order, so a busy actor's state can be read without waiting for its whole queue."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import outcome
import pytest

from trustchain.supervisors import (
    ChildSpec,
    Message,
    Registry,
    SupervisedActor,
    handles,
    start_root,
)

GATE = threading.Event()  # the test holds the actor in its first message until it is set
INSIDE = threading.Event()  # the actor is in its first message


@dataclass(frozen=True)
class Work(Message):
    n: int


@dataclass(frozen=True)
class Read(Message):
    n: int
    query = True


class Busy(SupervisedActor):
    def setup(self) -> None:
        self.done: list[int] = []

    @handles(Work)
    def work(self, msg: Work) -> int:
        INSIDE.set()
        GATE.wait(10)
        self.done.append(msg.n)
        return msg.n

    @handles(Read)
    def read(self, msg: Read) -> list[int]:
        return list(self.done)  # what the writes answered so far


@pytest.fixture
def registry() -> Iterator[Registry]:
    GATE.clear()
    INSIDE.clear()
    registry = Registry()
    root = start_root(registry, "root", [ChildSpec("busy", Busy.start)])
    yield registry
    GATE.set()
    root.stop(block=True, timeout=10)


def test_a_query_overtakes_the_queue_and_queries_keep_their_order(registry: Registry) -> None:
    order: list[tuple[str, Any]] = []  # replies run on the actor's thread, in its order
    all_in = threading.Event()

    def keep(name: str) -> Callable[[outcome.Outcome], None]:
        def reply(result: outcome.Outcome) -> None:
            order.append((name, result.unwrap()))
            if len(order) == 6:
                all_in.set()

        return reply

    registry.tell("busy", Work(0), keep("work 0"))
    assert INSIDE.wait(10)  # the actor is held in it: what comes now waits in its mailbox
    for i in (1, 2):
        registry.tell("busy", Work(i), keep(f"work {i}"))
    registry.tell("busy", Read(1), keep("read 1"))
    registry.tell("busy", Read(2), keep("read 2"))
    registry.tell("busy", Work(3), keep("work 3"))
    GATE.set()
    assert all_in.wait(10)
    assert [name for name, _ in order] == [
        "work 0", "read 1", "read 2", "work 1", "work 2", "work 3"
    ]  # fmt: skip
    assert dict(order)["read 1"] == [0]  # it saw the write before it, not those it overtook


def test_messages_are_not_queries_unless_they_say_so() -> None:
    assert not Work.query and Read.query and not Message.query
