"""trio tasks awaiting actors through the reply-to bridge."""

from __future__ import annotations

import threading

import pytest
import trio

from trustchain.supervisors import ActorCrashed, InvalidRequest, RequestTimeout, UnknownActor, ask

from .test_supervisor import Crash, Ping, Refuse, Sleep, Tree


@pytest.fixture
def tree():
    t = Tree()
    t.start([t.spec("a"), t.spec("b")])
    yield t
    t.stop()


async def test_many_concurrent_trio_tasks_get_their_own_replies(tree: Tree) -> None:
    replies: list[str] = []

    async def one(name: str) -> None:
        replies.append(await ask(tree.registry, name, Ping()))

    threads_before = set(threading.enumerate())
    async with trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(one, "ab"[i % 2])
    assert sorted(replies) == ["a"] * 100 + ["b"] * 100
    # No worker thread per request (timer threads of earlier tests may end meanwhile).
    assert set(threading.enumerate()) - threads_before == set()


async def test_typed_errors_cross_the_bridge(tree: Tree) -> None:
    with pytest.raises(InvalidRequest):
        await ask(tree.registry, "a", Refuse())
    with pytest.raises(ActorCrashed):
        await ask(tree.registry, "b", Crash())
    with pytest.raises(UnknownActor):
        await ask(tree.registry, "nobody", Ping())


async def test_a_slow_actor_hits_the_deadline_with_a_clear_error(tree: Tree) -> None:
    with pytest.raises(RequestTimeout, match=r"did not answer 'sleep' within 0\.05 s"):
        await ask(tree.registry, "a", Sleep(0.5), timeout=0.05)
