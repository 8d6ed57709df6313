"""Strict reading of untrusted JSON for the consensus's records (stakes, space proofs,
votes, decisions): exact field sets, bounded unsigned integers, lower-case hex of a
known length, bounded arrays. Each function raises the caller's typed error, and no
message ever ``repr``s a value (a huge integer has none)."""

from __future__ import annotations

import re
from typing import Any

from .errors import TrustError

_HEX = re.compile(r"(?:[0-9a-f]{2})*")


def fields(
    obj: object, what: str, names: tuple[str, ...], error: type[TrustError]
) -> dict[str, Any]:
    """``obj`` as a JSON object with exactly the fields ``names``."""
    if not isinstance(obj, dict):
        raise error(f"{what} is a JSON object, not {type(obj).__name__}")
    if set(obj) != set(names):
        got = ", ".join(sorted(k if isinstance(k, str) else type(k).__name__ for k in obj))
        raise error(f"{what} has exactly the fields {', '.join(names)}; got {got:.200}")
    return obj


def uint(value: object, what: str, low: int, high: int, error: type[TrustError]) -> int:
    """An integer (not a bool) from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{what} is an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise error(f"{what} is an integer from {low} to {high}")
    return value


def hex_bytes(
    value: object, what: str, length: int, error: type[TrustError], *, exact: bool = True
) -> bytes:
    """Lower-case hex of ``length`` octets (of 1 to ``length`` unless ``exact``)."""
    if not isinstance(value, str) or len(value) > 2 * length or not _HEX.fullmatch(value):
        raise error(f"{what} is lower-case hex of at most {length} octets")
    data = bytes.fromhex(value)
    if exact and len(data) != length:
        raise error(f"{what} is {length} octets, not {len(data)}")
    if not data:
        raise error(f"{what} is not empty")
    return data


def array(value: object, what: str, limit: int, error: type[TrustError]) -> list[Any]:
    """A JSON array of at most ``limit`` items."""
    if not isinstance(value, list) or len(value) > limit:
        raise error(f"{what} is a JSON array of at most {limit} items")
    return value
