"""The consensus's byte formats: framing is unambiguous, separators distinct, the
request digest binds the CSR, the asset and the epoch."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustchain.actors.trust import formats

field = st.one_of(st.binary(max_size=40), st.integers(0, 2**64 - 1), st.text(max_size=20))


@given(st.lists(field, max_size=5), st.lists(field, max_size=5))
def test_different_field_lists_frame_differently(a, b) -> None:
    def kinds(fields):  # text and its UTF-8 bytes are the same field on purpose
        return [f.encode() if isinstance(f, str) else f for f in fields]

    if kinds(a) != kinds(b) and [type(x) is int for x in a] == [type(x) is int for x in b]:
        assert formats.frame(*a) != formats.frame(*b)


def test_separators_are_distinct_and_none_is_a_prefix_of_another() -> None:
    seps = formats.SEPARATORS
    assert len(set(seps)) == len(seps)
    for one in seps:
        assert one.endswith(b"\x00")
        assert not any(other != one and other.startswith(one) for other in seps)


def test_the_request_digest_binds_csr_asset_and_epoch() -> None:
    key, other = bytes(32), bytes([1]) * 32
    digest = formats.request_digest(b"csr", key, 7)
    assert len(digest) == formats.DIGEST_BYTES
    assert digest != formats.request_digest(b"csr2", key, 7)
    assert digest != formats.request_digest(b"csr", other, 7)
    assert digest != formats.request_digest(b"csr", key, 8)
    with pytest.raises(ValueError):
        formats.request_digest(b"csr", b"short", 7)


def test_a_bool_is_not_framed_as_an_integer() -> None:
    with pytest.raises(TypeError):
        formats.frame(True)
