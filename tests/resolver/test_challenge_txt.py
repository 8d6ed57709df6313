"""ACME dns-01 TXT records in the zone (RFC 8555 §8.4): which names and values may be
published (``challenges.py``), how the zone answers them (``zone.py``, no threads), the
SQLite file that keeps them, and ResolverActor's ``AddChallengeTxt`` /
``RemoveChallengeTxt`` / ``ListChallengeTxt`` on a real file: answered over ``Query``
and ``Resolve``, kept across a restart, expired on an injected clock, bad input
refused with typed errors, and a full disk (a real tmpfs) answered at once with
``challenge_store_unavailable`` until space is back."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import dns.message
import dns.name
import dns.rcode
import pytest

from trustchain.actors.resolver import Query, Resolve, Zone
from trustchain.actors.resolver.challenges import (
    CHALLENGE_LIFETIME_S,
    MAX_VALUES_PER_NAME,
    ChallengeStore,
    ChallengeTxt,
    challenge_name,
    challenge_value,
)
from trustchain.actors.resolver.messages import (
    AddChallengeTxt,
    ChallengeStoreUnavailable,
    ChallengeTxtInvalid,
    ChallengeTxtLimit,
    ListChallengeTxt,
    RemoveChallengeTxt,
)
from trustchain.actors.resolver.zone import CHALLENGE_TTL_S
from trustchain.actors.resolver.zone import Zone as ZoneData
from trustchain.config.schema import ResolverConfig
from trustchain.supervisors import ActorState, FakeClock, Registry

from ..actors.test_faults import fill, mounted_tmpfs
from ..conftest import wait_until
from .test_resolver_actor import Tree, tree  # noqa: F401 (fixture)

ORIGIN = dns.name.from_text("trust.example.com")
NAME = "_acme-challenge.www.trust.example.com."
TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
OTHER = "gO0FAX1Fi-4nrvmDXmmI0RQTxmdnOz2XsBeOyy1VH0E"


def ask(registry: Registry, name: str, rdtype: str = "TXT") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0)
    wire = registry.ask("resolver", Query(query.to_wire()))
    assert isinstance(wire, bytes)
    return dns.message.from_wire(wire)


def txt(response: dns.message.Message) -> list[str]:
    return sorted(b"".join(r.strings).decode() for rrset in response.answer for r in rrset)


# What may be published ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [NAME, NAME.rstrip("."), "_ACME-Challenge.WWW.trust.example.com",
     "_acme-challenge.trust.example.com", "_acme-challenge.a.b.assets.trust.example.com."],
)  # fmt: skip
def test_challenge_names_are_acme_challenge_and_a_name_in_the_zone(text: str) -> None:
    name = challenge_name(text, ORIGIN)
    assert name.is_absolute() and name.labels[0] == b"_acme-challenge"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("www.trust.example.com", "does not start with _acme-challenge"),
        ("_acme-challenge", "not in the zone"),  # nothing after it
        ("_acme-challenge.www.example.org", "not in the zone"),
        ("_acme-challenge.trust.example.com.evil.org", "not in the zone"),
        ("_acme-challenge._acme-challenge", "not in the zone"),  # a name with a dot: absolute
        ("_acme-challenge..trust.example.com", "not a DNS name"),
        ("_acme-challenge." + "a" * 64 + ".trust.example.com", "not a DNS name"),
    ],
)
def test_other_names_are_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(ChallengeTxtInvalid, match=why):
        challenge_name(text, ORIGIN)


@pytest.mark.parametrize(
    ("value", "why"),
    [("", "empty"), ("a" * 256, "at most 255"), ("tab\there", "printable ASCII"),
     ("caf\u00e9", "printable ASCII"), ("nul\x00", "printable ASCII")],
)  # fmt: skip
def test_values_are_1_to_255_printable_ascii_octets(value: str, why: str) -> None:
    assert challenge_value(TOKEN) == TOKEN and challenge_value("a" * 255) == "a" * 255
    assert challenge_value('with "quotes" and \\') == 'with "quotes" and \\'
    with pytest.raises(ChallengeTxtInvalid, match=why):
        challenge_value(value)


# The zone's answers --------------------------------------------------------------------------


def zone(challenges: dict[str, list[str]], **kw: Any) -> ZoneData:
    named = {dns.name.from_text(n): v for n, v in challenges.items()}
    return ZoneData("trust.example.com", 300, {"www": ["2001:db8::80"]}, challenges=named, **kw)


def test_the_zone_answers_challenge_txt_with_a_short_ttl_and_is_consistent_around_it() -> None:
    z = zone({NAME: [TOKEN, OTHER, 'a "quoted" \\ value']})
    found = z.lookup(dns.name.from_text(NAME), dns.rdatatype.TXT)
    assert found is not None and found.rcode == dns.rcode.NOERROR
    (rrset,) = found.answer
    assert rrset.ttl == CHALLENGE_TTL_S
    assert sorted(b"".join(r.strings).decode() for r in rrset) == sorted(
        [TOKEN, OTHER, 'a "quoted" \\ value']
    )
    nodata = z.lookup(dns.name.from_text(NAME), dns.rdatatype.AAAA)
    assert nodata is not None and nodata.rcode == dns.rcode.NOERROR and nodata.answer == ()
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    missing = z.lookup(dns.name.from_text("_acme-challenge.mail.trust.example.com"), 16)
    assert missing is not None and missing.rcode == dns.rcode.NXDOMAIN
    assert f'{NAME} 60 IN TXT "{TOKEN}"' in z.to_text()


def test_a_challenge_under_a_new_name_makes_an_empty_non_terminal() -> None:
    z = zone({"_acme-challenge.new.trust.example.com.": [TOKEN]})
    ent = z.lookup(dns.name.from_text("new.trust.example.com"), dns.rdatatype.AAAA)
    assert ent is not None and ent.rcode == dns.rcode.NOERROR and ent.answer == ()


def test_the_challenge_ttl_is_never_more_than_the_zones() -> None:
    z = ZoneData("trust.example.com", 30, {}, challenges={dns.name.from_text(NAME): [TOKEN]})
    found = z.lookup(dns.name.from_text(NAME), dns.rdatatype.TXT)
    assert found is not None and found.answer[0].ttl == 30


def test_a_challenge_at_a_configured_cname_is_skipped() -> None:
    z = zone({NAME: [TOKEN]}, cnames={"_acme-challenge.www": "acme.example.org."})
    found = z.lookup(dns.name.from_text(NAME), dns.rdatatype.TXT)
    assert found is not None and [r.rdtype for r in found.answer] == [dns.rdatatype.CNAME]
    assert any("CNAME" in why for why in z.skipped)


# The file -----------------------------------------------------------------------------------


def test_the_store_keeps_what_it_acknowledged_and_drops_the_expired(tmp_path: Path) -> None:
    path = tmp_path / "resolver" / "challenges.sqlite3"
    store = ChallengeStore(path)
    assert store.load(100.0) == [] and not path.exists()  # nothing written until used
    name = dns.name.from_text(NAME)
    store.add(ChallengeTxt(name, TOKEN, 200.0))
    store.add(ChallengeTxt(name, OTHER, 300.0))
    store.close()
    again = ChallengeStore(path)
    assert [c.value for c in again.load(100.0)] == [TOKEN, OTHER]
    assert [c.value for c in again.load(250.0)] == [OTHER]  # TOKEN expired
    again.remove(name, OTHER)
    again.purge(250.0)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM challenges").fetchone() == (0,)
    again.close()


# The actor, on a real file ------------------------------------------------------------------


def resolver_config(directory: Path, **kw: Any) -> ResolverConfig:
    return ResolverConfig(challenge_db=directory / "challenges.sqlite3", **kw)


def test_published_records_are_answered_listed_and_removed(tree: Tree, tmp_path: Path) -> None:  # noqa: F811
    registry = tree.start(resolver_config(tmp_path))
    assert ask(registry, NAME).rcode() == dns.rcode.NXDOMAIN
    added = registry.ask("resolver", AddChallengeTxt(NAME.rstrip("."), TOKEN))
    assert added["name"] == NAME and added["value"] == TOKEN
    with sqlite3.connect(tmp_path / "challenges.sqlite3") as db:  # on disk when acknowledged
        assert db.execute("SELECT value FROM challenges").fetchall() == [(TOKEN,)]
    registry.ask("resolver", AddChallengeTxt(NAME.upper(), OTHER))  # names: any case
    response = ask(registry, NAME)
    assert response.rcode() == dns.rcode.NOERROR and txt(response) == sorted([TOKEN, OTHER])
    assert response.answer[0].ttl == CHALLENGE_TTL_S
    assert sorted(registry.ask("resolver", Resolve(NAME, "TXT"))["answer"]) == sorted(
        [f'{NAME} 60 IN TXT "{TOKEN}"', f'{NAME} 60 IN TXT "{OTHER}"']
    )
    listed = registry.ask("resolver", ListChallengeTxt())
    assert [(c["name"], c["value"]) for c in listed] == [(NAME, TOKEN), (NAME, OTHER)]
    assert f'{NAME} 60 IN TXT "{TOKEN}"' in registry.ask("resolver", Zone())
    removed = registry.ask("resolver", RemoveChallengeTxt(NAME, TOKEN))
    assert removed["removed"] is True and txt(ask(registry, NAME)) == [OTHER]
    again = registry.ask("resolver", RemoveChallengeTxt(NAME, TOKEN))  # gone already: fine
    assert again["removed"] is False
    registry.ask("resolver", RemoveChallengeTxt(NAME, OTHER))
    empty = ask(registry, NAME)  # the name is gone with its last value
    assert empty.rcode() == dns.rcode.NXDOMAIN and empty.answer == []


def test_a_restart_keeps_the_records(tree: Tree, tmp_path: Path) -> None:  # noqa: F811
    config = resolver_config(tmp_path)
    first = tree.start(config)
    first.ask("resolver", AddChallengeTxt(NAME, TOKEN))
    tree.roots.pop().stop(block=True, timeout=10)
    second = tree.start(config)
    assert txt(ask(second, NAME)) == [TOKEN]
    assert [c["value"] for c in second.ask("resolver", ListChallengeTxt())] == [TOKEN]


def test_records_expire_an_hour_after_their_addition(tree: Tree, tmp_path: Path) -> None:  # noqa: F811
    clock = FakeClock()
    registry = tree.start(resolver_config(tmp_path), clock=clock)
    registry.ask("resolver", AddChallengeTxt(NAME, TOKEN))
    clock.advance(CHALLENGE_LIFETIME_S / 2)
    registry.ask("resolver", AddChallengeTxt(NAME, OTHER))
    registry.ask("resolver", AddChallengeTxt(NAME, TOKEN))  # added again: renewed
    clock.advance(CHALLENGE_LIFETIME_S - 1)
    assert txt(ask(registry, NAME)) == sorted([TOKEN, OTHER])
    registry.ask("resolver", AddChallengeTxt("_acme-challenge.later.trust.example.com", OTHER))
    clock.advance(1)  # the first two expire now
    assert ask(registry, NAME).rcode() == dns.rcode.NXDOMAIN  # after the sweep (same lane)
    listed = registry.ask("resolver", ListChallengeTxt())
    assert [c["name"] for c in listed] == ["_acme-challenge.later.trust.example.com."]
    with sqlite3.connect(tmp_path / "challenges.sqlite3") as db:  # gone from disk too
        assert db.execute("SELECT count(*) FROM challenges").fetchone() == (1,)
    clock.advance(CHALLENGE_LIFETIME_S)
    assert registry.ask("resolver", ListChallengeTxt()) == []
    tree.roots.pop().stop(block=True, timeout=10)
    assert tree.start(resolver_config(tmp_path), clock=clock).ask(
        "resolver", ListChallengeTxt()
    ) == []  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "error", "why"),
    [
        ("www.trust.example.com", TOKEN, ChallengeTxtInvalid, "_acme-challenge"),
        ("_acme-challenge.www.example.org", TOKEN, ChallengeTxtInvalid, "not in the zone"),
        (NAME, "", ChallengeTxtInvalid, "empty"),
        (NAME, "x" * 300, ChallengeTxtInvalid, "at most 255"),
        ("_acme-challenge.cdn.trust.example.com", TOKEN, ChallengeTxtInvalid, "is a CNAME"),
    ],
)
def test_bad_names_and_values_are_refused_with_typed_errors(
    tree: Tree,  # noqa: F811
    tmp_path: Path,
    name: str,
    value: str,
    error: type[Exception],
    why: str,
) -> None:
    config = resolver_config(tmp_path, cnames={"_acme-challenge.cdn": "acme.example.org."})
    registry = tree.start(config)
    with pytest.raises(error, match=why):
        registry.ask("resolver", AddChallengeTxt(name, value))
    with pytest.raises(error, match=why):
        registry.ask("resolver", RemoveChallengeTxt(name, value))
    assert registry.lookup("resolver").state is ActorState.RUNNING
    assert not (tmp_path / "challenges.sqlite3").exists()


def test_values_per_name_are_bounded(tree: Tree, tmp_path: Path) -> None:  # noqa: F811
    registry = tree.start(resolver_config(tmp_path))
    for i in range(MAX_VALUES_PER_NAME):
        registry.ask("resolver", AddChallengeTxt(NAME, f"value-{i}"))
    registry.ask("resolver", AddChallengeTxt(NAME, "value-0"))  # renewing one is not more
    with pytest.raises(ChallengeTxtLimit, match=f"at most {MAX_VALUES_PER_NAME}"):
        registry.ask("resolver", AddChallengeTxt(NAME, "one-too-many"))
    registry.ask("resolver", AddChallengeTxt("_acme-challenge.trust.example.com", "elsewhere"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    yield from mounted_tmpfs(tmp_path / "small")


def test_a_full_disk_is_refused_at_once_shown_and_retried_until_space_is_back(
    tree: Tree,  # noqa: F811
    small_disk: Path,
) -> None:
    registry = tree.start(ResolverConfig(challenge_db=small_disk / "challenges.sqlite3"))
    registry.ask("resolver", AddChallengeTxt(NAME, TOKEN))
    filler = fill(small_disk)
    with pytest.raises(ChallengeStoreUnavailable, match="cannot be written"):
        for i in range(200):  # SQLite may find room in a page it has; not for long
            registry.ask("resolver", AddChallengeTxt(f"_acme-challenge.n{i}.{ORIGIN}", "x" * 255))
    actor = registry.lookup("resolver")
    assert [f["resource"] for f in actor.health()["faults"]] == ["challenge_db"]
    assert actor.state is ActorState.RUNNING
    assert txt(ask(registry, NAME)) == [TOKEN]  # the zone is served throughout
    filler.unlink()
    wait_until(lambda: actor.health()["faults"] == [], "the probe to clear the fault")
    registry.ask("resolver", AddChallengeTxt(NAME, OTHER))
    assert txt(ask(registry, NAME)) == sorted([TOKEN, OTHER])
