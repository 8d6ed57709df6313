"""The small DER codec that wraps TBS + algorithm + signature."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustchain.actors import der


@given(st.binary(max_size=70_000), st.sampled_from([0x02, 0x04, 0x30, 0xA0, 0x03]))
def test_an_encoded_element_reads_back_whole(value, tag):
    encoded = der.encode_tlv(tag, value)
    item = der.read_single(encoded, tag)
    assert encoded[item.value_start : item.end] == value


@pytest.mark.parametrize(
    ("length", "header"),
    [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"), (65536, "83010000")],
)
def test_lengths_use_the_shortest_definite_form(length, header):
    assert der.encode_length(length).hex() == header


@pytest.mark.parametrize(
    "data",
    ["30", "3001", "3080", "30810100", "3082000100", "1f0100", "0401aa00", "300304"],
)
def test_non_der_or_truncated_input_is_refused(data):
    with pytest.raises(der.DerError):
        der.read_single(bytes.fromhex(data), int(data[:2], 16))


@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_der_error(data):
    try:
        outer = der.read_single(data, der.SEQUENCE)
        der.children(data, outer)
    except der.DerError:
        pass


def test_swapping_the_algorithm_re_encodes_every_enclosing_length():
    placeholder = der.sequence(der.encode_tlv(0x06, b"\x01\x02"))
    longer = der.sequence(der.encode_tlv(0x06, b"\x01\x02\x03"), der.encode_tlv(0x05, b""))
    filler = der.encode_tlv(0x04, b"x" * 120)  # pushes the outer length across 127
    tbs = der.sequence(der.encode_tlv(0x02, b"\x05"), placeholder, filler)
    swapped = der.replace_signature_algorithm(tbs, placeholder, longer)
    assert swapped == der.sequence(der.encode_tlv(0x02, b"\x05"), longer, filler)
    assert der.signature_algorithm_of(swapped) == longer


def test_swapping_refuses_a_tbs_without_the_placeholder():
    tbs = der.sequence(der.encode_tlv(0x02, b"\x05"), der.sequence(b""))
    with pytest.raises(der.DerError):
        der.replace_signature_algorithm(tbs, der.sequence(der.encode_tlv(0x06, b"\x01")), b"")


def test_signed_structure_requires_the_outer_algorithm_to_match_the_inner_one():
    algorithm = der.sequence(der.encode_tlv(0x06, b"\x01"))
    tbs = der.sequence(der.encode_tlv(0x02, b"\x05"), algorithm)
    assert der.signed(tbs, algorithm, b"sig") == der.sequence(
        tbs, algorithm, der.encode_tlv(0x03, b"\x00sig")
    )
    with pytest.raises(der.DerError):
        der.signed(tbs, der.sequence(der.encode_tlv(0x06, b"\x02")), b"sig")
