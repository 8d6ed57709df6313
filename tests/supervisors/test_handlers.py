"""Which messages an actor class handles: ``@handles`` on its methods, its bases' and
its parts' (mixins), a subclass's handler replacing its base's."""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.supervisors import Message, SupervisedActor, handles


@dataclass(frozen=True)
class Ping(Message):
    pass


@dataclass(frozen=True)
class Pong(Message):
    pass


@dataclass(frozen=True)
class Peek(Message):
    pass


class Pings(SupervisedActor):
    @handles(Ping)
    def ping(self, msg: Ping) -> str:
        return "ping"


class Pongs(SupervisedActor):
    @handles(Pong)
    def pong(self, msg: Pong) -> str:
        return "pong"


class Both(Pings, Pongs):
    @handles(Peek)
    def peek(self, msg: Peek) -> str:
        return "peek"


class Louder(Both):
    @handles(Ping)
    def shout(self, msg: Ping) -> str:
        return "PING"


def test_an_actor_made_of_parts_handles_every_parts_messages() -> None:
    assert Both._handlers == {Ping: "ping", Pong: "pong", Peek: "peek"}
    assert set(Both.message_types()) == {"ping", "pong", "peek"}


def test_a_subclass_handler_replaces_its_bases() -> None:
    assert Louder._handlers[Ping] == "shout"
    assert Louder._handlers[Pong] == "pong"
    assert Pings._handlers == {Ping: "ping"}  # bases are not changed by their subclasses
