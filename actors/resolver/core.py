"""The resolver's logic without threads or sockets: a query in, a response or
upstream requests out (sans-IO, in the manner of h11: the caller does the I/O).

``Resolver.query(wire, waiter, now)`` answers at once what it can -- a bad query
(``wire.parse_query``), a name in the zone (``zone.Zone``, authoritative: AA set),
a question in the cache -- and otherwise opens a round: one ``Send`` per upstream,
which the caller performs and whose outcomes it hands back one by one with
``answered(round, upstream, response or error text, now)``. The round's ``Ballot``
decides (``upstream.py``); the decision answers every waiter of the round (a second
asker of a question already in flight joins the round rather than asking the
upstreams again) and goes into the cache. If the caller's deadline for a round
passes first, ``expire(round, now)`` counts whoever is silent as failed.

Waiters are the caller's (the actor's deferred replies): they come back in
``Step.replies`` with the response message, never called here. Events worth a log
line (an upstream disagreeing with the accepted answer, a split with no quorum)
come back in ``Step.events``.

A CNAME in the zone whose target is outside it is chased through the upstreams
(``chase.py``): the answer is the CNAME and then the target's records, each step a
question like any other here (rounds, cache, disagreements), at most ``MAX_CHAIN``
CNAMEs and no loop (SERVFAIL with an EDE otherwise). A question outside the zone is
answered as the quorum answered it (its upstreams are recursive: they chase).

Without upstreams the resolver is the zone's server only: a name outside it is
REFUSED with EDE 20 (Not Authoritative), and a CNAME out of the zone is answered
alone (the client chases it). Rounds in flight are bounded
(``max_rounds``): past the bound a new question gets SERVFAIL with an EDE at once,
never an unbounded queue.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from trustchain.actors.resolver.cache import Cache, Key, key_of
from trustchain.actors.resolver.chase import Broken, Chain, dangling
from trustchain.actors.resolver.upstream import (
    ANSWER_RCODES,
    Accepted,
    Answer,
    Ballot,
    Failed,
    Upstream,
    quorum_of,
)
from trustchain.actors.resolver.wire import BadQuery, add_ede, parse_query, respond
from trustchain.actors.resolver.zone import Zone, owned_by

W = TypeVar("W")
MAX_ROUNDS = 1_024  # questions with upstream requests in flight
MAX_WAITERS = 4_096  # queries waiting on those questions, all rounds together


@dataclass(frozen=True)
class Send:
    """Ask ``upstream`` (``str(upstream)`` in ``answered``) the question of round ``round``."""

    round: int
    upstream: Upstream
    qname: dns.name.Name
    rdtype: dns.rdatatype.RdataType


@dataclass(frozen=True)
class Disagreement:
    """An upstream's answer differs from the one ``quorum`` upstreams agreed on."""

    upstream: str
    question: str
    accepted: str
    theirs: str


@dataclass(frozen=True)
class NoQuorum:
    """Upstreams answered, but no answer had a quorum."""

    question: str
    text: str


@dataclass
class Step(Generic[W]):
    replies: list[tuple[W, dns.message.Message]] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    events: list[Disagreement | NoQuorum] = field(default_factory=list)


@dataclass(frozen=True)
class _Pending(Generic[W]):
    """A query waiting on a round: its own question (``chain`` None) or a step of a
    CNAME chain it is following (``chain``: its answer so far)."""

    waiter: W
    query: dns.message.Message
    chain: Chain | None = None


@dataclass
class _Round(Generic[W]):
    key: Key
    qname: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    ballot: Ballot
    waiters: list[_Pending[W]]

    @property
    def question(self) -> str:
        return f"{self.qname} {dns.rdatatype.to_text(self.rdtype)}"


@dataclass
class UpstreamStats:
    answers: int = 0
    failures: int = 0
    disagreements: int = 0
    last_failure: str | None = None


