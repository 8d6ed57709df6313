"""Building messages from untrusted JSON arguments, and their wire type names."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustchain.supervisors import InvalidRequest, Message, SupervisedActor, to_jsonable
from trustchain.supervisors.messages import (
    INT64_MAX,
    INT64_MIN,
    MAX_JSON_DEPTH,
    Bounds,
    loads_json,
    wire_type,
)


@dataclass(frozen=True)
class Sign(Message):
    label: str
    data: bytes
    count: int = 1
    note: str | None = None
    names: tuple[str, ...] = ()


def test_valid_arguments_build_the_message() -> None:
    msg = Sign.from_args({"label": "k", "data": "aGk=", "count": 3, "names": ["a", "b"]})
    assert msg == Sign("k", b"hi", 3, None, ("a", "b"))


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"data": "aGk="}, "needs argument 'label'"),
        ({"label": "k", "data": "aGk=", "colour": 1}, "does not take 'colour'"),
        ({"label": 5, "data": "aGk="}, "sign.label must be a str"),
        ({"label": "k", "data": "!!"}, "sign.data is not valid base64"),
        ({"label": "k", "data": "aGk=", "count": True}, "sign.count must be an integer"),
        ({"label": "k", "data": "aGk=", "count": "3"}, "sign.count must be an integer"),
        ({"label": "k", "data": "aGk=", "names": "a"}, "sign.names must be a list"),
        ({"label": "k", "data": "aGk=", "names": [1]}, r"sign.names\[0\] must be a str"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_arguments_are_refused_with_the_field_named(args: object, error: str) -> None:
    with pytest.raises(InvalidRequest, match=error):
        Sign.from_args(args)


def test_replies_become_json_values() -> None:
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert to_jsonable({"b": b"hi", "t": when, "m": Sign("k", b"")}) == {
        "b": "aGk=",
        "t": "2026-01-02T00:00:00+00:00",
        "m": {"label": "k", "data": "", "count": 1, "note": None, "names": []},
    }


# Ranges: every argument bounded, from JSON and in-process alike -----------------------


@dataclass(frozen=True)
class Bounded(Message):
    count: int = 0
    ratio: float = 0.0
    text: str = ""
    blob: bytes = b""
    items: list[str] = ()  # type: ignore[assignment]
    size: Annotated[int, Bounds(min=0, max=100)] = 0
    label: Annotated[str, Bounds(min_length=1, max_length=8)] = "k"
    hex: Annotated[str, Bounds(pattern="[0-9a-f]{4}", what="4 hex digits")] = "abcd"
    names: Annotated[list[str], Bounds(max_length=2, items=Bounds(max_length=3))] = ()  # type: ignore[assignment]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"count": 2**63}, r"bounded.count must be an integer in -9223372036854775808\.\."),
        ({"count": -(2**63) - 1}, "bounded.count must be an integer in"),
        ({"count": 10**4000}, "a 13288-bit integer"),
        ({"text": "a" * 4097}, "bounded.text must be 0 to 4096 characters long, not 4097"),
        ({"text": "\ud800"}, "bounded.text is not valid Unicode"),
        ({"blob": "A" * 87384}, "bounded.blob must be 0 to 65536 bytes long"),
        ({"items": ["a"] * 1025}, "bounded.items must be 0 to 1024 items long"),
        ({"size": -1}, r"bounded.size must be an integer in 0\.\.100, not -1"),
        ({"size": 101}, "bounded.size must be an integer in 0..100"),
        ({"label": ""}, "bounded.label must be 1 to 8 characters long, not 0"),
        ({"hex": "xyz!"}, "bounded.hex must be 4 hex digits"),
        ({"names": ["a", "b", "c"]}, "bounded.names must be 0 to 2 items long"),
        ({"names": ["abcd"]}, r"bounded.names\[0\] must be 0 to 3 characters long"),
    ],
)
def test_arguments_out_of_range_are_refused_with_the_field_and_the_range(
    args: dict[str, object], error: str
) -> None:
    with pytest.raises(InvalidRequest, match=error):
        Bounded.from_args(args)


def test_extreme_values_at_the_edge_of_the_range_are_accepted() -> None:
    msg = Bounded.from_args({"count": INT64_MIN, "size": 100, "text": "a" * 4096})
    assert (msg.count, msg.size) == (INT64_MIN, 100)
    assert Bounded.from_args({"count": INT64_MAX}).count == INT64_MAX


def test_messages_built_in_process_are_held_to_the_same_bounds() -> None:
    for kwargs in ({"count": 2**63}, {"ratio": math.nan}, {"ratio": math.inf}, {"size": -5},
                   {"blob": b"x" * 65537}, {"names": ["toolong"]}):  # fmt: skip
        with pytest.raises(InvalidRequest):
            Bounded(**kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class WithCallback(Message):
    name: str
    callback: Callable[[int], None] | None = None


def test_a_message_json_cannot_carry_is_in_process_only() -> None:
    with pytest.raises(InvalidRequest, match="'with_callback' is in-process only"):
        WithCallback.from_args({"name": "x"})
    assert WithCallback("x", print).name == "x"


@given(st.one_of(st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=20),
                 st.none(), st.booleans(), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)))  # fmt: skip
def test_any_json_value_for_any_field_builds_the_message_or_is_invalid_request(
    value: object,
) -> None:
    for name in ("count", "ratio", "text", "blob", "items", "size", "label", "hex", "names"):
        try:
            Bounded.from_args({name: value})
        except InvalidRequest:
            pass


# Untrusted JSON text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[" * 100_000 + "]" * 100_000, "nests deeper than 32 levels"),
        ('{"a":' * 50_000 + "1" + "}" * 50_000, "nests deeper than 32 levels"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nests deeper than 32"),
        ("1" * 5_000, "Exceeds the limit"),
        ('{"id": ' + "9" * 5_000 + "}", "not valid JSON"),
        ("NaN", "NaN is not a JSON number"),
        ('{"x": -Infinity}', "-Infinity is not a JSON number"),
        ("1e400", "out of range"),
        (b"\xff\xfe", "not valid JSON"),
        ("{not json", "not valid JSON"),
    ],
)
def test_untrusted_json_that_python_would_choke_on_is_an_invalid_request(
    text: str | bytes, error: str
) -> None:
    with pytest.raises(InvalidRequest, match=error):
        loads_json(text)


def test_json_nested_up_to_the_limit_parses() -> None:
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_json(deep) == json.loads(deep)
    assert loads_json('{"a": [1, {"b": 2.5}], "c": ' + "9" * 4_000 + "}")["a"] == [1, {"b": 2.5}]


# The wire type is the class name in snake_case --------------------------------------


@pytest.mark.parametrize(
    ("class_name", "wire"),
    [
        ("GetSTH", "get_sth"),
        ("GetSTHConsistency", "get_sth_consistency"),
        ("GetCAStatus", "get_ca_status"),
        ("RefreshCRLs", "refresh_crls"),
        ("SignData", "sign_data"),
        ("IssueCertificate", "issue_certificate"),
        ("_RetryStore", "_retry_store"),
    ],
)
def test_the_wire_type_is_the_class_name_in_snake_case(class_name: str, wire: str) -> None:
    assert wire_type(class_name) == wire
    assert type(class_name, (Message,), {}).type == wire


def test_a_message_class_cannot_choose_another_wire_type() -> None:
    with pytest.raises(TypeError, match="'sign_data'"):
        type("SignData", (Message,), {"type": "sign"})


def _actors() -> dict[str, type[SupervisedActor]]:
    """Every actor class, by its name in the running tree (actors/composition.py)."""
    from trustchain.actors.ctlog import CTLogActor
    from trustchain.actors.hsm import HSMActor
    from trustchain.actors.issuer import IssuerActor
    from trustchain.actors.monitor import CTMonitorActor
    from trustchain.actors.renewal import RenewalActor
    from trustchain.supervisors.supervisor import Supervisor

    return {"root": Supervisor, "hsm": HSMActor, "ctlog": CTLogActor, "issuer": IssuerActor,
            "monitor": CTMonitorActor, "renewal": RenewalActor}  # fmt: skip


@pytest.mark.parametrize("actor", _actors().values(), ids=lambda c: c.__name__)
def test_every_message_of_every_actor_follows_the_rule(actor: type[SupervisedActor]) -> None:
    accepted = actor.message_types()
    assert accepted, f"{actor.__name__} accepts no message"
    for wire, message in accepted.items():
        assert wire == wire_type(message.__name__), message
        assert not wire.startswith("_"), "a message an actor sends itself is not on the wire"


def test_the_readme_table_names_only_messages_the_actors_accept() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    table = dict(re.findall(r"^\| `(\w+)` \| (`.*`) \|$", readme, re.M))
    for name, actor in _actors().items():
        if name != "root":  # the supervisor's messages are not in the table
            listed = set(re.findall(r"`(\w+)(?: \{[^}]*\})?`", table[name]))
            assert listed and listed <= set(actor.message_types()), name
