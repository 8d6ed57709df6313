"""The cache (sans-IO): TTLs counted down, negative answers for the SOA's minimum,
failures for a few seconds, never past its capacity (least recently used out)."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.actors.resolver.cache import FAILURE_TTL_S, Cache, key_of
from trustchain.actors.resolver.upstream import Answer, Failed

AAAA = dns.rdatatype.AAAA


def positive(name: str, ttl: int) -> Answer:
    rrset = dns.rrset.from_text(name, ttl, "IN", "AAAA", "2001:db8::1")
    return Answer(dns.rcode.NOERROR, (rrset,))


def negative(soa_ttl: int, minimum: int) -> Answer:
    soa = dns.rrset.from_text(
        "example.org.", soa_ttl, "IN", "SOA", f"ns.example.org. h.example.org. 1 2 3 4 {minimum}"
    )
    return Answer(dns.rcode.NXDOMAIN, (), (soa,), negative=True)


def key(name: str = "a.example.org."):  # type: ignore[no-untyped-def]
    return key_of(dns.name.from_text(name), AAAA)


def test_an_answer_lives_for_its_ttl_and_comes_back_aged() -> None:
    cache = Cache(10)
    assert cache.put(key(), positive("a.example.org.", 300), now=0)
    aged = cache.get(key(), now=100)
    assert isinstance(aged, Answer) and aged.answer[0].ttl == 200
    assert cache.get(key(), now=300) is None  # expired
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 0)


def test_keys_ignore_case() -> None:
    cache = Cache(10)
    cache.put(key("A.Example.ORG."), positive("a.example.org.", 300), now=0)
    assert cache.get(key("a.example.org."), now=1) is not None


def test_negative_answers_live_for_the_soa_minimum() -> None:
    cache = Cache(10)
    cache.put(key(), negative(soa_ttl=3600, minimum=60), now=0)
    aged = cache.get(key(), now=59)
    assert isinstance(aged, Answer) and aged.authority[0].ttl == 1
    assert cache.get(key(), now=60) is None
    cache.put(key(), negative(soa_ttl=30, minimum=600), now=0)  # the lesser of the two
    assert cache.get(key(), now=31) is None


def test_what_may_not_be_cached_is_not() -> None:
    cache = Cache(10)
    assert not cache.put(key(), positive("a.example.org.", 0), now=0)
    assert not cache.put(key(), Answer(dns.rcode.NXDOMAIN, negative=True), now=0)  # no SOA
    assert not Cache(0).put(key(), positive("a.example.org.", 300), now=0)
    assert len(cache) == 0


def test_failures_are_kept_a_few_seconds() -> None:
    cache = Cache(10)
    failure = Failed(dns.edns.EDECode.NO_REACHABLE_AUTHORITY, "down", split=False)
    cache.put(key(), failure, now=0)
    assert cache.get(key(), now=FAILURE_TTL_S - 0.1) == failure
    assert cache.get(key(), now=FAILURE_TTL_S) is None


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 20), st.lists(st.integers(0, 40), max_size=200))
def test_never_more_than_capacity_and_the_least_recently_used_goes(
    capacity: int, names: list[int]
) -> None:
    cache = Cache(capacity)
    recent: list[int] = []  # a model: most recent last
    for n in names:
        k = key(f"n{n}.example.org.")
        if cache.get(k, now=0) is None:
            cache.put(k, positive(f"n{n}.example.org.", 300), now=0)
        if n in recent:
            recent.remove(n)
        recent.append(n)
        recent = recent[-capacity:]
        assert len(cache) <= capacity
    for n in recent:
        assert cache.get(key(f"n{n}.example.org."), now=1) is not None
