"""Building messages from untrusted JSON arguments."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import ClassVar

import pytest

from trustchain.supervisors import InvalidRequest, Message, to_jsonable


@dataclass(frozen=True)
class Sign(Message):
    type: ClassVar[str] = "sign"
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
