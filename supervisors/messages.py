"""Messages: small frozen dataclasses, one class per request.

Every message class names its wire ``type`` (the control socket's ``"type"``
field) and declares its arguments as dataclass fields with plain types. The
edge builds messages from untrusted JSON with :meth:`Message.from_args`, which
refuses unknown fields, missing fields and wrong types with ``InvalidRequest``
before anything reaches an actor. ``bytes`` fields travel as base64 strings.

Replies are plain values; :func:`to_jsonable` turns them into JSON values
(bytes -> base64, dataclasses -> dicts, datetimes -> RFC 3339); an object
with a ``to_json()`` method chooses its own form.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import enum
import types
import typing
from typing import Any, ClassVar, Self, Union, get_args, get_origin

from trustchain.supervisors.errors import InvalidRequest


@dataclasses.dataclass(frozen=True)
class Message:
    """Base of every request an actor accepts."""

    type: ClassVar[str] = ""

    @classmethod
    def from_args(cls, args: Any) -> Self:
        """Build the message from untrusted JSON arguments, checking every field."""
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise InvalidRequest(f"'args' for {cls.type!r} must be a JSON object")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(args) - set(fields))
        if unknown:
            raise InvalidRequest(
                f"{cls.type!r} does not take {', '.join(map(repr, unknown))}; "
                f"it takes: {', '.join(fields) or 'no arguments'}"
            )
        values: dict[str, Any] = {}
        for name, field in fields.items():
            if name not in args:
                required = (
                    field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING
                )
                if required:
                    raise InvalidRequest(f"{cls.type!r} needs argument {name!r}")
                continue
            values[name] = _coerce(args[name], hints[name], f"{cls.type}.{name}")
        return cls(**values)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except InvalidRequest as exc:
                errors.append(exc.message)
        raise InvalidRequest(errors[0] if len(errors) == 1 else f"{where}: no allowed type fits")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise InvalidRequest(f"{where} must be a list")
        (item_type, *_) = get_args(tp) or (Any,)
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InvalidRequest(f"{where} must be an object")
        return value
    if tp is Any:
        return value
    if tp is bytes:
        if not isinstance(value, str):
            raise InvalidRequest(f"{where} must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"{where} is not valid base64") from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{where} must be a number")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{where} must be an integer")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            raise InvalidRequest(f"{where} must be one of {allowed}") from None
    if isinstance(tp, type) and tp in (str, bool):
        if not isinstance(value, tp):
            raise InvalidRequest(f"{where} must be a {_type_name(tp)}")
        return value
    raise InvalidRequest(f"{where} has a type the edge cannot build ({_type_name(tp)})")


def to_jsonable(value: Any) -> Any:
    """Turn a reply value into something ``json.dumps`` accepts."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_jsonable(to_json())
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    return str(value)