class Resolver(Generic[W]):
    def __init__(
        self,
        zone: Zone,
        upstreams: Sequence[Upstream],
        quorum: int = 0,
        cache_entries: int = 10_000,
        *,
        max_rounds: int = MAX_ROUNDS,
        max_waiters: int = MAX_WAITERS,
    ) -> None:
        self.zone = zone
        self.upstreams = tuple(upstreams)
        names = [str(u) for u in self.upstreams]
        if len(set(names)) != len(names):
            raise ValueError("an upstream is listed twice (it would vote twice)")
        self.quorum = quorum_of(len(self.upstreams), quorum)
        self.cache = Cache(cache_entries)
        self.max_rounds = max_rounds
        self.max_waiters = max_waiters
        self._rounds: dict[int, _Round[W]] = {}
        self._open: dict[Key, int] = {}  # question -> its undecided round
        self._ids = itertools.count(1)
        self.rcodes: Counter[str] = Counter()
        # zone, zone_memo (a listener's memory), cache, upstreams, refused, invalid
        self.sources: Counter[str] = Counter()
        self.stats = {str(u): UpstreamStats() for u in self.upstreams}
        self.disagreements = 0
        self.no_quorum = 0
        self.unreachable = 0
        self.upstreams_down: str | None = None  # why, while no upstream answers at all

    # Queries --------------------------------------------------------------------------

    def query(self, wire: bytes, waiter: W, now: float) -> Step[W]:
        step: Step[W] = Step()
        parsed = parse_query(wire)
        if isinstance(parsed, BadQuery):
            self._reply(step, waiter, parsed.response, "invalid")
            return step
        question = parsed.question[0]
        qname, rdtype = question.name, question.rdtype
        found = self.zone.lookup(qname, rdtype)
        if found is not None and found.target is not None and self.upstreams:
            pending: _Pending[W] = _Pending(waiter, parsed)
            chain = Chain(qname).extend(found.answer)
            if isinstance(chain, Broken):  # the zone's own chain is longer than the bound
                self._broken(step, pending, chain)
            else:
                self._chase(step, _Pending(waiter, parsed, chain), found.target, now)
            return step
        if found is not None:
            response = respond(parsed, found.rcode, recursion=bool(self.upstreams))
            response.flags |= dns.flags.AA
            response.answer = list(found.answer)
            response.authority = list(found.authority)
            self._reply(step, waiter, response, "zone")
            return step
        if not self.upstreams:
            response = respond(parsed, dns.rcode.REFUSED)
            add_ede(
                response,
                dns.edns.EDECode.NOT_AUTHORITATIVE,
                f"{qname} is outside {self.zone.origin} and no upstreams are configured",
            )
            self._reply(step, waiter, response, "refused")
            return step
        self._ask(step, _Pending(waiter, parsed), qname, now)
        return step

    def _ask(self, step: Step[W], pending: _Pending[W], qname: dns.name.Name, now: float) -> None:
        """Ask the upstreams ``qname`` (of the query's type) for ``pending``: from the
        cache, by joining the round in flight for it, or in a new round."""
        rdtype = pending.query.question[0].rdtype
        key = key_of(qname, rdtype)
        cached = self.cache.get(key, now)
        if cached is not None:
            self._answer(step, pending, cached, now, cached=True)
            return
        waiting = sum(len(r.waiters) for r in self._rounds.values())
        round_id = self._open.get(key)
        full = round_id is None and len(self._rounds) >= self.max_rounds
        if full or waiting >= self.max_waiters:
            response = respond(pending.query, dns.rcode.SERVFAIL, recursion=True)
            add_ede(
                response,
                dns.edns.EDECode.OTHER,
                f"too many questions in flight ({len(self._rounds)}); try again",
            )
            self._reply(step, pending.waiter, response, "busy")
            return
        if round_id is None:
            round_id = next(self._ids)
            names = tuple(str(u) for u in self.upstreams)
            self._rounds[round_id] = _Round(key, qname, rdtype, Ballot(names, self.quorum), [])
            self._open[key] = round_id
            step.sends.extend(Send(round_id, u, qname, rdtype) for u in self.upstreams)
        self._rounds[round_id].waiters.append(pending)

    # Chasing CNAMEs out of the zone -------------------------------------------------------

    def _chase(
        self, step: Step[W], pending: _Pending[W], target: dns.name.Name, now: float
    ) -> None:
        """Follow ``pending``'s chain on to ``target``: in the zone at once (and on while
        it leads out again), else through the upstreams (``_answer`` goes on)."""
        rdtype = pending.query.question[0].rdtype
        chain = pending.chain
        assert chain is not None
        while True:
            found = self.zone.lookup(target, rdtype)
            if found is None:
                self._ask(step, _Pending(pending.waiter, pending.query, chain), target, now)
                return
            extended = chain.extend(found.answer)
            if isinstance(extended, Broken):
                self._broken(step, pending, extended)
                return
            chain = extended
            if found.target is None:
                self._chased(step, pending, chain, found.rcode, found.authority)
                return
            target = found.target

    def _answer(
        self,
        step: Step[W],
        pending: _Pending[W],
        value: Answer | Failed,
        now: float,
        cached: bool = False,
    ) -> None:
        """The upstreams' answer (or failure) to the question ``pending`` asked."""
        if pending.chain is None:
            source = "cache" if cached else "upstreams"
            self._reply(step, pending.waiter, self._forwarded(pending.query, value, cached), source)
            return
        if isinstance(value, Failed):
            response = self._forwarded(pending.query, value, cached)
            self._reply(step, pending.waiter, response, "chased")
            return
        chain = pending.chain.extend(value.answer)
        if isinstance(chain, Broken):
            self._broken(step, pending, chain)
            return
        target = dangling(value.answer)
        if target is not None and value.rcode == dns.rcode.NOERROR and not value.authority:
            # a CNAME its upstreams did not follow (nor said its target has no data)
            self._chase(step, _Pending(pending.waiter, pending.query, chain), target, now)
            return
        self._chased(step, pending, chain, value.rcode, value.authority)

    def _chased(
        self,
        step: Step[W],
        pending: _Pending[W],
        chain: Chain,
        rcode: dns.rcode.Rcode,
        authority: Sequence[dns.rrset.RRset],
    ) -> None:
        response = respond(pending.query, rcode, recursion=True)  # not AA: upstreams' data
        response.answer = list(chain.answer)
        response.authority = list(authority)
        self._reply(step, pending.waiter, response, "chased")

    def _broken(self, step: Step[W], pending: _Pending[W], broken: Broken) -> None:
        response = respond(pending.query, dns.rcode.SERVFAIL, recursion=True)
        add_ede(response, dns.edns.EDECode.OTHER, broken.text)
        self._reply(step, pending.waiter, response, "chased")

    def answered(
        self, round_id: int, upstream: str, result: dns.message.Message | str, now: float
    ) -> Step[W]:
        """One upstream's response to round ``round_id`` (or why there is none)."""
        step: Step[W] = Step()
        round_ = self._rounds.get(round_id)
        stats = self.stats.get(upstream)
        if round_ is None or stats is None:
            return step  # expired before, or not ours
        if isinstance(result, dns.message.Message) and result.rcode() not in ANSWER_RCODES:
            result = f"answered {dns.rcode.to_text(result.rcode())}"
        if isinstance(result, str):
            stats.failures += 1
            stats.last_failure = result
            vote: Answer | str = result
        else:
            stats.answers += 1
            self.upstreams_down = None
            vote = Answer.of(round_.qname, round_.rdtype, result)
        decided_before = round_.ballot.verdict is not None
        for disagreeing in round_.ballot.add(upstream, vote):
            self._disagreed(step, round_, disagreeing)
        if not decided_before and round_.ballot.verdict is not None:
            self._decided(step, round_id, round_, now)
        if round_.ballot.complete:
            del self._rounds[round_id]
        return step

    def expire(self, round_id: int, now: float) -> Step[W]:
        """The caller's deadline for round ``round_id`` passed: decide with what came."""
        step: Step[W] = Step()
        round_ = self._rounds.pop(round_id, None)
        if round_ is None:
            return step
        if round_.ballot.verdict is None:
            round_.ballot.expire()
            self._decided(step, round_id, round_, now)
        return step

    # Deciding ---------------------------------------------------------------------------

    def _decided(self, step: Step[W], round_id: int, round_: _Round[W], now: float) -> None:
        verdict = round_.ballot.verdict
        assert verdict is not None
        if self._open.get(round_.key) == round_id:
            del self._open[round_.key]
        if isinstance(verdict, Failed):
            if verdict.split:
                self.no_quorum += 1
                step.events.append(NoQuorum(round_.question, verdict.text))
            else:
                self.unreachable += 1
                if not round_.ballot.answers:
                    self.upstreams_down = verdict.text
        self.cache.put(
            round_.key, verdict.answer if isinstance(verdict, Accepted) else verdict, now
        )
        value = verdict.answer if isinstance(verdict, Accepted) else verdict
        waiters, round_.waiters = round_.waiters, []
        for pending in waiters:
            self._answer(step, pending, value, now)

    def _disagreed(self, step: Step[W], round_: _Round[W], upstream: str) -> None:
        verdict = round_.ballot.verdict
        assert isinstance(verdict, Accepted)
        self.disagreements += 1
        self.stats[upstream].disagreements += 1
        theirs = round_.ballot.answers[upstream].summary()
        step.events.append(
            Disagreement(upstream, round_.question, verdict.answer.summary(), theirs)
        )

    def _forwarded(
        self, query: dns.message.Message, value: Answer | Failed, cached: bool = False
    ) -> dns.message.Message:
        if isinstance(value, Failed):
            response = respond(query, dns.rcode.SERVFAIL, recursion=True)
            if cached:
                add_ede(response, dns.edns.EDECode.CACHED_ERROR, f"cached failure: {value.text}")
            else:
                add_ede(response, value.ede, value.text)
            return response
        response = respond(query, value.rcode, recursion=True)
        qname = query.question[0].name
        response.answer = [owned_by(r, qname) if r.name == qname else r for r in value.answer]
        response.authority = list(value.authority)
        return response

    def _reply(self, step: Step[W], waiter: W, response: dns.message.Message, source: str) -> None:
        self.count(dns.rcode.to_text(response.rcode()), source)
        step.replies.append((waiter, response))

    def count(self, rcode: str, source: str, n: int = 1) -> None:
        """``n`` responses given (also ones the caller gave from its own memory of them)."""
        self.rcodes[rcode] += n
        self.sources[source] += n

    # Reading ----------------------------------------------------------------------------

    def in_flight(self) -> int:
        return len(self._rounds)

    def status(self) -> dict[str, Any]:
        return {
            "queries": sum(self.rcodes.values()),
            "rcodes": dict(self.rcodes),
            "sources": dict(self.sources),
            "cache": {
                "hits": self.cache.hits,
                "misses": self.cache.misses,
                "entries": len(self.cache),
                "capacity": self.cache.capacity,
                "evicted": self.cache.evicted,
            },
            "upstreams": {u: vars(s).copy() for u, s in self.stats.items()},
            "quorum": self.quorum,
            "disagreements": self.disagreements,
            "no_quorum": self.no_quorum,
            "unreachable": self.unreachable,
            "in_flight": self.in_flight(),
        }
