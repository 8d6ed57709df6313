"""The resolver's logic end to end without threads or sockets (``core.Resolver``):
wire in, wire out. Bad queries get DNS errors, never exceptions (hypothesis throws
random bytes and mangled queries at it); zone answers are authoritative; questions
outside the zone go to every upstream at once, are joined while in flight, decided by
the quorum, cached, and answered SERVFAIL with an EDE when no quorum comes."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.actors.resolver.core import Disagreement, NoQuorum, Resolver, Step
from trustchain.actors.resolver.upstream import Upstream
from trustchain.actors.resolver.wire import Rendered, ede_of, render, respond
from trustchain.actors.resolver.zone import Zone

ZONE = Zone("trust.example.com", 300, {"hypermesh": ["2001:db8::10"]})
UPSTREAMS = [Upstream.parse(f"udp://[::1]:{5300 + i}") for i in range(3)]
U = [str(u) for u in UPSTREAMS]


def resolver(upstreams: list[Upstream] = UPSTREAMS, **kwargs: int) -> Resolver[str]:
    return Resolver(ZONE, upstreams, **kwargs)


def query(name: str, rdtype: str = "AAAA", edns: bool = True, qid: int = 4242) -> bytes:
    message = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    message.id = qid
    return message.to_wire()


def only_reply(step: Step[str]) -> dns.message.Message:
    assert len(step.replies) == 1, step
    return dns.message.from_wire(render(step.replies[0][1]))


def upstream_says(name: str, *addresses: str, ttl: int = 300) -> dns.message.Message:
    response = dns.message.make_response(dns.message.make_query(name, "AAAA"))
    if addresses:
        response.answer.append(dns.rrset.from_text_list(name, ttl, "IN", "AAAA", list(addresses)))
    else:
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(
            dns.rrset.from_text(
                "example.org.", 3600, "IN", "SOA", "ns.example.org. h.example.org. 1 2 3 4 30"
            )
        )
    return response


# The zone -------------------------------------------------------------------------------


def test_a_zone_name_is_answered_with_authority_and_the_querys_id() -> None:
    response = only_reply(resolver().query(query("hypermesh.trust.example.com", qid=777), "w", 0))
    assert response.id == 777
    assert response.flags & dns.flags.AA and response.flags & dns.flags.QR
    assert response.rcode() == dns.rcode.NOERROR
    assert [r.address for r in response.answer[0]] == ["2001:db8::10"]


def test_a_query_in_the_zone_never_reaches_an_upstream() -> None:
    r = resolver()
    step = r.query(query("nope.trust.example.com", "A"), "w", 0)
    assert step.sends == [] and only_reply(step).rcode() == dns.rcode.NXDOMAIN


def test_without_upstreams_other_names_are_refused_with_ede_20() -> None:
    response = only_reply(resolver([]).query(query("example.org"), "w", 0))
    assert response.rcode() == dns.rcode.REFUSED
    assert ede_of(response)["code"] == dns.edns.EDECode.NOT_AUTHORITATIVE  # type: ignore[index]
    assert not response.flags & dns.flags.AA


# Bad queries ----------------------------------------------------------------------------


def mangled(edit: str) -> bytes:
    message = dns.message.make_query("hypermesh.trust.example.com", "AAAA", use_edns=0)
    message.id = 99
    if edit == "response":
        message.flags |= dns.flags.QR
    elif edit == "opcode":
        message.set_opcode(dns.opcode.STATUS)
    elif edit == "two-questions":
        message.question.append(message.question[0])
    elif edit == "edns1":
        message.use_edns(1)
    elif edit == "chaos":
        message = dns.message.make_query("version.bind", "TXT", "CH", use_edns=0)
        message.id = 99
    elif edit == "axfr":
        message = dns.message.make_query("trust.example.com", "AXFR", use_edns=0)
        message.id = 99
    return message.to_wire()


@pytest.mark.parametrize(
    ("edit", "rcode"),
    [
        ("response", dns.rcode.FORMERR),
        ("opcode", dns.rcode.NOTIMP),
        ("two-questions", dns.rcode.FORMERR),
        ("edns1", dns.rcode.BADVERS),
        ("chaos", dns.rcode.REFUSED),
        ("axfr", dns.rcode.REFUSED),
    ],
)
def test_unanswerable_queries_get_dns_errors_with_their_id(edit: str, rcode: int) -> None:
    r = resolver()
    step = r.query(mangled(edit), "w", 0)
    assert step.sends == []
    response = only_reply(step)
    assert response.id == 99 and response.rcode() == rcode
    assert r.rcodes[dns.rcode.to_text(rcode)] == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("wire", [b"", b"\x01", b"\x12\x34\x01", b"\x12\x34" + b"\xff" * 40])
def test_garbage_is_formerr(wire: bytes) -> None:
    response = only_reply(resolver().query(wire, "w", 0))
    assert response.rcode() == dns.rcode.FORMERR
    assert response.id == (int.from_bytes(wire[:2], "big") if len(wire) >= 2 else 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_and_always_get_a_response(wire: bytes) -> None:
    r = resolver()
    step = r.query(wire, "w", 0)
    if step.sends:  # it parsed as a question for the upstreams
        assert step.replies == []
        return
    response = only_reply(step)
    assert response.flags & dns.flags.QR
    if len(wire) >= 2:
        assert response.id == int.from_bytes(wire[:2], "big")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 40), st.binary(min_size=1, max_size=4))
def test_a_query_with_octets_overwritten_never_raises(at: int, octets: bytes) -> None:
    wire = bytearray(query("hypermesh.trust.example.com"))
    wire[at : at + len(octets)] = octets
    step = resolver().query(bytes(wire), "w", 0)
    assert len(step.replies) + bool(step.sends) == 1


# Padding (RFC 8467) ----------------------------------------------------------------------


@pytest.mark.parametrize("block", [128, 468])
def test_responses_are_padded_to_the_block_when_the_query_has_edns(block: int) -> None:
    step = resolver().query(query("hypermesh.trust.example.com"), "w", 0)
    wire = render(step.replies[0][1], block)
    assert len(wire) % block == 0
    options = dns.message.from_wire(wire).options
    assert any(o.otype == dns.edns.OptionType.PADDING for o in options)


def test_no_padding_without_edns_or_without_a_block() -> None:
    step = resolver().query(query("hypermesh.trust.example.com", edns=False), "w", 0)
    wire = render(step.replies[0][1], 468)
    assert dns.message.from_wire(wire).edns < 0 and len(wire) % 468 != 0
    step = resolver().query(query("hypermesh.trust.example.com"), "w", 0)
    options = dns.message.from_wire(render(step.replies[0][1], 0)).options
    assert not any(o.otype == dns.edns.OptionType.PADDING for o in options)


# Forwarding, quorum and cache ----------------------------------------------------------


def test_a_question_goes_to_every_upstream_and_is_answered_by_the_quorum() -> None:
    r = resolver()
    step = r.query(query("www.example.org", qid=1), "first", now=0)
    assert [str(s.upstream) for s in step.sends] == U and step.replies == []
    round_id = step.sends[0].round
    joined = r.query(query("WWW.example.org", qid=2), "second", now=0)
    assert joined.sends == [] and joined.replies == []  # joined the round in flight
    assert (
        r.answered(round_id, U[0], upstream_says("www.example.org.", "2001:db8::1"), 0).replies
        == []
    )
    done = r.answered(round_id, U[1], upstream_says("www.example.org.", "2001:db8::1"), 0)
    assert [w for w, _ in done.replies] == ["first", "second"]
    ids = [dns.message.from_wire(render(m)).id for _, m in done.replies]
    assert ids == [1, 2]
    first = dns.message.from_wire(render(done.replies[0][1]))
    assert first.flags & dns.flags.RA and not first.flags & dns.flags.AA
    assert [r.address for r in first.answer[0]] == ["2001:db8::1"]
    # the third upstream lies after the fact: named and counted
    late = r.answered(round_id, U[2], upstream_says("www.example.org.", "2001:db8::bad"), 0)
    assert late.events == [
        Disagreement(
            U[2],
            "www.example.org. AAAA",
            "NOERROR [www.example.org. AAAA 2001:db8::1]",
            "NOERROR [www.example.org. AAAA 2001:db8::bad]",
        )
    ]
    assert r.stats[U[2]].disagreements == 1 and r.disagreements == 1
    assert r.in_flight() == 0


def test_a_repeat_is_served_from_the_cache_with_its_ttl_counted_down() -> None:
    r = resolver()
    round_id = r.query(query("www.example.org"), "w", now=0).sends[0].round
    for u in U[:2]:
        r.answered(round_id, u, upstream_says("www.example.org.", "2001:db8::1", ttl=100), now=0)
    step = r.query(query("www.example.org"), "again", now=40)
    assert step.sends == []
    assert only_reply(step).answer[0].ttl == 60
    assert r.cache.hits == 1
    assert r.query(query("www.example.org"), "later", now=100).sends  # expired: asked again


def test_nxdomain_is_cached_for_the_soa_minimum() -> None:
    r = resolver()
    round_id = r.query(query("gone.example.org"), "w", now=0).sends[0].round
    for u in U[:2]:
        r.answered(round_id, u, upstream_says("gone.example.org."), now=0)
    cached = r.query(query("gone.example.org"), "w", now=29)
    assert only_reply(cached).rcode() == dns.rcode.NXDOMAIN
    assert r.query(query("gone.example.org"), "w", now=30).sends


def test_no_quorum_is_servfail_with_ede_other_and_the_split_reported() -> None:
    r = resolver()
    round_id = r.query(query("www.example.org"), "w", now=0).sends[0].round
    r.answered(round_id, U[0], upstream_says("www.example.org.", "2001:db8::1"), 0)
    r.answered(round_id, U[1], upstream_says("www.example.org.", "2001:db8::2"), 0)
    step = r.answered(round_id, U[2], upstream_says("www.example.org.", "2001:db8::3"), 0)
    response = only_reply(step)
    assert response.rcode() == dns.rcode.SERVFAIL
    ede = ede_of(response)
    assert ede is not None and ede["code"] == dns.edns.EDECode.OTHER and "disagree" in ede["text"]
    assert isinstance(step.events[0], NoQuorum) and r.no_quorum == 1
    again = only_reply(r.query(query("www.example.org"), "w", now=1))  # a cached failure
    assert ede_of(again)["code"] == dns.edns.EDECode.CACHED_ERROR  # type: ignore[index]


def test_unreachable_upstreams_are_servfail_with_ede_22() -> None:
    r = resolver()
    round_id = r.query(query("www.example.org"), "w", now=0).sends[0].round
    r.answered(round_id, U[0], "no answer in 2 s", 0)
    failed = dns.message.make_response(dns.message.make_query("www.example.org", "AAAA"))
    failed.set_rcode(dns.rcode.SERVFAIL)
    step = r.answered(round_id, U[1], failed, 0)
    response = only_reply(step)
    assert response.rcode() == dns.rcode.SERVFAIL
    ede = ede_of(response)
    assert ede is not None and ede["code"] == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    assert "answered SERVFAIL" in ede["text"] and "no answer in 2 s" in ede["text"]
    assert r.upstreams_down is not None


def test_the_deadline_answers_with_what_came() -> None:
    r = resolver()
    round_id = r.query(query("www.example.org"), "w", now=0).sends[0].round
    r.answered(round_id, U[0], upstream_says("www.example.org.", "2001:db8::1"), 0)
    response = only_reply(r.expire(round_id, now=3))
    assert response.rcode() == dns.rcode.SERVFAIL
    assert "1 of 3 upstreams answered" in ede_of(response)["text"]  # type: ignore[index]
    assert (
        r.answered(round_id, U[1], upstream_says("www.example.org.", "2001:db8::1"), 4).replies
        == []
    )


def test_a_failure_without_edns_in_the_query_is_plain_servfail() -> None:
    r = resolver()
    round_id = r.query(query("www.example.org", edns=False), "w", now=0).sends[0].round
    response = only_reply(r.expire(round_id, now=3))
    assert response.rcode() == dns.rcode.SERVFAIL and response.edns < 0


def test_rounds_in_flight_are_bounded() -> None:
    r = resolver(max_rounds=2)
    assert r.query(query("a.example.org"), "w", 0).sends
    assert r.query(query("b.example.org"), "w", 0).sends
    assert r.query(query("a.example.org"), "joins", 0).replies == []  # joining is fine
    busy = only_reply(r.query(query("c.example.org"), "w", 0))
    assert busy.rcode() == dns.rcode.SERVFAIL and "in flight" in ede_of(busy)["text"]  # type: ignore[index]


def test_status_counts_queries_by_rcode_and_source() -> None:
    r = resolver()
    r.query(query("hypermesh.trust.example.com"), "w", 0)
    r.query(query("nope.trust.example.com"), "w", 0)
    r.query(b"junk", "w", 0)
    status = r.status()
    assert status["rcodes"] == {"NOERROR": 1, "NXDOMAIN": 1, "FORMERR": 1}
    assert status["sources"] == {"zone": 2, "invalid": 1}
    assert status["quorum"] == 2 and set(status["upstreams"]) == set(U)


def test_rendered_zone_answers_are_reused_until_the_zone_changes() -> None:
    r = resolver()
    rendered = Rendered(capacity=2)
    wire = query("hypermesh.trust.example.com", qid=0)
    assert rendered.get(r.zone, wire, 468) is None
    response = only_reply(r.query(wire, "w", 0))
    rendered.put(r.zone, wire, 468, response, b"the bytes")
    assert rendered.get(r.zone, wire, 468) == (b"the bytes", "NOERROR")
    assert rendered.get(r.zone, wire, 0) is None  # another padding, another answer
    other_zone = Zone("trust.example.com", 300, {"hypermesh": ["2001:db8::99"]})
    assert rendered.get(other_zone, wire, 468) is None  # a new zone forgets the old answers
    assert rendered.get(r.zone, wire, 468) is None
    forwarded = respond(dns.message.from_wire(wire), dns.rcode.NOERROR, recursion=True)
    rendered.put(r.zone, wire, 0, forwarded, b"not a zone answer")  # no AA: not kept
    assert rendered.get(r.zone, wire, 0) is None
    for i in range(3):  # at most capacity entries
        w = query(f"n{i}.trust.example.com", qid=0)
        rendered.put(r.zone, w, 0, response, b"x")
    assert rendered.get(r.zone, query("n0.trust.example.com", qid=0), 0) is None
    assert rendered.get(r.zone, query("n2.trust.example.com", qid=0), 0) is not None
