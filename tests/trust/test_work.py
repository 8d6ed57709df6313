"""PoWork: a solved nonce passes at its difficulty and for its digest only; every
malformed or forged proof is refused with WorkInvalid."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.actors.trust import formats
from trustchain.actors.trust.errors import TrustError, WorkInvalid
from trustchain.actors.trust.work import check_work, leading_zero_bits, solve_work

DIGEST = formats.request_digest(b"csr", bytes(32), 1)
NONCE_16 = solve_work(DIGEST, 16)  # solved once for the module: 2^16 hashes
digests = st.binary(min_size=32, max_size=32)


def spelled_out_hash(digest: bytes, nonce: int) -> bytes:
    """The work hash as formats.py's docstring spells it, written independently."""
    return hashlib.sha256(
        b"trustchain/v1/proof-of-work\x00" + digest + nonce.to_bytes(8, "big")
    ).digest()


def refused(digest: bytes, nonce: object, bits: int) -> WorkInvalid:
    with pytest.raises(WorkInvalid) as caught:
        check_work(digest, nonce, bits)  # type: ignore[arg-type]
    assert caught.value.code == "work_invalid"
    assert isinstance(caught.value, TrustError)
    return caught.value


@pytest.mark.parametrize(
    ("h", "zeros"),
    [
        (bytes(32), 256),
        (b"\x80" + bytes(31), 0),
        (b"\x01" + bytes(31), 7),
        (b"\x00\x00\x0f" + bytes(29), 20),
        (b"\x00\x7f", 9),
    ],
)
def test_leading_zero_bits_counts_from_the_most_significant_bit(h: bytes, zeros: int) -> None:
    assert leading_zero_bits(h) == zeros


@settings(max_examples=25, deadline=None)
@given(digests, st.integers(0, 12))
def test_a_solved_nonce_passes_and_its_hash_has_the_zero_bits(digest: bytes, bits: int) -> None:
    nonce = solve_work(digest, bits)
    check_work(digest, nonce, bits)
    assert leading_zero_bits(spelled_out_hash(digest, nonce)) >= bits


@settings(max_examples=25, deadline=None)
@given(digests, st.integers(1, 12))
def test_solve_work_returns_the_least_nonce(digest: bytes, bits: int) -> None:
    nonce = solve_work(digest, bits)
    assert all(leading_zero_bits(spelled_out_hash(digest, n)) < bits for n in range(nonce))


def test_a_nonce_solved_for_one_digest_is_refused_for_another() -> None:
    nonce = NONCE_16
    other = formats.request_digest(b"csr", bytes(32), 2)
    assert leading_zero_bits(spelled_out_hash(other, nonce)) < 16  # not a lucky draw
    error = refused(other, nonce, 16)
    assert error.details["required_bits"] == 16


def test_a_nonce_short_of_the_difficulty_is_refused_and_says_by_how_much() -> None:
    nonce = solve_work(DIGEST, 8)
    zeros = leading_zero_bits(spelled_out_hash(DIGEST, nonce))
    check_work(DIGEST, nonce, zeros)
    error = refused(DIGEST, nonce, zeros + 1)
    assert error.details == {"zero_bits": zeros, "required_bits": zeros + 1}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 63))
def test_a_bit_flip_in_the_nonce_is_refused(bit: int) -> None:
    forged = NONCE_16 ^ (1 << bit)
    if leading_zero_bits(spelled_out_hash(DIGEST, forged)) < 16:  # 2^-16 it still holds
        refused(DIGEST, forged, 16)


@pytest.mark.parametrize("nonce", [-1, 2**64, 2**70, True, 1.0, "7", None])
def test_a_nonce_outside_eight_octets_or_not_an_integer_is_refused(nonce: object) -> None:
    refused(DIGEST, nonce, 0)  # 0 bits: only the nonce's form can fail


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_a_digest_of_the_wrong_length_is_refused(length: int) -> None:
    error = refused(bytes(length), 0, 0)
    assert error.details["digest_octets"] == length


@pytest.mark.parametrize("bits", [-1, 257])
def test_a_difficulty_outside_the_hash_is_the_callers_error(bits: int) -> None:
    with pytest.raises(ValueError):
        check_work(DIGEST, 0, bits)
    with pytest.raises(ValueError):
        solve_work(DIGEST, bits)


def test_solve_work_wants_a_request_digest() -> None:
    with pytest.raises(ValueError):
        solve_work(b"short", 1)
