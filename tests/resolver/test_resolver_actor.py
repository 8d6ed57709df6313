"""ResolverActor in a supervised tree, with real upstream DNS servers on [::1] (UDP and
TCP, ``upstreams.py``), some of them lying, failing or silent: the quorum's answer,
the liar counted and logged, SERVFAIL with the EDE that says why, the cache (on a
FakeClock, so TTLs are counted down by the test), the control messages as the control
socket builds them, and the assets' seam to the detector.

The detector has no ``AssetRecords`` message yet (the consensus side adds it): the
asset tests stand a small test actor in for it, answering a message of that name,
and point the resolver at that message; the resolver's side (request, continuation,
rebuilding the zone) is the real one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from loguru import logger

from trustchain.actors.composition import trustchain_children
from trustchain.actors.detector.messages import AssetRecords
from trustchain.actors.resolver import Query, Resolve, ResolverStatus, Zone
from trustchain.actors.resolver.actor import ASSET_REFRESH_S, ResolverActor
from trustchain.config import Config
from trustchain.config.schema import ResolverConfig
from trustchain.supervisors import (
    ActorContext,
    ActorState,
    ChildSpec,
    FakeClock,
    InvalidRequest,
    Message,
    Registry,
    SupervisedActor,
    handles,
    start_root,
    to_jsonable,
)

from ..conftest import wait_until
from .upstreams import DoqUpstreamServer, UpstreamServer, self_signed

NAME = "www.example.org."
TRUTH = {f"{NAME} AAAA": ["2001:db8::1"]}
LIE = {f"{NAME} AAAA": ["2001:db8::bad"]}
OTHER_LIE = {f"{NAME} AAAA": ["2001:db8::666"]}
TIMEOUT_S = 1.5  # a bound on an upstream that is silent on purpose; 0.3 s flaked under load


@pytest.fixture
def servers() -> Iterator[Callable[..., UpstreamServer]]:
    made: list[UpstreamServer] = []

    def make(
        transport: str = "udp", records: dict[str, list[str]] = TRUTH, **kw: Any
    ) -> UpstreamServer:
        server = UpstreamServer(transport, records, **kw)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def warnings() -> Iterator[list[dict[str, Any]]]:
    """The loguru WARNING (and above) records written while the test runs."""
    records: list[dict[str, Any]] = []
    sink = logger.add(lambda m: records.append(m.record), level="WARNING")
    yield records
    logger.remove(sink)


class Tree:
    def __init__(self) -> None:
        self.roots: list[Any] = []

    def start(
        self,
        config: ResolverConfig,
        *,
        clock: FakeClock | None = None,
        detector: str | None = None,
        extra: tuple[ChildSpec, ...] = (),
        doq_verify: bool | str = True,
    ) -> Registry:
        registry = Registry()
        spec = ChildSpec(
            "resolver",
            lambda ctx: ResolverActor.start(ctx, config, detector, doq_verify=doq_verify),
        )
        kwargs = {"clock": clock} if clock is not None else {}
        self.roots.append(start_root(registry, "root", [*extra, spec], **kwargs))
        return registry


@pytest.fixture
def tree() -> Iterator[Tree]:
    t = Tree()
    yield t
    for root in t.roots:
        root.stop(block=True, timeout=10)


def config(*upstreams: UpstreamServer, **kw: Any) -> ResolverConfig:
    return ResolverConfig(upstreams=[u.url for u in upstreams], upstream_timeout_s=TIMEOUT_S, **kw)


def ask_wire(registry: Registry, name: str, rdtype: str = "AAAA", padding: int = 0,
             qid: int = 4321) -> dns.message.Message:  # fmt: skip
    query = dns.message.make_query(name, rdtype, use_edns=0)
    query.id = qid
    wire = registry.ask("resolver", Query(query.to_wire(), padding))
    assert isinstance(wire, bytes)
    response = dns.message.from_wire(wire)
    assert response.id == qid
    return response


def addresses(response: dns.message.Message) -> list[str]:
    return [r.address for rrset in response.answer for r in rrset if hasattr(r, "address")]


def status(registry: Registry) -> dict[str, Any]:
    return registry.ask("resolver", ResolverStatus())


# The zone --------------------------------------------------------------------------------


def test_the_zone_is_answered_over_query_with_authority_and_padding(tree: Tree) -> None:
    registry = tree.start(ResolverConfig())
    response = ask_wire(registry, "HYPERMESH.trust.example.com.", padding=468)
    assert response.flags & dns.flags.AA
    assert addresses(response) == ["2001:db8::10"]
    wire = registry.ask("resolver", Query(dns.message.make_query(
        "hypermesh.trust.example.com.", "AAAA", use_edns=0).to_wire(), 468))  # fmt: skip
    assert len(wire) % 468 == 0
    nodata = ask_wire(registry, "hypermesh.trust.example.com.", "A")
    assert nodata.rcode() == dns.rcode.NOERROR and nodata.answer == []
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    assert ask_wire(registry, "nope.trust.example.com.").rcode() == dns.rcode.NXDOMAIN
    # without upstreams the rest of the DNS is refused
    refused = ask_wire(registry, NAME)
    assert refused.rcode() == dns.rcode.REFUSED


def test_a_repeated_zone_query_gets_the_same_bytes_and_is_counted(tree: Tree) -> None:
    registry = tree.start(ResolverConfig())
    wire = dns.message.make_query("caesar.trust.example.com.", "AAAA", use_edns=0)
    wire.id = 0  # as DoQ sends them
    answers = {registry.ask("resolver", Query(wire.to_wire(), 468)) for _ in range(3)}
    assert len(answers) == 1
    response = dns.message.from_wire(answers.pop())
    assert addresses(response) == ["2001:db8::20"] and response.id == 0
    assert status(registry)["rcodes"] == {"NOERROR": 3}


def test_bad_queries_get_dns_errors_and_the_actor_lives_on(tree: Tree) -> None:
    registry = tree.start(ResolverConfig())
    for wire in (b"", b"\x00", b"\xab\xcd" + b"\xff" * 30):
        response = dns.message.from_wire(registry.ask("resolver", Query(wire)))
        assert response.rcode() == dns.rcode.FORMERR
    assert registry.lookup("resolver").state is ActorState.RUNNING
    assert registry.lookup("resolver").restarts == 0


# Upstreams and the quorum ----------------------------------------------------------------


def test_a_liar_is_outvoted_counted_and_logged(
    tree: Tree, servers: Callable[..., UpstreamServer], warnings: list[dict[str, Any]]
) -> None:
    honest = [servers("udp"), servers("tcp")]
    liar = servers("udp", LIE)
    registry = tree.start(config(*honest, liar))
    response = ask_wire(registry, NAME)
    assert response.rcode() == dns.rcode.NOERROR
    assert addresses(response) == ["2001:db8::1"]
    assert not response.flags & dns.flags.AA and response.flags & dns.flags.RA
    wait_until(lambda: status(registry)["upstreams"][liar.url]["disagreements"] == 1,
               "the liar's answer to be counted")  # fmt: skip
    s = status(registry)
    assert s["disagreements"] == 1
    assert all(s["upstreams"][u.url]["disagreements"] == 0 for u in honest)
    events = [r for r in warnings if r["extra"].get("event") == "resolver.upstream_disagreed"]
    assert len(events) == 1 and events[0]["extra"]["upstream"] == liar.url
    assert all(u.queries == [f"{NAME} AAAA"] for u in [*honest, liar])  # one each


def test_two_liars_that_disagree_leave_no_quorum_servfail_ede_other(
    tree: Tree, servers: Callable[..., UpstreamServer], warnings: list[dict[str, Any]]
) -> None:
    registry = tree.start(config(servers("udp"), servers("tcp", LIE), servers("udp", OTHER_LIE)))
    response = ask_wire(registry, NAME)
    assert response.rcode() == dns.rcode.SERVFAIL
    ede = [o for o in response.options if isinstance(o, dns.edns.EDEOption)]
    assert ede and ede[0].code == dns.edns.EDECode.OTHER and "disagree" in (ede[0].text or "")
    assert status(registry)["no_quorum"] == 1
    assert any(r["extra"].get("event") == "resolver.no_quorum" for r in warnings)


def test_unreachable_upstreams_are_servfail_ede_22_and_a_fault_until_they_answer(
    tree: Tree, servers: Callable[..., UpstreamServer]
) -> None:
    silent, failing = servers("udp"), servers("tcp")
    silent.behaviour, failing.behaviour = "silent", "servfail"
    registry = tree.start(config(silent, failing, upstream_quorum=1))  # both must fail
    result = registry.ask("resolver", Resolve(NAME))
    assert result["rcode"] == "SERVFAIL"
    assert result["ede"]["code"] == dns.edns.EDECode.NO_REACHABLE_AUTHORITY
    assert "answered SERVFAIL" in result["ede"]["text"]
    assert f"no answer in {TIMEOUT_S:g} s" in result["ede"]["text"]
    assert [f["resource"] for f in registry.lookup("resolver").health()["faults"]] == ["upstreams"]
    # back: the next question (another name: the failure above is cached a few seconds)
    silent.behaviour = failing.behaviour = "answer"
    other = "mail.example.org."
    silent.records[f"{other} AAAA"] = failing.records[f"{other} AAAA"] = ["2001:db8::25"]
    assert registry.ask("resolver", Resolve(other))["rcode"] == "NOERROR"
    assert registry.lookup("resolver").health()["faults"] == []
    cached = registry.ask("resolver", Resolve(NAME))
    assert cached["rcode"] == "SERVFAIL" and cached["ede"]["code"] == dns.edns.EDECode.CACHED_ERROR


def test_a_configured_quorum_of_one_takes_the_first_answer(
    tree: Tree, servers: Callable[..., UpstreamServer]
) -> None:
    slow = servers("udp")
    slow.behaviour = "silent"
    registry = tree.start(config(servers("tcp"), slow, upstream_quorum=1))
    assert addresses(ask_wire(registry, NAME)) == ["2001:db8::1"]


def test_doq_upstreams_vote_with_the_others_and_their_certificate_is_checked(
    tree: Tree, servers: Callable[..., UpstreamServer], tmp_path: Path
) -> None:
    certificate, key = self_signed(tmp_path)
    doq = DoqUpstreamServer(LIE, certificate, key)
    try:
        registry = tree.start(
            config(servers("udp"), servers("tcp"), doq), doq_verify=str(certificate)
        )
        assert addresses(ask_wire(registry, NAME)) == ["2001:db8::1"]
        wait_until(
            lambda: status(registry)["upstreams"][doq.url]["disagreements"] == 1,
            "the DoQ upstream's answer to be counted",
        )
        doq.records = dict(TRUTH)
        assert registry.ask("resolver", Resolve("mail.example.org."))["rcode"] == "NXDOMAIN"
        wait_until(lambda: len(doq.queries) == 2, "the second query over the same connection")
        assert status(registry)["upstreams"][doq.url]["failures"] == 0
        # a DoQ upstream named for TLS with a name its certificate does not hold fails
        wrong = config(servers("udp"), servers("tcp"))
        wrong = replace(wrong, upstreams=[*wrong.upstreams, f"{doq.url}#other.example.net"])
        registry = tree.start(wrong, doq_verify=str(certificate))
        assert ask_wire(registry, NAME).rcode() == dns.rcode.NOERROR  # the other two agree
        failing = f"{doq.url}#other.example.net"
        wait_until(
            lambda: status(registry)["upstreams"][failing]["failures"] == 1,
            "the TLS failure to be counted",
        )
        assert "other.example.net" in status(registry)["upstreams"][failing]["last_failure"]
    finally:
        doq.close()


# The cache -------------------------------------------------------------------------------


def test_repeats_come_from_the_cache_until_the_ttl_runs_out(
    tree: Tree, servers: Callable[..., UpstreamServer]
) -> None:
    clock = FakeClock()
    ups = [servers("udp", ttl=100), servers("tcp", ttl=100)]
    registry = tree.start(config(*ups), clock=clock)
    assert ask_wire(registry, NAME).answer[0].ttl == 100
    clock.advance(40)
    again = ask_wire(registry, NAME.upper())
    assert again.answer[0].ttl == 60 and addresses(again) == ["2001:db8::1"]
    assert all(len(u.queries) == 1 for u in ups)  # not asked again
    clock.advance(60)
    assert ask_wire(registry, NAME).answer[0].ttl == 100
    assert all(len(u.queries) == 2 for u in ups)
    s = status(registry)["cache"]
    assert (s["hits"], s["misses"]) == (1, 2)


def test_nxdomain_is_cached_for_the_soa_minimum(
    tree: Tree, servers: Callable[..., UpstreamServer]
) -> None:
    clock = FakeClock()
    ups = [servers("udp", negative_ttl=30), servers("tcp", negative_ttl=30)]
    registry = tree.start(config(*ups), clock=clock)
    gone = "gone.example.org."
    first = ask_wire(registry, gone)
    assert first.rcode() == dns.rcode.NXDOMAIN and first.authority[0].rdtype == dns.rdatatype.SOA
    clock.advance(29)
    assert ask_wire(registry, gone).rcode() == dns.rcode.NXDOMAIN
    assert all(len(u.queries) == 1 for u in ups)
    clock.advance(1)
    ask_wire(registry, gone)
    assert all(len(u.queries) == 2 for u in ups)


# Control messages --------------------------------------------------------------------------


def test_the_control_messages_as_the_socket_builds_them(
    tree: Tree, servers: Callable[..., UpstreamServer]
) -> None:
    registry = tree.start(config(servers("udp"), servers("tcp")))
    types = registry.actor_class("resolver").message_types()  # type: ignore[union-attr]
    assert set(types) == {"query", "resolve", "zone", "resolver_status", "add_challenge_txt",
                          "remove_challenge_txt", "list_challenge_txt",
                          "zone_answers_served"}  # fmt: skip
    with pytest.raises(InvalidRequest, match="in-process only"):  # the listeners' own report
        types["zone_answers_served"].from_args({"counts": {"NOERROR": 1}})
    resolve = types["resolve"].from_args({"name": "hypermesh.trust.example.com", "rdtype": "AAAA"})
    answer = to_jsonable(registry.ask("resolver", resolve))
    assert answer == {
        "name": "hypermesh.trust.example.com.", "type": "AAAA", "rcode": "NOERROR",
        "flags": ["QR", "AA", "RD", "RA"],
        "answer": ["hypermesh.trust.example.com. 300 IN AAAA 2001:db8::10"], "authority": [],
    }  # fmt: skip
    forwarded = registry.ask("resolver", types["resolve"].from_args({"name": NAME}))
    assert forwarded["answer"] == [f"{NAME} 300 IN AAAA 2001:db8::1"]
    nodata = registry.ask("resolver", Resolve("caesar.trust.example.com", "A"))
    assert nodata["answer"] == [] and nodata["authority"][0].startswith(
        "trust.example.com. 300 IN SOA"
    )
    zone = registry.ask("resolver", types["zone"].from_args({}))
    assert zone[0].startswith("trust.example.com. 300 IN SOA dns.trust.example.com. ")
    assert "caesar.trust.example.com. 300 IN AAAA 2001:db8::20" in zone
    s = to_jsonable(registry.ask("resolver", types["resolver_status"].from_args(None)))
    json.dumps(s)
    assert s["rcodes"] == {"NOERROR": 3} and s["sources"] == {"zone": 2, "upstreams": 1}
    assert s["zone"]["origin"] == "trust.example.com."
    assert types["zone"].query and types["resolver_status"].query and not types["resolve"].query


@pytest.mark.parametrize(("name", "rdtype"), [("bad..name", "AAAA"), ("ok.example.", "NOPE")])
def test_resolve_refuses_bad_arguments_with_a_typed_error(
    tree: Tree, name: str, rdtype: str
) -> None:
    registry = tree.start(ResolverConfig())
    with pytest.raises(InvalidRequest):
        registry.ask("resolver", Resolve(name, rdtype))
    assert registry.lookup("resolver").state is ActorState.RUNNING


def test_a_config_that_cannot_be_served_fails_the_start(tree: Tree) -> None:
    from trustchain.supervisors import ChildStartFailed

    with pytest.raises(ChildStartFailed, match="IPv4"):
        tree.start(ResolverConfig(records={"a": ["192.0.2.1"]}))
    with pytest.raises(ChildStartFailed, match="IPv6"):
        tree.start(ResolverConfig(upstreams=["udp://192.0.2.53:53"]))


# Assets (the detector's AssetRecords; with the real detector: tests/trust/test_zone_records.py)


@dataclass(frozen=True)
class SetRecords(Message):
    records: list[dict[str, Any]]


class AssetsPeer(SupervisedActor):
    """Answers the detector's ``AssetRecords`` with what the test sets: scores and
    malformed records the real detector would take weeks of history to show."""

    def __init__(self, context: ActorContext) -> None:
        super().__init__(context)
        self.records: list[dict[str, Any]] = []

    @handles(AssetRecords)
    def asset_records(self, msg: AssetRecords) -> list[dict[str, Any]]:
        return self.records

    @handles(SetRecords)
    def set_records(self, msg: SetRecords) -> None:
        self.records = msg.records


def record(n: int, name: str, address: str, score: float, quarantined: bool = False
           ) -> dict[str, Any]:  # fmt: skip
    return {"asset": f"{n:064x}", "name": name, "addresses": [address], "score": score,
            "quarantined": quarantined}  # fmt: skip


def test_assets_from_the_detector_are_served_trusted_first(tree: Tree) -> None:
    clock = FakeClock()
    peer = ChildSpec("detector", AssetsPeer.start)
    registry = tree.start(ResolverConfig(min_asset_trust=0.5), clock=clock,
                          detector="detector", extra=(peer,))  # fmt: skip
    registry.ask("detector", SetRecords([
        record(1, "web", "2001:db8:a::1", 0.6), record(2, "web", "2001:db8:a::2", 0.9),
        record(3, "web", "2001:db8:a::3", 0.2), record(4, "web", "2001:db8:a::4", 1.0, True),
        {"asset": "junk"},
    ]))  # fmt: skip
    serial = status(registry)["zone"]["serial"]
    clock.advance(ASSET_REFRESH_S)
    wait_until(lambda: status(registry)["zone"]["serial"] != serial, "the zone to take the assets")
    response = ask_wire(registry, "web.assets.trust.example.com.")
    assert addresses(response) == ["2001:db8:a::2", "2001:db8:a::1"]  # by score; 3, 4 left out
    s = status(registry)["assets"]
    assert s["source"] == "detector" and s["records"] == 4 and len(s["problems"]) == 1
    assert set(s["left_out"]) == {f"{3:064x}", f"{4:064x}"}
    assert "web.assets.trust.example.com. 300 IN AAAA 2001:db8:a::2" in registry.ask(
        "resolver", Zone()
    )
    # the same records again: the zone and its serial stay
    serial = status(registry)["zone"]["serial"]
    handled = registry.lookup("detector").handled
    clock.advance(ASSET_REFRESH_S)
    wait_until(lambda: registry.lookup("detector").handled > handled, "another refresh")
    wait_until(lambda: status(registry)["assets"]["refreshed_at"] == clock.time(), "it handled")
    assert status(registry)["zone"]["serial"] == serial


def test_no_detector_means_no_assets_and_no_harm(tree: Tree) -> None:
    registry = tree.start(ResolverConfig(), detector="detector")  # none in this tree
    wait_until(lambda: status(registry)["assets"]["refreshed_at"] is not None, "a refresh")
    assert status(registry)["assets"]["records"] == 0
    assert ask_wire(registry, "hypermesh.trust.example.com.").rcode() == dns.rcode.NOERROR


# Its place in the tree and its imports -----------------------------------------------------


def test_the_tree_has_a_resolver_unless_disabled() -> None:
    on = Config()  # on by default
    off = replace(on, resolver=replace(on.resolver, enabled=False))
    assert "resolver" not in [c.name for c in trustchain_children(off)]
    names = [c.name for c in trustchain_children(on)]
    assert names.index("issuer") < names.index("resolver")
    assert names[-2:] == ["resolver", "acme"]  # ACME asks the resolver nothing at start


def test_the_domain_modules_load_no_runtime() -> None:
    modules = ["zone", "upstream", "cache", "wire", "core", "messages"]
    code = (
        "import sys\n"
        + "".join(f"import trustchain.actors.resolver.{m}\n" for m in modules)
        + "print(sorted(m for m in ('pykka', 'trio', 'outcome', 'loguru') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
