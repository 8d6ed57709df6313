"""The TrustChain zone (sans-IO): each rule of the issue's authoritative part -- AAAA
only (A and other types NODATA), NXDOMAIN and NODATA with the SOA, TTLs, names in any
case, CNAMEs, SOA and NS at the apex -- and the assets: left out when quarantined or
below the minimum trust, the rest ordered by score."""

from __future__ import annotations

import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.actors.resolver.zone import AssetRecord, Zone, ZoneError, parse_asset_records

ORIGIN = "trust.example.com"
RECORDS = {
    "hypermesh": ["2001:db8::10", "2001:db8::11"],
    "caesar": ["2001:db8::20"],
    "deep.sub": ["2001:db8::30"],
    "@": ["2001:db8::1"],
}
CNAMES = {"www": "hypermesh", "alias": "www", "away": "example.net.", "dangling": "nowhere"}


def zone(**kwargs: object) -> Zone:
    args: dict = {
        "cnames": CNAMES,
        "nameserver": "dns.trust.example.com.",
        "nameserver_address": "::1",
        "serial": 7,
        **kwargs,
    }
    return Zone(ORIGIN, 300, RECORDS, **args)


def ask(z: Zone, name: str, rdtype: str = "AAAA"):  # type: ignore[no-untyped-def]
    return z.lookup(dns.name.from_text(name), dns.rdatatype.from_text(rdtype))


def texts(rrsets) -> list[str]:  # type: ignore[no-untyped-def]
    return [line for r in rrsets for line in r.to_text(want_shuffle=False).splitlines()]


def test_a_configured_name_answers_its_addresses_with_the_zone_ttl() -> None:
    found = ask(zone(), "hypermesh.trust.example.com.")
    assert found.rcode == dns.rcode.NOERROR
    assert texts(found.answer) == [
        "hypermesh.trust.example.com. 300 IN AAAA 2001:db8::10",
        "hypermesh.trust.example.com. 300 IN AAAA 2001:db8::11",
    ]
    assert found.authority == ()


def test_ttl_comes_from_config() -> None:
    z = Zone(ORIGIN, 42, RECORDS)
    found = ask(z, "caesar.trust.example.com.")
    assert [r.ttl for r in found.answer] == [42]
    assert ask(z, "nope.trust.example.com.").authority[0].ttl == 42


@pytest.mark.parametrize("rdtype", ["A", "MX", "TXT", "HTTPS", "CAA", "TYPE65000"])
def test_other_types_get_nodata_with_the_soa_never_an_address(rdtype: str) -> None:
    found = ask(zone(), "hypermesh.trust.example.com.", rdtype)
    assert found.rcode == dns.rcode.NOERROR
    assert found.answer == ()
    assert [r.rdtype for r in found.authority] == [dns.rdatatype.SOA]


def test_a_missing_name_is_nxdomain_with_the_soa() -> None:
    found = ask(zone(), "nope.trust.example.com.")
    assert found.rcode == dns.rcode.NXDOMAIN
    assert found.answer == ()
    soa = found.authority[0]
    assert soa.name == dns.name.from_text(ORIGIN + ".")
    assert next(iter(soa)).minimum == 300  # the negative-caching TTL (RFC 2308)


def test_an_empty_non_terminal_exists_nodata_not_nxdomain() -> None:
    found = ask(zone(), "sub.trust.example.com.")  # only deep.sub has records
    assert found.rcode == dns.rcode.NOERROR and found.answer == ()
    assert ask(zone(), "other.sub.trust.example.com.").rcode == dns.rcode.NXDOMAIN


def test_names_are_case_insensitive_and_the_answer_uses_the_askers_spelling() -> None:
    found = ask(zone(), "HyperMESH.Trust.EXAMPLE.com.")
    assert found.rcode == dns.rcode.NOERROR
    assert found.answer[0].name.to_text() == "HyperMESH.Trust.EXAMPLE.com."
    assert len(found.answer[0]) == 2


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.booleans(),
        min_size=len("caesar.trust.example.com"),
        max_size=len("caesar.trust.example.com"),
    )
)
def test_any_case_mix_gets_the_same_answer(upper: list[bool]) -> None:
    name = "".join(
        c.upper() if u else c for c, u in zip("caesar.trust.example.com", upper, strict=True)
    )
    found = ask(zone(), name + ".")
    assert texts(found.answer)[0].lower() == "caesar.trust.example.com. 300 in aaaa 2001:db8::20"


