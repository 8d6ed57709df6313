"""Messages: small frozen dataclasses, one class per request.

A message class is named for what is asked (``IssueCertificate``,
``GetLogInfo``, ``SignData``) and its wire ``type`` (the control socket's
``"type"`` field) is that name in snake_case, computed once here and never
written by hand (:func:`wire_type`: ``GetSTH`` -> ``get_sth``,
``RefreshCRLs`` -> ``refresh_crls``, ``_RetryStore`` -> ``_retry_store``; a
leading underscore marks a message the actor sends itself, never accepted from
the socket). Arguments are dataclass fields with plain types. The
edge builds messages from untrusted JSON with :meth:`Message.from_args`, which
refuses unknown fields, missing fields and wrong types with ``InvalidRequest``
before anything reaches an actor. ``bytes`` fields travel as base64 strings.
A message with a field JSON cannot carry (a callable, a ``Failure``) is
in-process only: ``from_args`` refuses it whatever the arguments.

Ranges, the second half of "no client input crashes an actor": every
argument is bounded, by default (ints fit a signed 64-bit integer, floats are
finite, a str is valid Unicode of at most ``MAX_TEXT`` characters, bytes at
most ``MAX_BYTES``, a list at most ``MAX_ITEMS`` items) or by the field's
annotation (``label: Annotated[str, Bounds(min_length=1, max_length=128)]``).
The bounds are checked in ``__post_init__``, so a message built
in-process is held to them exactly as one built from JSON; a value out of
range is an ``InvalidRequest`` that names the field and what it may be.
:func:`loads_json` parses untrusted JSON text for the edges: invalid JSON,
nesting deeper than ``MAX_JSON_DEPTH``, NaN/Infinity and integers past
Python's digit limit are ``InvalidRequest`` too, never another exception.

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
import functools
import json
import math
import re
import types
import typing
from collections.abc import Iterator
from typing import Annotated, Any, ClassVar, Self, Union, get_args, get_origin

from trustchain.supervisors.errors import InvalidRequest

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what every int argument must fit
MAX_TEXT = 4_096  # characters of a str argument, unless its field says otherwise
MAX_BYTES = 65_536  # octets of a bytes argument (decoded), unless its field says otherwise
MAX_ITEMS = 1_024  # items of a list argument, unless its field says otherwise
MAX_JSON_DEPTH = 32  # arrays and objects nested in one request (a request uses 3 or 4)


@dataclasses.dataclass(frozen=True)
class Bounds:
    """What one argument may be beyond its type: ``Annotated[int, Bounds(min=0)]``."""

    min: int | float | None = None
    max: int | float | None = None
    min_length: int = 0  # characters, octets or items
    max_length: int | None = None  # None: MAX_TEXT, MAX_BYTES or MAX_ITEMS by type
    pattern: str | None = None  # a str must match it whole
    what: str = ""  # says what ``pattern`` means, for the error message
    items: Bounds | None = None  # each item of a list (default bounds if None)


_DEFAULT = Bounds()


# A word boundary: lower or digit then upper (``GetSTH``), or the last capital of
# an acronym that starts a word (``CAStatus``), unless what follows it is a
# plural "s" (``CRLs``).
_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])(?!.s(?:[A-Z_]|$))")


def wire_type(class_name: str) -> str:
    """The wire type of a message class: its name in snake_case, underscore kept."""
    private = class_name.startswith("_")
    words = _WORD_BOUNDARY.sub("_", class_name.lstrip("_")).lower()
    return "_" + words if private else words


@dataclasses.dataclass(frozen=True)
class Message:
    """Base of every request an actor accepts."""

    type: ClassVar[str] = ""  # wire_type(class name), set for each subclass
    # A read that changes nothing: the actor answers it ahead of the messages already
    # queued (the inbox has a lane for queries), so a busy actor's state can be read in
    # the time of one message, not of its whole queue. A query sent after a write it
    # depends on must wait for that write's answer first (every client here does).
    query: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in vars(cls):
            raise TypeError(
                f"{cls.__name__} sets 'type'; the wire type is the class name "
                f"in snake_case ({wire_type(cls.__name__)!r}): rename the class instead"
            )
        cls.type = wire_type(cls.__name__)

    def __post_init__(self) -> None:
        where = self.type or type(self).__name__
        for name, bounds in _bounds_of(type(self)):
            check_bounds(getattr(self, name), bounds, f"{where}.{name}")

    @classmethod
    def from_args(cls, args: Any) -> Self:
        """Build the message from untrusted JSON arguments, checking every field."""
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise InvalidRequest(f"'args' for {cls.type!r} must be a JSON object")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        carried = [name for name in fields if not _json_can_carry(hints[name])]
        if carried:
            raise InvalidRequest(
                f"{cls.type!r} is in-process only: JSON cannot carry its {', '.join(carried)}"
            )
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
        return cls(**values)  # __post_init__ checks the bounds


_BOUNDS: dict[type, tuple[tuple[str, Bounds], ...]] = {}


def _bounds_of(cls: type) -> tuple[tuple[str, Bounds], ...]:
    """Each field's ``Bounds`` from its ``Annotated`` type, else the defaults."""
    bounds = _BOUNDS.get(cls)
    if bounds is None:  # once per class (a race only computes it twice)
        try:
            hints = typing.get_type_hints(cls, include_extras=True)
        except (NameError, TypeError):  # an annotation only a type checker can resolve
            hints = {}
        bounds = _BOUNDS[cls] = tuple(
            (f.name, _annotated_bounds(hints.get(f.name)))
            for f in dataclasses.fields(cls)
            if f.init
        )
    return bounds


