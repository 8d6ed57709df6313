"""CNAMEs out of the zone chased through the upstream quorum (``chase.py``), with
ResolverActor in a tree and real upstream DNS servers on [::1] (``upstreams.py``,
which answer a CNAME alone, as an authoritative server does): the chased answer
(acme-dns style delegation of ``_acme-challenge``), an outvoted upstream on the way,
each step cached, a chain too long and a loop (SERVFAIL with an EDE saying why), a
target inside the zone, and a target that does not exist."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from trustchain.actors.resolver import Resolve, ResolverStatus
from trustchain.actors.resolver.chase import MAX_CHAIN, Broken, Chain
from trustchain.actors.resolver.core import Resolver
from trustchain.actors.resolver.upstream import Upstream
from trustchain.actors.resolver.wire import ede_of, render
from trustchain.actors.resolver.zone import Zone
from trustchain.config.schema import ResolverConfig
from trustchain.supervisors import Registry

from ..conftest import wait_until
from .test_resolver_actor import Tree, ask_wire, servers, tree  # noqa: F401 (fixtures)
from .upstreams import UpstreamServer

ORIGIN = "trust.example.com"
ACME_DNS = "d420c923-bbd7.auth.acme-dns.example.org."
TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
TIMEOUT_S = 0.5
CNAMES = {
    "_acme-challenge.www": ACME_DNS,  # acme-dns: the TXT lives in another zone
    "long": "c1.example.org.",
    "loop": "hop.example.org.",
    "back": "in.example.org.",
    "gone": "nowhere.example.org.",
    "inside": "hypermesh",
}
ABROAD = {
    f"{ACME_DNS} TXT": [f'"{TOKEN}"'],
    **{f"c{i}.example.org. CNAME": [f"c{i + 1}.example.org."] for i in range(1, 12)},
    "hop.example.org. CNAME": [f"loop.{ORIGIN}."],  # back to where it started
    "in.example.org. CNAME": [f"hypermesh.{ORIGIN}."],
    "other.example.org. AAAA": ["2001:db8::99"],  # nowhere.example.org. does not exist
}


@pytest.fixture
def chasing(
    tree: Tree,  # noqa: F811
    servers: Callable[..., UpstreamServer],  # noqa: F811
) -> Iterator[tuple[Registry, list[UpstreamServer]]]:
    upstreams = [servers("udp", ABROAD), servers("tcp", ABROAD), servers("udp", ABROAD)]
    config = ResolverConfig(
        upstreams=[u.url for u in upstreams],
        upstream_timeout_s=TIMEOUT_S,
        origin=ORIGIN,
        records={"hypermesh": ["2001:db8::10"]},
        cnames=CNAMES,
    )
    yield tree.start(config), upstreams


def asked(upstreams: list[UpstreamServer], n: int) -> list[str]:
    """What every upstream was asked, once each has had ``n`` questions (a round is
    decided by the quorum, before the last upstream has necessarily been asked)."""
    wait_until(lambda: all(len(u.queries) >= n for u in upstreams), f"{n} questions each")
    assert all(u.queries == upstreams[0].queries for u in upstreams)
    return upstreams[0].queries


def resolve(registry: Registry, name: str, rdtype: str = "AAAA") -> dict[str, Any]:
    answer = registry.ask("resolver", Resolve(name, rdtype))
    assert isinstance(answer, dict)
    return answer


def test_a_cname_out_of_the_zone_is_answered_with_the_targets_records(
    chasing: tuple[Registry, list[UpstreamServer]],
) -> None:
    registry, upstreams = chasing
    name = f"_acme-challenge.www.{ORIGIN}."
    response = ask_wire(registry, name, "TXT")
    assert response.rcode() == dns.rcode.NOERROR
    assert [r.to_text() for r in response.answer] == [
        f"{name} 300 IN CNAME {ACME_DNS}",
        f'{ACME_DNS} 300 IN TXT "{TOKEN}"',
    ]
    assert response.flags & dns.flags.RA and not response.flags & dns.flags.AA
    assert asked(upstreams, 1) == [f"{ACME_DNS} TXT"]  # the target, of each
    again = resolve(registry, name, "TXT")  # the target's answer comes from the cache
    assert again["answer"][1].endswith(f'"{TOKEN}"') and again["rcode"] == "NOERROR"
    assert asked(upstreams, 1) == [f"{ACME_DNS} TXT"]
    status = registry.ask("resolver", ResolverStatus())
    assert status["sources"]["chased"] == 2 and status["cache"]["hits"] == 1


def test_an_upstream_outvoted_on_a_chased_target_is_counted(
    tree: Tree,  # noqa: F811
    servers: Callable[..., UpstreamServer],  # noqa: F811
) -> None:
    liar = servers("udp", {f"{ACME_DNS} TXT": ['"forged"']})
    honest = [servers("udp", ABROAD), servers("udp", ABROAD)]
    registry = tree.start(
        ResolverConfig(
            upstreams=[u.url for u in [*honest, liar]],
            upstream_timeout_s=TIMEOUT_S,
            origin=ORIGIN,
            cnames=CNAMES,
        )
    )
    answer = resolve(registry, f"_acme-challenge.www.{ORIGIN}.", "TXT")
    assert answer["answer"][-1].endswith(f'"{TOKEN}"')

    def counted() -> bool:
        status = registry.ask("resolver", ResolverStatus())
        return bool(status["upstreams"][liar.url]["disagreements"] == 1)

    wait_until(counted, "the liar counted")


def test_a_chain_longer_than_the_bound_is_servfail_with_an_ede(
    chasing: tuple[Registry, list[UpstreamServer]],
) -> None:
    registry, upstreams = chasing
    response = ask_wire(registry, f"long.{ORIGIN}.")
    assert response.rcode() == dns.rcode.SERVFAIL and response.answer == []
    ede = ede_of(response)
    assert ede is not None and ede["code"] == dns.edns.EDECode.OTHER
    assert f"longer than {MAX_CHAIN}" in ede["text"]
    names = [q.split()[0] for q in asked(upstreams, MAX_CHAIN)]
    assert names == [f"c{i}.example.org." for i in range(1, MAX_CHAIN + 1)]  # no further


def test_a_loop_through_the_zone_and_back_is_servfail_with_an_ede(
    chasing: tuple[Registry, list[UpstreamServer]],
) -> None:
    registry, upstreams = chasing
    answer = resolve(registry, f"loop.{ORIGIN}.")
    assert answer["rcode"] == "SERVFAIL" and answer["answer"] == []
    assert answer["ede"]["code"] == 0
    assert answer["ede"]["text"] == (
        f"CNAME loop: loop.{ORIGIN}. -> hop.example.org. -> loop.{ORIGIN}."
    )
    assert asked(upstreams, 1) == ["hop.example.org. AAAA"]


def test_a_target_inside_the_zone_is_answered_from_the_zone(
    chasing: tuple[Registry, list[UpstreamServer]],
) -> None:
    registry, upstreams = chasing
    inside = ask_wire(registry, f"inside.{ORIGIN}.")  # never leaves the zone: authoritative
    assert inside.flags & dns.flags.AA and upstreams[0].queries == []
    assert [r.to_text() for r in inside.answer] == [
        f"inside.{ORIGIN}. 300 IN CNAME hypermesh.{ORIGIN}.",
        f"hypermesh.{ORIGIN}. 300 IN AAAA 2001:db8::10",
    ]
    back = ask_wire(registry, f"back.{ORIGIN}.")  # out, and an upstream's CNAME leads back
    assert back.rcode() == dns.rcode.NOERROR and not back.flags & dns.flags.AA
    assert [r.to_text() for r in back.answer] == [
        f"back.{ORIGIN}. 300 IN CNAME in.example.org.",
        f"in.example.org. 300 IN CNAME hypermesh.{ORIGIN}.",
        f"hypermesh.{ORIGIN}. 300 IN AAAA 2001:db8::10",
    ]
    assert asked(upstreams, 1) == ["in.example.org. AAAA"]


def test_a_target_that_does_not_exist_is_nxdomain_with_the_chain_and_its_soa(
    chasing: tuple[Registry, list[UpstreamServer]],
) -> None:
    registry, _ = chasing
    response = ask_wire(registry, f"gone.{ORIGIN}.")
    assert response.rcode() == dns.rcode.NXDOMAIN  # the last name's rcode (RFC 6604)
    assert [r.to_text() for r in response.answer] == [
        f"gone.{ORIGIN}. 300 IN CNAME nowhere.example.org."
    ]
    assert [r.name.to_text() for r in response.authority] == ["org."]  # the upstream's SOA


def test_a_failed_target_is_servfail_with_the_upstreams_ede(
    tree: Tree,  # noqa: F811
    servers: Callable[..., UpstreamServer],  # noqa: F811
) -> None:
    down = [servers("udp", ABROAD) for _ in range(2)]
    for server in down:
        server.behaviour = "servfail"
    registry = tree.start(
        ResolverConfig(
            upstreams=[u.url for u in down],
            upstream_timeout_s=TIMEOUT_S,
            origin=ORIGIN,
            cnames=CNAMES,
        )
    )
    answer = resolve(registry, f"_acme-challenge.www.{ORIGIN}.", "TXT")
    assert answer["rcode"] == "SERVFAIL" and answer["ede"]["code"] == 22  # no reachable authority


# The core and the chain, without threads --------------------------------------------------


def test_without_upstreams_a_cname_out_of_the_zone_is_answered_alone() -> None:
    zone = Zone(ORIGIN, 300, {}, {"_acme-challenge.www": ACME_DNS})
    query = dns.message.make_query(f"_acme-challenge.www.{ORIGIN}.", "TXT", use_edns=0)
    step = Resolver[str](zone, []).query(query.to_wire(), "w", 0)
    response = dns.message.from_wire(render(step.replies[0][1]))
    assert response.flags & dns.flags.AA and step.sends == []
    assert [r.to_text() for r in response.answer] == [
        f"_acme-challenge.www.{ORIGIN}. 300 IN CNAME {ACME_DNS}"
    ]


def test_the_chase_asks_the_upstreams_the_target_and_nothing_else() -> None:
    zone = Zone(ORIGIN, 300, {}, {"_acme-challenge.www": ACME_DNS})
    upstreams = [Upstream.parse("udp://[::1]:5301"), Upstream.parse("udp://[::1]:5302")]
    query = dns.message.make_query(f"_acme-challenge.www.{ORIGIN}.", "TXT", use_edns=0)
    step = Resolver[str](zone, upstreams).query(query.to_wire(), "w", 0)
    assert step.replies == []
    assert [(s.qname.to_text(), s.rdtype) for s in step.sends] == [(ACME_DNS, 16)] * 2


def test_a_chain_refuses_a_repeated_name_case_blind_and_a_ninth_cname() -> None:
    def cname(owner: str, target: str) -> dns.rrset.RRset:
        return dns.rrset.from_text(owner, 60, "IN", "CNAME", target)

    chain = Chain(dns.name.from_text("a.example."))
    looped = chain.extend([cname("a.example.", "b.example."), cname("b.example.", "A.EXAMPLE.")])
    assert isinstance(looped, Broken) and "loop" in looped.text
    links = [cname(f"n{i}.example.", f"n{i + 1}.example.") for i in range(MAX_CHAIN + 1)]
    assert isinstance(chain.extend(links[:MAX_CHAIN]), Chain)
    assert isinstance(chain.extend(links), Broken)
