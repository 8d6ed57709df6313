"""Upstream resolvers and the quorum over their answers (sans-IO).

Theory. A forwarder that believes one upstream believes whoever controls (or
spoofs) that upstream. Here every question outside the zone goes to all the
configured upstreams at once, and an answer is accepted only when at least q of
them return the same one (``[resolver] upstream_quorum``; 0 means a majority,
n // 2 + 1): with n upstreams of which at most n - q lie or fail, a lie needs q
liars to be believed, and q honest ones are enough to be answered.

"The same answer" is the rcode and the answer section compared as RRsets --
owner, class, type and the set of rdatas -- never as packet bytes: IDs, TTLs,
record order, name case and compression differ between honest upstreams. Before
comparing, each response is reduced to what a resolver may use of it
(``Answer.of``): the RRsets of the answer section on the chain from the question's
name through its CNAMEs, and for a negative answer the SOA of a zone that encloses
the name (for the negative TTL, RFC 2308). Everything else (additional records,
out-of-bailiwick data) is dropped: it is where cache poisoning hides.

A response counts as an answer when its rcode is NOERROR or NXDOMAIN; SERVFAIL,
REFUSED, a timeout or a network error count as that upstream failing. A ``Ballot``
decides as soon as it can: ``Accepted`` once q answers agree, ``Failed`` once no
answer can reach q any more (counting the upstreams still to answer). An upstream
whose answer differs from the accepted one disagrees, whenever its answer arrives.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

SCHEMES = {"doq": 853, "udp": 53, "tcp": 53}
_URL = re.compile(
    r"(?P<scheme>[a-z]+)://\[(?P<address>[0-9A-Fa-f:.]+)\](?::(?P<port>[0-9]{1,5}))?/?"
    r"(?:#(?P<name>[A-Za-z0-9][A-Za-z0-9.-]{0,252}))?"
)
MAX_NEGATIVE_TTL_S = 10_800  # RFC 2308 §5: 1 to 3 hours
MAX_TTL_S = 86_400
ANSWER_RCODES = (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)


@dataclass(frozen=True)
class Upstream:
    """One upstream resolver: ``doq://[2001:db8::53]:853``, ``udp://[::1]:5353``...

    A DoQ upstream's certificate must be valid for its address (an IP SAN), or for
    the name given after a ``#`` (``doq://[2001:db8::53]:853#dns.example.net``)."""

    scheme: str
    address: str
    port: int
    tls_name: str | None = None

    @classmethod
    def parse(cls, url: str) -> Upstream:
        """``ValueError`` unless ``url`` is scheme://[IPv6]:port with a known scheme."""
        match = _URL.fullmatch(url.strip())
        if match is None:
            raise ValueError(
                f"upstream {url!r} is not scheme://[IPv6 address]:port "
                f"(scheme one of {', '.join(SCHEMES)})"
            )
        scheme = match["scheme"]
        if scheme not in SCHEMES:
            raise ValueError(f"upstream {url!r}: scheme must be one of {', '.join(SCHEMES)}")
        try:
            address = ipaddress.IPv6Address(match["address"])
        except ValueError:
            raise ValueError(
                f"upstream {url!r}: {match['address']!r} is not an IPv6 address"
            ) from None
        if address.ipv4_mapped is not None:
            raise ValueError(f"upstream {url!r}: an IPv4-mapped address; upstreams are IPv6 only")
        port = int(match["port"]) if match["port"] else SCHEMES[scheme]
        if not 1 <= port <= 65_535:
            raise ValueError(f"upstream {url!r}: port {port} is out of range")
        if match["name"] and scheme != "doq":
            raise ValueError(f"upstream {url!r}: a #name (for TLS) is for doq:// only")
        return cls(scheme, str(address), port, match["name"])

    def __str__(self) -> str:
        name = f"#{self.tls_name}" if self.tls_name else ""
        return f"{self.scheme}://[{self.address}]:{self.port}{name}"