def _annotated_bounds(hint: Any) -> Bounds:
    if get_origin(hint) is Annotated:
        return next((m for m in hint.__metadata__ if isinstance(m, Bounds)), _DEFAULT)
    return _DEFAULT


def _describe(value: Any) -> str:
    """A value for an error message: never huge, never a conversion that can fail."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(value)} long)"


def check_bounds(value: Any, bounds: Bounds, where: str) -> None:
    """``InvalidRequest`` unless ``value`` is within ``bounds`` (and the defaults).

    Types are not checked here (``from_args`` and mypy do that): a value of a
    type without bounds (a bool, an enum, a callable) passes.
    """
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        low = INT64_MIN if bounds.min is None else max(INT64_MIN, bounds.min)
        high = INT64_MAX if bounds.max is None else min(INT64_MAX, bounds.max)
        if not low <= value <= high:
            raise InvalidRequest(
                f"{where} must be an integer in {low}..{high}, not {_describe(value)}"
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest(f"{where} must be a finite number, not {value}")
        if (bounds.min is not None and value < bounds.min) or (
            bounds.max is not None and value > bounds.max
        ):
            raise InvalidRequest(f"{where} must be in {bounds.min}..{bounds.max}, not {value}")
    elif isinstance(value, str):
        _check_length(len(value), bounds, MAX_TEXT, "characters", where)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequest(f"{where} is not valid Unicode (a lone surrogate)") from None
        if bounds.pattern is not None and not re.fullmatch(bounds.pattern, value):
            what = bounds.what or f"text matching {bounds.pattern!r}"
            raise InvalidRequest(f"{where} must be {what}, not {_describe(value)}")
    elif isinstance(value, bytes | bytearray | memoryview):
        _check_length(len(value), bounds, MAX_BYTES, "bytes", where)
    elif isinstance(value, list | tuple):
        _check_length(len(value), bounds, MAX_ITEMS, "items", where)
        items = bounds.items or _DEFAULT
        for i, item in enumerate(value):
            check_bounds(item, items, f"{where}[{i}]")


def _check_length(length: int, bounds: Bounds, default: int, unit: str, where: str) -> None:
    longest = default if bounds.max_length is None else bounds.max_length
    if not bounds.min_length <= length <= longest:
        raise InvalidRequest(
            f"{where} must be {bounds.min_length} to {longest} {unit} long, not {length}"
        )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


@functools.cache
def _json_can_carry(tp: Any) -> bool:
    """Can ``_coerce`` build every value of ``tp`` (or, for a union, every option)?"""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return all(o is type(None) or _json_can_carry(o) for o in get_args(tp))
    if origin in (list, tuple):
        return all(a is Ellipsis or _json_can_carry(a) for a in get_args(tp))
    if origin is dict or tp in (dict, Any, bytes, float, int, str, bool):
        return True
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


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
        return decode_base64(value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest(f"{where} must be a number")
        try:
            return float(value)
        except OverflowError:
            raise InvalidRequest(f"{where} must be a finite number") from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidRequest(f"{where} must be an integer")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except (ValueError, TypeError):
            allowed = ", ".join(repr(m.value) for m in tp)
            raise InvalidRequest(f"{where} must be one of {allowed}") from None
    if isinstance(tp, type) and tp in (str, bool):
        if not isinstance(value, tp):
            raise InvalidRequest(f"{where} must be a {_type_name(tp)}")
        return value
    raise InvalidRequest(f"{where} has a type the edge cannot build ({_type_name(tp)})")


# Untrusted JSON text ------------------------------------------------------------------


class _Refused(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is out of range")
    return value


def loads_json(data: bytes | str, what: str = "the request") -> Any:
    """Parse untrusted JSON; every way it can be bad is an ``InvalidRequest``."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _Refused as exc:
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest(f"{what} nests deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and int digit limit
        raise InvalidRequest(f"{what} is not valid JSON: {exc}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"{what} nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed JSON value (without recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterator[Any] | None = None
        if isinstance(item, dict):
            children = iter(item.values())
        elif isinstance(item, list):
            children = iter(item)
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


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


def decode_base64(value: Any, where: str) -> bytes:
    """Strict base64 from untrusted input (the control socket's and HTTP's ``bytes``)."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where} is not valid base64") from None
