"""A listener's memory of zone answers (``ZoneMemo``): sans-IO, no threads. It answers
a repeat only under the zone it was given the answer under, keeps only zone answers
(AA), stays bounded, and counts what it answered."""

from __future__ import annotations

from collections import Counter

import dns.flags
import dns.message
import dns.rcode

from trustchain.actors.resolver.memo import ZoneMemo


def query(name: str) -> bytes:
    q = dns.message.make_query(name, "AAAA", use_edns=0, pad=128)
    q.id = 0
    return q.to_wire()


def response(wire: bytes, authoritative: bool = True, rcode: int = dns.rcode.NOERROR) -> bytes:
    r = dns.message.make_response(dns.message.from_wire(wire))
    if authoritative:
        r.flags |= dns.flags.AA
    r.set_rcode(rcode)
    return r.to_wire()


def test_a_repeat_is_answered_only_under_the_zone_it_was_asked_under() -> None:
    memo, zone, newer = ZoneMemo(), object(), object()
    q = query("hypermesh.trust.example.com.")
    assert memo.get(zone, q) is None
    memo.put(zone, q, response(q))
    assert memo.get(zone, q) == response(q)
    assert memo.get(newer, q) is None  # the zone changed: ask again
    assert memo.get(None, q) is None  # nothing published (the resolver is down): ask
    memo.put(newer, q, response(q, rcode=dns.rcode.NXDOMAIN))  # the new zone's answer
    assert len(memo) == 1  # the old zone's answers are forgotten
    assert memo.get(zone, q) is None
    assert memo.get(newer, q) == response(q, rcode=dns.rcode.NXDOMAIN)
    assert memo.take_counts() == Counter({"NOERROR": 1, "NXDOMAIN": 1})
    assert memo.take_counts() == Counter()


def test_only_zone_answers_to_short_queries_are_kept_and_at_most_capacity() -> None:
    memo, zone = ZoneMemo(capacity=2), object()
    forwarded = query("example.org.")
    memo.put(zone, forwarded, response(forwarded, authoritative=False))  # not the zone's
    memo.put(zone, query("x.trust.example.com."), b"\x00\x00junk")  # not a DNS message
    memo.put(None, forwarded, response(forwarded))  # asked while nothing was published
    long = dns.message.make_query("y.trust.example.com.", "AAAA", use_edns=0, pad=1024)
    long.id = 0
    memo.put(zone, long.to_wire(), response(long.to_wire()))  # a key past MAX_KEY
    assert len(memo) == 0
    names = [query(f"n{i}.trust.example.com.") for i in range(3)]
    for q in names:
        memo.put(zone, q, response(q))
    assert len(memo) == 2
    assert memo.get(zone, names[0]) is None  # the oldest went first
    assert memo.get(zone, names[2]) == response(names[2])


def test_counts_not_delivered_are_given_back_and_counted_again() -> None:
    memo, zone = ZoneMemo(), object()
    q = query("caesar.trust.example.com.")
    memo.put(zone, q, response(q))
    memo.get(zone, q)
    taken = memo.take_counts()
    memo.get(zone, q)
    memo.give_back(taken)
    assert memo.take_counts() == Counter({"NOERROR": 2})