def quorum_of(upstreams: int, configured: int) -> int:
    """Matching answers needed: ``configured``, or a majority when it is 0.
    ``ValueError`` when no answer could ever be accepted."""
    needed = configured or upstreams // 2 + 1
    if upstreams and needed > upstreams:
        raise ValueError(f"upstream_quorum {configured} is more than the {upstreams} upstreams")
    return needed


RRsetKey = tuple[dns.name.Name, int, int, frozenset[object]]


@dataclass(frozen=True)
class Answer:
    """What a resolver may keep of one upstream response to one question."""

    rcode: dns.rcode.Rcode
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()  # the SOA of a negative answer, if any
    negative: bool = False  # NXDOMAIN, or no RRset of the type asked (NODATA)

    @classmethod
    def of(cls, qname: dns.name.Name, rdtype: int, response: dns.message.Message) -> Answer:
        """The usable part of ``response`` (see the module's theory)."""
        kept: list[dns.rrset.RRset] = []
        name, seen, found = qname, {qname}, False
        for _ in range(len(response.answer) + 1):  # at most one step per RRset
            if rdtype == dns.rdatatype.ANY:
                owned = [
                    r for r in response.answer if r.name == name and r.rdclass == dns.rdataclass.IN
                ]
                kept.extend(owned)
                found = bool(owned)
                break
            match = _find(response.answer, name, rdtype)
            if match is not None:
                kept.append(match)
                found = True
                break
            cname = _find(response.answer, name, dns.rdatatype.CNAME)
            if cname is None:
                break
            kept.append(cname)
            name = next(iter(cname)).target
            if name in seen:
                break  # a loop in the upstream's answer; what came so far stands
            seen.add(name)
        negative = response.rcode() != dns.rcode.NOERROR or not found
        authority: tuple[dns.rrset.RRset, ...] = ()
        if negative:
            soa = [
                r
                for r in response.authority
                if r.rdtype == dns.rdatatype.SOA and name.is_subdomain(r.name) and len(r) == 1
            ]
            authority = tuple(soa[:1])
        return cls(response.rcode(), tuple(kept), authority, negative)

    def key(self) -> tuple[int, frozenset[RRsetKey]]:
        """What two upstreams must share to agree: the rcode and the answer RRsets."""
        return self.rcode, frozenset(
            (r.name.canonicalize(), r.rdclass, r.rdtype, frozenset(r)) for r in self.answer
        )

    def ttl(self) -> int | None:
        """Seconds this answer may be cached: the smallest TTL of its answer; for a
        negative answer the SOA's TTL or MINIMUM, whichever is less (RFC 2308 §5);
        ``None`` for a negative answer without SOA (never cached)."""
        if not self.negative:
            return min(min(r.ttl for r in self.answer), MAX_TTL_S)
        if not self.authority:
            return None
        soa = self.authority[0]
        minimum = next(iter(soa)).minimum
        ttls = [soa.ttl, minimum, MAX_NEGATIVE_TTL_S, *(r.ttl for r in self.answer)]
        return int(min(ttls))

    def aged(self, ttl: int) -> Answer:
        """The answer with every TTL at most ``ttl`` (a cached answer's remaining life)."""
        answer, authority = _capped(self.answer, ttl), _capped(self.authority, ttl)
        return Answer(self.rcode, answer, authority, self.negative)

    def summary(self) -> str:
        """One line, for logs: the rcode and the answer's rdatas."""
        parts = [
            f"{r.name} {dns.rdatatype.to_text(r.rdtype)} {','.join(sorted(d.to_text() for d in r))}"
            for r in self.answer
        ]
        return f"{dns.rcode.to_text(self.rcode)}" + (f" [{'; '.join(parts)}]" if parts else "")


def _find(
    section: Sequence[dns.rrset.RRset], name: dns.name.Name, rdtype: int
) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.name == name and rrset.rdtype == rdtype and rrset.rdclass == dns.rdataclass.IN:
            return rrset
    return None


def _capped(rrsets: Iterable[dns.rrset.RRset], ttl: int) -> tuple[dns.rrset.RRset, ...]:
    out = []
    for rrset in rrsets:
        copy = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
        copy.update(rrset)
        copy.ttl = max(0, min(rrset.ttl, ttl))
        out.append(copy)
    return tuple(out)


