"""A CNAME chain followed out of the zone, as a recursive resolver follows it (sans-IO).

Theory (RFC 1034 §3.6.2 and §4.3.2 step 3a, RFC 2308 §2.1, RFC 6604). A name in the
zone may be a CNAME to a name outside it -- ``_acme-challenge.www`` delegated to a
zone an ACME DNS service updates (acme-dns). With upstreams configured, the resolver
answers the whole chain: the zone's CNAMEs, then the target's records, asked of the
upstream quorum like any name outside the zone (same rounds, same cache, an outvoted
upstream reported the same way). A target the upstreams answer with a CNAME they did
not follow (no record of the type after it, no SOA saying there is none) is followed
in turn, into the zone again when it points there. The rcode is the last name's
(NXDOMAIN when the chain ends at a name that does not exist, RFC 6604 §2.1), and the
authority section is the last step's SOA for a negative answer.

Invariants: a chain holds at most ``MAX_CHAIN`` CNAMEs, and no name twice; a chain
that would break either is not answered (SERVFAIL, with an Extended DNS Error, RFC
8914, saying which and where: ``Broken``). A chased answer is not authoritative (AA
clear: it carries the upstreams' data) and is never cached whole; each step is cached
on its own by the forwarder.

Not done: DNAME (RFC 6672), which the zone never holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.rrset

MAX_CHAIN = 8  # CNAMEs in one answer
CNAME = dns.rdatatype.CNAME


@dataclass(frozen=True)
class Broken:
    """A chain that cannot be answered: too long, or looping."""

    text: str


@dataclass(frozen=True)
class Chain:
    """The answer so far to a question whose CNAMEs are being followed."""

    qname: dns.name.Name
    answer: tuple[dns.rrset.RRset, ...] = ()

    def names(self) -> list[dns.name.Name]:
        """The question's name, then each CNAME's target, in order."""
        return [self.qname] + [target_of(r) for r in self.answer if r.rdtype == CNAME]

    def extend(self, rrsets: Sequence[dns.rrset.RRset]) -> Chain | Broken:
        """The chain with ``rrsets`` appended, or why it cannot be."""
        names = self.names()
        seen = set(names)
        for rrset in rrsets:
            if rrset.rdtype != CNAME:
                continue
            target = target_of(rrset)
            names.append(target)
            if len(names) - 1 > MAX_CHAIN:
                return Broken(
                    f"CNAME chain from {self.qname} longer than {MAX_CHAIN}: "
                    + " -> ".join(map(str, names))
                )
            if target in seen:
                return Broken(f"CNAME loop: {' -> '.join(map(str, names))}")
            seen.add(target)
        return Chain(self.qname, (*self.answer, *rrsets))


def target_of(rrset: dns.rrset.RRset) -> dns.name.Name:
    target: dns.name.Name = next(iter(rrset)).target
    return target


def dangling(rrsets: Sequence[dns.rrset.RRset]) -> dns.name.Name | None:
    """The target of the CNAME that ends ``rrsets``, if one does (nothing follows it)."""
    if rrsets and rrsets[-1].rdtype == CNAME:
        return target_of(rrsets[-1])
    return None
