"""An actor publishes a value that other threads read without a message (``publish``,
``Registry.published``): replaced whole, readable while the incarnation runs, gone
when it goes down (the next incarnation publishes its own)."""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.supervisors import (
    ChildSpec,
    Message,
    Registry,
    SupervisedActor,
    handles,
    start_root,
)

from ..conftest import wait_until


@dataclass(frozen=True)
class Set(Message):
    value: str


@dataclass(frozen=True)
class Crash(Message):
    pass


class Publisher(SupervisedActor):
    def setup(self) -> None:
        self.publish(("first", self.context.incarnation))

    @handles(Set)
    def set(self, msg: Set) -> None:
        self.publish((msg.value, self.context.incarnation))

    @handles(Crash)
    def crash(self, msg: Crash) -> None:
        raise RuntimeError("boom")


def test_published_values_are_read_without_a_message_and_go_with_the_incarnation() -> None:
    registry = Registry()
    assert registry.published("pub") is None  # no such actor (yet)
    root = start_root(registry, "root", [ChildSpec("pub", Publisher.start)])
    try:
        assert registry.published("pub") == ("first", 1)
        registry.ask("pub", Set("second"))
        assert registry.published("pub") == ("second", 1)
        handled = registry.lookup("pub").handled
        for _ in range(3):
            assert registry.published("pub") == ("second", 1)
        assert registry.lookup("pub").handled == handled  # reading sent nothing
        registry.tell("pub", Crash())  # going down unpublishes; the restart publishes anew
        wait_until(lambda: registry.published("pub") == ("first", 2), "the restart's value")
    finally:
        root.stop(block=True, timeout=10)
    assert registry.published("pub") is None  # stopped: nothing published