# Verdicts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    answer: Answer
    agreeing: tuple[str, ...]


@dataclass(frozen=True)
class Failed:
    """No quorum: why, as an Extended DNS Error (RFC 8914)."""

    ede: dns.edns.EDECode
    text: str
    split: bool  # answers were there, but they disagreed


@dataclass
class Ballot:
    """One question put to every upstream; answers come in one by one."""

    upstreams: tuple[str, ...]
    quorum: int
    answers: dict[str, Answer] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    verdict: Accepted | Failed | None = None

    def add(self, upstream: str, result: Answer | str) -> list[str]:
        """Record one upstream's answer (or why it failed); the upstreams found
        disagreeing with the accepted answer by this step (those that answered before
        the acceptance, or this one after it)."""
        if upstream not in self.upstreams or upstream in self.answers or upstream in self.failures:
            return []  # not asked, or a second answer: the first one counts
        if isinstance(result, str):
            self.failures[upstream] = result
        else:
            self.answers[upstream] = result
        if self.verdict is None:
            self.verdict = self._decide()
            if isinstance(self.verdict, Accepted):
                return self.disagreeing()
            return []
        if isinstance(self.verdict, Accepted) and isinstance(result, Answer):
            return [upstream] if result.key() != self.verdict.answer.key() else []
        return []

    @property
    def complete(self) -> bool:
        return len(self.answers) + len(self.failures) == len(self.upstreams)

    def disagreeing(self) -> list[str]:
        if not isinstance(self.verdict, Accepted):
            return []
        key = self.verdict.answer.key()
        return [u for u, a in self.answers.items() if a.key() != key]

    def groups(self) -> list[list[str]]:
        """The upstreams that answered, grouped by answer, largest group first."""
        by_key: dict[object, list[str]] = {}
        for upstream, answer in self.answers.items():
            by_key.setdefault(answer.key(), []).append(upstream)
        return sorted(by_key.values(), key=len, reverse=True)

    def _decide(self) -> Accepted | Failed | None:
        groups = self.groups()
        largest = groups[0] if groups else []
        if len(largest) >= self.quorum:
            # the agreeing answer with the least TTL: no upstream's answer is kept longer
            # than that upstream said
            chosen = min((self.answers[u] for u in largest), key=lambda a: a.ttl() or 0)
            return Accepted(chosen, tuple(largest))
        pending = len(self.upstreams) - len(self.answers) - len(self.failures)
        if len(largest) + pending >= self.quorum:
            return None  # still possible
        return self._failure(groups)

    def expire(self) -> Accepted | Failed:
        """The deadline passed: whoever has not answered failed (timed out)."""
        for upstream in self.upstreams:
            if upstream not in self.answers and upstream not in self.failures:
                self.failures[upstream] = "no answer before the deadline"
        if self.verdict is None:
            self.verdict = self._decide() or self._failure(self.groups())
        return self.verdict

    def _failure(self, groups: list[list[str]]) -> Failed:
        n, q = len(self.upstreams), self.quorum
        failed = "; ".join(f"{u}: {why}" for u, why in self.failures.items())
        if len(groups) > 1:
            answers = " vs ".join(f"{self.answers[g[0]].summary()} from {len(g)}" for g in groups)
            text = f"upstreams disagree, no {q} of {n} agree: {answers}"
            if failed:
                text += f"; failed: {failed}"
            return Failed(dns.edns.EDECode.OTHER, text, split=True)
        if not groups and len(self.failures) == n:
            return Failed(
                dns.edns.EDECode.NO_REACHABLE_AUTHORITY,
                f"no upstream answered ({n} asked): {failed}",
                split=False,
            )
        answered = len(groups[0]) if groups else 0
        return Failed(
            dns.edns.EDECode.NO_REACHABLE_AUTHORITY,
            f"{answered} of {n} upstreams answered and {len(self.failures)} failed, "
            f"{q} matching answers needed: {failed}",
            split=False,
        )
