"""DNS name syntax, and internationalised names checked as IDNA2008 (the ``idna`` package)."""

from __future__ import annotations

import idna
import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from trustchain.actors.ca import InvalidName, IssuancePolicy, check_request, parse_csr
from trustchain.actors.ca.names import normalize_dns_name

ZONE = "trust.example.com"


@pytest.fixture
def policy() -> IssuancePolicy:
    return IssuancePolicy(permitted_zones=(ZONE,))


def test_an_a_label_of_disallowed_code_points_is_refused_naming_the_label(kit, policy) -> None:
    # U+2A1C U+298C: DISALLOWED in IDNA2008, though the Punycode round-trips (it was issued)
    name = f"xn--zz-zzzzz.{ZONE}"
    csr = parse_csr(kit.dns_csr(kit.key("ec-p256"), name))
    with pytest.raises(InvalidName) as error:
        check_request(csr, policy)
    assert error.value.code == "invalid_name"
    assert error.value.details["label"] == "xn--zz-zzzzz"
    assert "'xn--zz-zzzzz' is not a valid IDNA2008 A-label" in error.value.message
    assert "U+2A1C" in error.value.message


def test_a_valid_idn_a_label_is_issued(kit, policy) -> None:
    name = f"xn--bcher-kva.{ZONE}"
    approved = check_request(parse_csr(kit.dns_csr(kit.key("ec-p256"), name)), policy)
    assert approved.dns_names == (name,)


@pytest.mark.parametrize(
    ("label", "why"),
    [
        ("xn--ls8h", "not a valid IDNA2008 A-label"),  # U+1F4A9: symbols are DISALLOWED
        ("xn--a", "not a valid IDNA2008 A-label"),  # decodes to U+0080, a control
        ("xn--abc-", "not letters, digits and inner hyphens"),
        ("xn--ab-", "not letters, digits and inner hyphens"),
        ("xn--", "not letters, digits and inner hyphens"),
        ("xn--abc-9ja", "not a valid IDNA2008 A-label"),  # decodes to "ab", U+00D7, "c": DISALLOWED
        ("ab--cd", "reserved"),
    ],
)
def test_labels_that_are_not_idna2008_a_labels_are_refused(label: str, why: str) -> None:
    with pytest.raises(InvalidName, match=why):
        normalize_dns_name(f"{label}.{ZONE}")


def test_a_labels_are_compared_lower_case() -> None:
    assert normalize_dns_name(f"XN--BCHER-KVA.{ZONE}") == f"xn--bcher-kva.{ZONE}"


def test_u_labels_are_refused_with_the_a_label_to_ask_for(policy) -> None:
    # A SAN dNSName holds A-labels (RFC 5280 §7.2): a CA does not re-spell a name for you.
    with pytest.raises(InvalidName, match=f"ask for 'xn--bcher-kva.{ZONE}'"):
        normalize_dns_name(f"Bücher.{ZONE}")
    with pytest.raises(InvalidName, match=f"ask for '\\*.xn--bcher-kva.{ZONE}'"):
        normalize_dns_name(f"*.bücher.{ZONE}")
    with pytest.raises(InvalidName, match="non-ASCII"):
        normalize_dns_name(f"\U0001f4a9.{ZONE}")  # no A-label exists: refused, no hint


@given(st.text(st.characters(codec="utf-8", categories=["Ll", "Lo", "Nd"]), min_size=1,
               max_size=12))  # fmt: skip
def test_every_label_idna_encodes_is_accepted_and_nothing_else_passes_as_xn(text: str) -> None:
    try:
        a_label = idna.alabel(text).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return  # not a valid U-label: nothing to ask for
    if a_label.startswith("xn--"):
        assert normalize_dns_name(f"{a_label}.{ZONE}") == f"{a_label}.{ZONE}"


@given(st.from_regex(r"\Axn--[a-z0-9-]{1,20}\Z"))
def test_any_xn_label_is_accepted_only_if_it_round_trips_through_idna(label: str) -> None:
    try:
        valid = idna.alabel(idna.ulabel(label)).decode("ascii") == label
    except (idna.IDNAError, UnicodeError):
        valid = False
    try:
        normalize_dns_name(f"{label}.{ZONE}")
    except InvalidName:
        assert not valid
    else:
        assert valid


def test_a_san_cannot_even_carry_a_u_label() -> None:
    with pytest.raises(ValueError):
        x509.DNSName(f"bücher.{ZONE}")  # so a U-label only ever arrives as a subject CN
