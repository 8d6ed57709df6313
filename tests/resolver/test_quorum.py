"""The upstream quorum (sans-IO): upstream URLs, q, what "the same RRset" means, and
the ballot's verdicts -- accepted once q agree, failed with the right EDE once no
answer can reach q, disagreeing upstreams named whenever their answer comes."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.actors.resolver.upstream import (
    Accepted,
    Answer,
    Ballot,
    Failed,
    Upstream,
    quorum_of,
)

QNAME = dns.name.from_text("www.example.org.")
AAAA = dns.rdatatype.AAAA


def response(
    *rrsets: str, rcode: dns.rcode.Rcode = dns.rcode.NOERROR, authority: tuple[str, ...] = ()
) -> dns.message.Message:
    message = dns.message.make_response(dns.message.make_query(QNAME, AAAA))
    message.set_rcode(rcode)
    for text in rrsets:
        name, ttl, cls, rdtype, *rdatas = text.split()
        message.answer.append(dns.rrset.from_text_list(name, int(ttl), cls, rdtype, rdatas))
    for text in authority:
        name, ttl, cls, rdtype, rest = text.split(maxsplit=4)
        message.authority.append(dns.rrset.from_text(name, int(ttl), cls, rdtype, rest))
    return message


def answer(*rrsets: str, **kwargs: object) -> Answer:
    return Answer.of(QNAME, AAAA, response(*rrsets, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("udp://[::1]:5353", ("udp", "::1", 5353)),
        ("tcp://[2001:DB8::53]", ("tcp", "2001:db8::53", 53)),
        ("doq://[2001:db8::53]", ("doq", "2001:db8::53", 853)),
        ("doq://[2001:db8::53]:8853/", ("doq", "2001:db8::53", 8853)),
    ],
)
def test_upstream_urls(url: str, expected: tuple[str, str, int]) -> None:
    u = Upstream.parse(url)
    assert (u.scheme, u.address, u.port) == expected
    assert Upstream.parse(str(u)) == u


@pytest.mark.parametrize(
    "url",
    [
        "udp://192.0.2.1:53",
        "udp://[192.0.2.1]:53",
        "udp://[::ffff:192.0.2.1]:53",
        "https://[::1]:443",
        "udp://[::1]:0",
        "udp://[::1]:70000",
        "::1",
        "udp://[nope]:53",
        "udp://dns.example:53",
    ],
)
def test_bad_upstreams_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="upstream"):
        Upstream.parse(url)


def test_a_doq_upstream_may_name_its_tls_name() -> None:
    u = Upstream.parse("doq://[2001:db8::53]:853#dns.example.net")
    assert (u.address, u.port, u.tls_name) == ("2001:db8::53", 853, "dns.example.net")
    assert str(u) == "doq://[2001:db8::53]:853#dns.example.net"
    assert Upstream.parse("doq://[2001:db8::53]").tls_name is None
    with pytest.raises(ValueError, match="doq:// only"):
        Upstream.parse("udp://[::1]:53#dns.example.net")


def test_quorum_is_a_majority_unless_configured() -> None:
    assert [quorum_of(n, 0) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    assert quorum_of(5, 4) == 4
    with pytest.raises(ValueError, match="more than"):
        quorum_of(3, 4)


def test_the_same_rrset_ignores_ttl_order_and_case() -> None:
    a = answer("www.example.org. 300 IN AAAA 2001:db8::1 2001:db8::2")
    b = answer("WWW.Example.ORG. 17 IN AAAA 2001:db8::2 2001:db8::1")
    assert a.key() == b.key()
    assert a.key() != answer("www.example.org. 300 IN AAAA 2001:db8::1").key()
    nx = answer(rcode=dns.rcode.NXDOMAIN)
    nodata = answer()
    assert nx.key() != nodata.key()  # the rcode counts


def test_only_the_chain_from_the_question_is_kept() -> None:
    kept = answer(
        "www.example.org. 300 IN CNAME web.example.org.",
        "web.example.org. 60 IN AAAA 2001:db8::7",
        "bank.example. 300 IN AAAA 2001:db8::666",  # out of the chain: poison
        "www.example.org. 300 IN A 192.0.2.1",  # not the type asked
    )
    assert [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype)) for r in kept.answer] == [
        ("www.example.org.", "CNAME"),
        ("web.example.org.", "AAAA"),
    ]
    assert kept.ttl() == 60 and not kept.negative


def test_a_negative_answer_keeps_an_enclosing_soa_and_caches_for_its_minimum() -> None:
    soa = "example.org. 3600 IN SOA ns.example.org. h.example.org. 1 2 3 4 120"
    nx = answer(rcode=dns.rcode.NXDOMAIN, authority=(soa,))
    assert nx.negative and nx.ttl() == 120  # min(SOA TTL, MINIMUM), RFC 2308
    unrelated = "other.net. 3600 IN SOA ns.other.net. h.other.net. 1 2 3 4 120"
    assert answer(authority=(unrelated,)).ttl() is None  # not cacheable without its SOA
    assert answer().ttl() is None


def ballot(n: int, q: int = 0) -> Ballot:
    return Ballot(tuple(f"u{i}" for i in range(n)), quorum_of(n, q))


GOOD = "www.example.org. 300 IN AAAA 2001:db8::1"
LIE = "www.example.org. 300 IN AAAA 2001:db8::666"


def test_accepted_as_soon_as_a_majority_agrees_and_a_late_liar_is_named() -> None:
    b = ballot(3)
    assert b.add("u0", answer(GOOD)) == []
    assert b.verdict is None
    assert b.add("u1", answer(GOOD.replace("300", "250"))) == []
    assert isinstance(b.verdict, Accepted)
    assert b.verdict.answer.ttl() == 250  # the agreeing answer kept the least time
    assert b.add("u2", answer(LIE)) == ["u2"]
    assert b.complete


def test_a_liar_that_answered_first_is_named_at_acceptance() -> None:
    b = ballot(3)
    assert b.add("u0", answer(LIE)) == []
    assert b.add("u1", answer(GOOD)) == []
    assert b.add("u2", answer(GOOD)) == ["u0"]
    assert isinstance(b.verdict, Accepted) and set(b.verdict.agreeing) == {"u1", "u2"}


def test_no_upstream_answering_is_no_reachable_authority() -> None:
    b = ballot(2)
    b.add("u0", "timed out")
    b.add("u1", "answered SERVFAIL")
    assert isinstance(b.verdict, Failed)
    assert b.verdict.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    assert "u0: timed out" in b.verdict.text and not b.verdict.split


def test_a_split_is_ede_other_and_decided_as_soon_as_q_is_out_of_reach() -> None:
    b = ballot(4, q=3)
    b.add("u0", answer(GOOD))
    b.add("u1", answer(LIE))
    assert b.verdict is None  # u2 and u3 could still make 3
    b.add("u2", answer(LIE.replace("666", "777")))
    assert isinstance(b.verdict, Failed)  # no answer can reach 3 any more
    assert b.verdict.ede == dns.edns.EDECode.OTHER and b.verdict.split
    assert "disagree" in b.verdict.text


def test_the_deadline_fails_the_silent() -> None:
    b = ballot(3)
    b.add("u0", answer(GOOD))
    verdict = b.expire()
    assert isinstance(verdict, Failed)
    assert verdict.ede == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    assert "1 of 3 upstreams answered and 2 failed" in verdict.text


def test_a_second_answer_from_one_upstream_or_a_stranger_does_not_vote() -> None:
    b = ballot(3)
    b.add("u0", answer(GOOD))
    b.add("u0", answer(GOOD))
    b.add("stranger", answer(GOOD))
    assert b.verdict is None


ANSWERS = [answer(GOOD), answer(LIE), answer(rcode=dns.rcode.NXDOMAIN), "failed"]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 7).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.integers(0, n),
            st.lists(st.sampled_from(range(len(ANSWERS))), min_size=n, max_size=n),
        )
    )
)
def test_the_verdict_is_accepted_exactly_when_q_answers_agree(
    case: tuple[int, int, list[int]],
) -> None:
    n, q, picks = case
    b = ballot(n, q)
    named: list[str] = []
    for i, pick in enumerate(picks):
        named += b.add(f"u{i}", ANSWERS[pick])
    need = quorum_of(n, q)
    counts = {p: picks.count(p) for p in set(picks) if ANSWERS[p] != "failed"}
    winners = [p for p, c in counts.items() if c >= need]
    if winners:
        assert isinstance(b.verdict, Accepted)
        accepted = b.verdict.answer.key()
        assert accepted in [ANSWERS[w].key() for w in winners]  # type: ignore[union-attr]
        # every upstream with another answer was named, once; nobody else
        others = [
            f"u{i}"
            for i, p in enumerate(picks)
            if ANSWERS[p] != "failed" and ANSWERS[p].key() != accepted
        ]  # type: ignore[union-attr]
        assert sorted(named) == sorted(others)
    else:
        assert isinstance(b.verdict, Failed) and named == []