def test_soa_and_ns_at_the_apex() -> None:
    z = zone()
    soa = ask(z, ORIGIN + ".", "SOA")
    assert texts(soa.answer) == [
        "trust.example.com. 300 IN SOA dns.trust.example.com. hostmaster.trust.example.com. "
        "7 3600 600 604800 300"
    ]
    assert texts(ask(z, ORIGIN + ".", "NS").answer) == [
        "trust.example.com. 300 IN NS dns.trust.example.com."
    ]
    assert texts(ask(z, ORIGIN + ".").answer) == ["trust.example.com. 300 IN AAAA 2001:db8::1"]
    # the NS has an address (the server's) since the config gives it none
    assert texts(ask(z, "dns.trust.example.com.").answer) == [
        "dns.trust.example.com. 300 IN AAAA ::1"
    ]
    assert ask(z, "caesar.trust.example.com.", "SOA").rcode == dns.rcode.NOERROR
    assert ask(z, "caesar.trust.example.com.", "SOA").answer == ()


def test_the_nameserver_keeps_its_configured_address() -> None:
    z = Zone(
        ORIGIN,
        300,
        {"dns": ["2001:db8::53"]},
        nameserver="dns.trust.example.com.",
        nameserver_address="::1",
    )
    assert texts(ask(z, "dns.trust.example.com.").answer) == [
        "dns.trust.example.com. 300 IN AAAA 2001:db8::53"
    ]


def test_cnames_are_followed_inside_the_zone() -> None:
    found = ask(zone(), "alias.trust.example.com.")
    assert texts(found.answer) == [
        "alias.trust.example.com. 300 IN CNAME www.trust.example.com.",
        "www.trust.example.com. 300 IN CNAME hypermesh.trust.example.com.",
        "hypermesh.trust.example.com. 300 IN AAAA 2001:db8::10",
        "hypermesh.trust.example.com. 300 IN AAAA 2001:db8::11",
    ]
    assert found.rcode == dns.rcode.NOERROR


def test_a_cname_query_gets_the_cname_alone() -> None:
    found = ask(zone(), "www.trust.example.com.", "CNAME")
    assert texts(found.answer) == [
        "www.trust.example.com. 300 IN CNAME hypermesh.trust.example.com."
    ]


def test_a_cname_out_of_the_zone_ends_the_chain_naming_the_target_to_chase() -> None:
    found = ask(zone(), "away.trust.example.com.")
    assert texts(found.answer) == ["away.trust.example.com. 300 IN CNAME example.net."]
    assert found.rcode == dns.rcode.NOERROR and found.authority == ()
    assert found.target == dns.name.from_text("example.net.")
    assert ask(zone(), "hypermesh.trust.example.com.").target is None


def test_a_cname_to_a_missing_name_is_nxdomain_with_the_chain() -> None:
    found = ask(zone(), "dangling.trust.example.com.")
    assert found.rcode == dns.rcode.NXDOMAIN  # RFC 6604: the rcode is the last name's
    assert texts(found.answer) == [
        "dangling.trust.example.com. 300 IN CNAME nowhere.trust.example.com."
    ]
    assert [r.rdtype for r in found.authority] == [dns.rdatatype.SOA]


def test_a_cname_chain_ending_without_the_type_is_nodata_with_the_chain() -> None:
    found = ask(zone(), "www.trust.example.com.", "A")
    assert found.rcode == dns.rcode.NOERROR
    assert texts(found.answer) == [
        "www.trust.example.com. 300 IN CNAME hypermesh.trust.example.com."
    ]
    assert [r.rdtype for r in found.authority] == [dns.rdatatype.SOA]


def test_names_outside_the_zone_are_not_the_zones() -> None:
    z = zone()
    assert ask(z, "example.com.") is None
    assert ask(z, "trust.example.org.") is None
    assert ask(z, "xtrust.example.com.") is None


def test_any_gets_every_rrset_at_the_name() -> None:
    found = ask(zone(), ORIGIN + ".", "ANY")
    assert {r.rdtype for r in found.answer} == {
        dns.rdatatype.SOA,
        dns.rdatatype.NS,
        dns.rdatatype.AAAA,
    }


@pytest.mark.parametrize(
    ("records", "cnames", "why"),
    [
        ({"a": ["192.0.2.1"]}, {}, "IPv4"),
        ({"a": ["::ffff:192.0.2.1"]}, {}, "IPv4-mapped"),
        ({"a": ["not-an-address"]}, {}, "not an IP"),
        ({"a.": ["2001:db8::1"]}, {}, "relative"),
        ({"a": ["2001:db8::1"]}, {"a": "b"}, "CNAME stands alone"),
        ({}, {"@": "elsewhere.example."}, "origin"),
        ({}, {"a": "b", "b": "a"}, "loops"),
        ({"bad..name": ["2001:db8::1"]}, {}, "not a valid name"),
    ],
)
def test_a_config_that_cannot_be_served_is_refused(records, cnames, why) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ZoneError, match=why):
        Zone(ORIGIN, 300, records, cnames)


