"""Minimal TLS presentation-language codec (RFC 8446 §3, as used by RFC 6962).

Big-endian fixed-width integers and length-prefixed opaque vectors. The reader
is strict: every read checks bounds and ``finish`` rejects trailing bytes, so a
decoder built on it accepts exactly one encoding per value.
"""

from __future__ import annotations

from .errors import MalformedStructure


def uint(value: int, width: int) -> bytes:
    if value < 0 or value >= 1 << (8 * width):
        raise MalformedStructure(f"value {value} does not fit in {width} bytes")
    return value.to_bytes(width, "big")


def opaque(data: bytes, length_width: int, minimum: int = 0) -> bytes:
    """An opaque vector ``<minimum..2^(8*length_width)-1>``."""
    if len(data) < minimum:
        raise MalformedStructure(f"vector of {len(data)} bytes is shorter than {minimum}")
    return uint(len(data), length_width) + data


class Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self._data = data
        self._pos = pos

    @property
    def pos(self) -> int:
        return self._pos

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def fixed(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise MalformedStructure(f"truncated: wanted {n} bytes at offset {self._pos}")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def uint(self, width: int) -> int:
        return int.from_bytes(self.fixed(width), "big")

    def opaque(self, length_width: int, minimum: int = 0) -> bytes:
        n = self.uint(length_width)
        if n < minimum:
            raise MalformedStructure(f"vector of {n} bytes is shorter than {minimum}")
        return self.fixed(n)

    def finish(self) -> None:
        if not self.at_end():
            raise MalformedStructure(f"{len(self._data) - self._pos} trailing bytes")