def test_text_form_lists_every_record_once_soa_first() -> None:
    lines = zone().to_text()
    assert lines[0].startswith("trust.example.com. 300 IN SOA ")
    assert "hypermesh.trust.example.com. 300 IN AAAA 2001:db8::11" in lines
    assert "www.trust.example.com. 300 IN CNAME hypermesh.trust.example.com." in lines
    assert len(lines) == len(set(lines))


# Assets --------------------------------------------------------------------------------


def asset(
    n: int, name: str, addresses: list[str], score: float, quarantined: bool = False
) -> AssetRecord:
    return AssetRecord(f"{n:064x}", name, tuple(addresses), score, quarantined)


def test_assets_are_served_under_the_assets_label_ordered_by_score() -> None:
    z = zone(
        min_asset_trust=0.5,
        assets=[
            asset(1, "web", ["2001:db8:1::1"], 0.6),
            asset(2, "web", ["2001:db8:1::2"], 0.95),
            asset(3, "web", ["2001:db8:1::3"], 0.8),
        ],
    )
    found = ask(z, "web.assets.trust.example.com.")
    assert [r.address for r in found.answer[0]] == [
        "2001:db8:1::2",
        "2001:db8:1::3",
        "2001:db8:1::1",
    ]


def test_quarantined_and_low_trust_assets_are_left_out() -> None:
    z = zone(
        min_asset_trust=0.5,
        assets=[
            asset(1, "web", ["2001:db8:1::1"], 0.9, quarantined=True),
            asset(2, "web", ["2001:db8:1::2"], 0.49),
            asset(3, "web", ["2001:db8:1::3"], 0.5),
            asset(4, "bad", ["2001:db8:1::4"], 0.99, quarantined=True),
        ],
    )
    found = ask(z, "web.assets.trust.example.com.")
    assert [r.address for r in found.answer[0]] == ["2001:db8:1::3"]
    gone = ask(z, "bad.assets.trust.example.com.")
    assert gone.rcode == dns.rcode.NOERROR and gone.answer == ()  # the name stays: NODATA
    assert set(z.left_out) == {f"{1:064x}", f"{2:064x}", f"{4:064x}"}


def test_unusable_asset_records_are_skipped_never_an_error() -> None:
    z = zone(
        assets=[
            asset(1, "v4", ["192.0.2.7"], 0.9),
            asset(2, "bad..name", ["2001:db8::7"], 0.9),
            asset(3, "absolute.example.", ["2001:db8::7"], 0.9),
            asset(4, "ok", ["2001:db8::8"], 0.9),
        ]
    )
    assert len(z.skipped) == 3
    assert ask(z, "v4.assets.trust.example.com.").rcode == dns.rcode.NXDOMAIN
    assert texts(ask(z, "ok.assets.trust.example.com.").answer) == [
        "ok.assets.trust.example.com. 300 IN AAAA 2001:db8::8"
    ]


def test_an_asset_cannot_take_a_configured_cname() -> None:
    z = Zone(
        ORIGIN, 300, {}, {"x.assets": "hypermesh"}, assets=[asset(1, "x", ["2001:db8::9"], 1.0)]
    )
    assert z.skipped and "taken" in z.skipped[0]
    assert ask(z, "x.assets.trust.example.com.").answer[0].rdtype == dns.rdatatype.CNAME


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=12), st.floats(0, 1)
)
def test_served_addresses_are_exactly_the_trusted_ones_by_descending_score(
    assets: list[tuple[float, bool]], minimum: float
) -> None:
    records = [
        asset(i, "pool", [f"2001:db8:2::{i + 1:x}"], s, q) for i, (s, q) in enumerate(assets)
    ]
    z = zone(assets=records, min_asset_trust=minimum)
    found = ask(z, "pool.assets.trust.example.com.")
    served = [r.address for r in found.answer[0]] if found.answer else []
    trusted = [r for r in records if not r.quarantined and r.score >= minimum]
    expected = [r.addresses[0] for r in sorted(trusted, key=lambda r: (-r.score, r.asset))]
    assert served == expected


def test_the_detectors_json_is_checked_item_by_item() -> None:
    good = {
        "asset": "a" * 64,
        "name": "n",
        "addresses": ["2001:db8::1"],
        "score": 0.7,
        "quarantined": False,
    }
    records, problems = parse_asset_records(
        [
            good,
            {"asset": "b" * 64},
            "junk",
            {**good, "score": float("nan")},
            {**good, "quarantined": "no"},
            {**good, "addresses": "2001:db8::1"},
        ]
    )
    assert [r.asset for r in records] == ["a" * 64]
    assert len(problems) == 5
    assert parse_asset_records({"not": "a list"}) == ([], ["asset records are a list, not dict"])
