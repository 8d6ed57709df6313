"""The TrustChain zone: what the resolver answers with authority (sans-IO).

Theory (RFC 1034 §4.3.2, RFC 2308, RFC 8020). The zone is a set of nodes under
the origin, each a set of RRsets; nothing else is ever in it:

* AAAA records from config (``[resolver] records``: relative name -> IPv6
  addresses; "@" is the origin) and from the assets the detector registered
  (``AssetRecord``: a name under ``assets.<origin>``, addresses, trust score,
  quarantine). AAAA only: an IPv4 address (or an IPv4-mapped IPv6 one) is refused
  in config and skipped from an asset, so no answer ever carries IPv4.
* CNAMEs from config (``[resolver] cnames``): a CNAME name holds nothing else, the
  apex holds none, and chains never loop (each checked when the zone is built).
* TXT records of ACME dns-01 challenges (RFC 8555 §8.4), given by the actor from its
  challenge store: at ``_acme-challenge.<a name at or under the origin>``, with the
  short TTL ``CHALLENGE_TTL_S`` (at most ``ttl_s``) so a validator sees a new value
  soon. One at a configured CNAME is skipped (``self.skipped``): a CNAME stands alone.
* SOA and NS at the apex; the NS is the DoQ server's name, and when that name is
  inside the zone without an address of its own, the address it listens on.

A lookup walks CNAMEs inside the zone (a target outside it ends the chain, and
``ZoneAnswer.target`` names it: the caller chases it through its upstreams, or the
client does, as with any authoritative server), then answers the type asked for:
the RRset; NODATA (NOERROR, nothing in the answer) when the name exists without that
type, so an A query never gets an address; NXDOMAIN when no name exists there -- a
name with names below it exists even without records of its own (an empty
non-terminal, RFC 8020: ``_acme-challenge`` alone, say). NXDOMAIN and NODATA carry
the SOA in the authority section, whose TTL and MINIMUM are the negative-caching TTL
(RFC 2308 §3). Every TTL is ``ttl_s`` but the challenges'; names compare
case-insensitively (dnspython's ``Name``).

Trust: an asset that is quarantined or scores below ``min_asset_trust`` gives no
address (its name still exists: NODATA); the addresses that remain at a name are
ordered by their asset's score, highest first (config addresses at that name, which
have no score, come before them). Answers keep that order on the wire only when
rendered without dnspython's shuffle (``want_shuffle=False``).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

ASSETS_LABEL = "assets"  # assets' names live under assets.<origin>
SOA_REFRESH_S, SOA_RETRY_S, SOA_EXPIRE_S = 3_600, 600, 604_800
CHALLENGE_TTL_S = 60  # TXT of ACME challenges: short, the value changes per order
IN, AAAA, CNAME, SOA, NS, ANY, TXT = (
    dns.rdataclass.IN,
    dns.rdatatype.AAAA,
    dns.rdatatype.CNAME,
    dns.rdatatype.SOA,
    dns.rdatatype.NS,
    dns.rdatatype.ANY,
    dns.rdatatype.TXT,
)


class ZoneError(ValueError):
    """The zone's configuration cannot be served (a bad name, an IPv4 address, a
    CNAME beside other data or in a loop): the resolver does not start."""


@dataclass(frozen=True)
class AssetRecord:
    """One registered asset, as the detector describes it (``AssetRecords``)."""

    asset: str
    name: str  # relative to assets.<origin>
    addresses: tuple[str, ...]
    score: float
    quarantined: bool

    @classmethod
    def from_json(cls, value: Any) -> AssetRecord:
        """From the detector's JSON form; ``ValueError`` saying what is wrong."""
        if not isinstance(value, Mapping):
            raise ValueError(f"an asset record is an object, not {type(value).__name__}")
        asset, name, addresses = value.get("asset"), value.get("name"), value.get("addresses")
        score, quarantined = value.get("score"), value.get("quarantined", False)
        if not isinstance(asset, str) or not asset:
            raise ValueError("an asset record needs 'asset' (its id)")
        if not isinstance(name, str) or not name:
            raise ValueError(f"asset {asset[:16]}: 'name' must be a non-empty string")
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ValueError(f"asset {asset[:16]}: 'addresses' must be a list of strings")
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise ValueError(f"asset {asset[:16]}: 'score' must be a finite number")
        if not isinstance(quarantined, bool):
            raise ValueError(f"asset {asset[:16]}: 'quarantined' must be true or false")
        return cls(asset, name, tuple(addresses), float(score), quarantined)


def parse_asset_records(value: Any) -> tuple[list[AssetRecord], list[str]]:
    """The detector's reply -> the usable records and, for each unusable one, why."""
    if not isinstance(value, list):
        return [], [f"asset records are a list, not {type(value).__name__}"]
    records, problems = [], []
    for item in value:
        try:
            records.append(AssetRecord.from_json(item))
        except ValueError as exc:
            problems.append(str(exc))
    return records, problems


@dataclass(frozen=True)
class ZoneAnswer:
    """What the zone says to one question: an rcode and two sections."""

    rcode: dns.rcode.Rcode
    answer: tuple[dns.rrset.RRset, ...] = ()
    authority: tuple[dns.rrset.RRset, ...] = ()
    target: dns.name.Name | None = None  # the answer ends at a CNAME to this outside name


def ipv6_address(text: str) -> str:
    """``text`` as a canonical IPv6 address; ``ValueError`` for IPv4 or IPv4-mapped."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if not isinstance(address, ipaddress.IPv6Address):
        raise ValueError(f"{text!r} is an IPv4 address; the zone is IPv6 only (AAAA)")
    if address.ipv4_mapped is not None:
        raise ValueError(f"{text!r} is an IPv4-mapped address; the zone is IPv6 only")
    if address.scope_id is not None:
        raise ValueError(f"{text!r} has a zone index, which DNS cannot carry")
    return str(address)


def _relative(text: str, origin: dns.name.Name, what: str) -> dns.name.Name:
    """A config or asset name relative to ``origin`` ("@" is the origin itself)."""
    if text.endswith(".") and text != ".":
        raise ValueError(f"{what} {text!r} must be relative to the origin (no final dot)")
    try:
        return dns.name.from_text(text, origin=origin)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"{what} {text!r} is not a valid name: {exc}") from None


@dataclass
class _Node:
    addresses: list[tuple[str, float | None]] = field(default_factory=list)  # (address, score)
    cname: dns.name.Name | None = None
    apex: bool = False
    txt: list[str] = field(default_factory=list)  # ACME challenge values


class Zone:
    """The zone at one moment (config plus the assets last known); immutable once built."""

    def __init__(
        self,
        origin: str,
        ttl_s: int,
        records: Mapping[str, Sequence[str]],
        cnames: Mapping[str, str] | None = None,
        *,
        assets: Iterable[AssetRecord] = (),
        min_asset_trust: float = 0.0,
        challenges: Mapping[dns.name.Name, Sequence[str]] | None = None,
        nameserver: str | None = None,
        nameserver_address: str | None = None,
        serial: int = 1,
    ) -> None:
        """``ZoneError`` for a config that cannot be served; an unusable asset record
        is skipped instead (``self.skipped`` says why), never an error."""
        try:
            self.origin = dns.name.from_text(origin)
        except (dns.exception.DNSException, ValueError) as exc:
            raise ZoneError(f"origin {origin!r} is not a valid name: {exc}") from None
        if self.origin == dns.name.root:
            raise ZoneError("the origin cannot be the root")
        self.ttl = ttl_s
        self.serial = serial % 2**32
        self.assets_name = dns.name.Name((ASSETS_LABEL, *self.origin.labels))
        self.skipped: list[str] = []
        self.left_out: dict[str, str] = {}  # asset -> why its addresses are not served
        self._nodes: dict[dns.name.Name, _Node] = {self.origin: _Node(apex=True)}
        try:
            self._add_config(records, cnames or {})
            self.nameserver = self._nameserver(nameserver, nameserver_address)
            self._check_cnames()
        except ValueError as exc:
            raise ZoneError(str(exc)) from None
        self._add_assets(assets, min_asset_trust)
        self._add_challenges(challenges or {})
        self._rrsets = self._build_rrsets()
        self._existing = {a for name in self._nodes for a in self._ancestors(name)}

    # Building ----------------------------------------------------------------------

    def _node(self, name: dns.name.Name) -> _Node:
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = _Node()
        return node

    def _add_config(self, records: Mapping[str, Sequence[str]], cnames: Mapping[str, str]) -> None:
        for text, addresses in records.items():
            name = _relative(text, self.origin, "record")
            node = self._node(name)
            for address in addresses:
                try:
                    entry = (ipv6_address(address), None)
                except ValueError as exc:
                    raise ValueError(f"record {text!r}: {exc}") from None
                if entry not in node.addresses:
                    node.addresses.append(entry)
        for text, target_text in cnames.items():
            name = _relative(text, self.origin, "cname")
            if name == self.origin:
                raise ValueError("a CNAME at the origin would hide its SOA and NS")
            try:
                target = dns.name.from_text(target_text, origin=self.origin)
            except (dns.exception.DNSException, ValueError) as exc:
                raise ValueError(f"cname {text!r} -> {target_text!r}: {exc}") from None
            node = self._node(name)
            if node.addresses:
                raise ValueError(f"{name} has both a CNAME and addresses; a CNAME stands alone")
            node.cname = target

    def _nameserver(self, text: str | None, address: str | None) -> dns.name.Name:
        """The NS (and SOA MNAME): the DoQ server's name, ``ns.<origin>`` by default;
        given ``address`` when it is in the zone with no address of its own."""
        try:
            name = dns.name.from_text(text) if text else dns.name.Name(("ns", *self.origin.labels))
        except (dns.exception.DNSException, ValueError) as exc:
            raise ValueError(f"nameserver {text!r}: {exc}") from None
        if name.is_subdomain(self.origin) and address is not None:
            node = self._node(name)
            if node.cname is not None:
                raise ValueError(f"the nameserver {name} cannot be a CNAME")
            if not node.addresses:
                node.addresses.append((ipv6_address(address), None))
        return name

    def _check_cnames(self) -> None:
        for name, node in self._nodes.items():
            seen = {name}
            target = node.cname
            while target is not None and target in self._nodes:
                if target in seen:
                    raise ValueError(f"the CNAME chain from {name} loops at {target}")
                seen.add(target)
                target = self._nodes[target].cname

    def _add_assets(self, assets: Iterable[AssetRecord], min_trust: float) -> None:
        ordered = sorted(assets, key=lambda a: (-a.score, a.asset))  # highest score first
        for record in ordered:
            try:
                name = _relative(record.name, self.assets_name, f"asset {record.asset[:16]}'s name")
                addresses = [ipv6_address(a) for a in record.addresses]
            except ValueError as exc:
                self.skipped.append(str(exc))
                continue
            existing = self._nodes.get(name)
            if existing is not None and (existing.cname is not None or existing.apex):
                self.skipped.append(f"asset {record.asset[:16]}: {name} is taken by the config")
                continue
            node = self._node(name)  # the name exists even when its addresses are left out
            if record.quarantined:
                self.left_out[record.asset] = "quarantined"
                continue
            if record.score < min_trust:
                self.left_out[record.asset] = f"score {record.score:.3f} < {min_trust}"
                continue
            known = {a for a, _ in node.addresses}
            node.addresses.extend((a, record.score) for a in addresses if a not in known)
            known.update(addresses)

    def _add_challenges(self, challenges: Mapping[dns.name.Name, Sequence[str]]) -> None:
        for name, values in sorted(challenges.items()):
            existing = self._nodes.get(name)
            if not name.is_subdomain(self.origin):
                self.skipped.append(f"challenge TXT {name} is outside {self.origin}")
            elif existing is not None and existing.cname is not None:
                self.skipped.append(f"challenge TXT {name}: the name is a CNAME in the config")
            else:
                node = self._node(name)
                node.txt.extend(v for v in values if v not in node.txt)

    def _ancestors(self, name: dns.name.Name) -> Iterable[dns.name.Name]:
        """``name`` and every name between it and the origin: all exist (RFC 8020)."""
        while name != self.origin and name.is_subdomain(self.origin):
            yield name
            name = name.parent()
        yield self.origin

    def _build_rrsets(self) -> dict[dns.name.Name, dict[int, dns.rrset.RRset]]:
        built: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = {}
        for name, node in self._nodes.items():
            sets: dict[int, dns.rrset.RRset] = {}
            if node.apex:
                sets[SOA] = self.soa()
                sets[NS] = dns.rrset.from_text(name, self.ttl, IN, NS, self.nameserver.to_text())
            if node.cname is not None:
                sets[CNAME] = dns.rrset.from_text(name, self.ttl, IN, CNAME, node.cname.to_text())
            if node.addresses:
                texts = [a for a, _ in node.addresses]
                sets[AAAA] = dns.rrset.from_text_list(name, self.ttl, IN, AAAA, texts)
            if node.txt:
                txt = sets[TXT] = dns.rrset.RRset(name, IN, TXT)
                for value in node.txt:  # one string each (a value is at most 255 octets)
                    txt.add(dns.rdtypes.ANY.TXT.TXT(IN, TXT, [value.encode()]))
                txt.ttl = min(CHALLENGE_TTL_S, self.ttl)
            built[name] = sets
        return built

    def soa(self) -> dns.rrset.RRset:
        hostmaster = dns.name.Name(("hostmaster", *self.origin.labels))
        text = (
            f"{self.nameserver} {hostmaster} {self.serial} {SOA_REFRESH_S} "
            f"{SOA_RETRY_S} {SOA_EXPIRE_S} {self.ttl}"
        )
        return dns.rrset.from_text(self.origin, self.ttl, IN, SOA, text)

    # Answering ---------------------------------------------------------------------

    def __contains__(self, name: object) -> bool:
        """Is ``name`` inside the zone (whether or not it exists)?"""
        return isinstance(name, dns.name.Name) and name.is_subdomain(self.origin)

    def lookup(self, qname: dns.name.Name, rdtype: int) -> ZoneAnswer | None:
        """The zone's answer to (``qname``, ``rdtype``), or ``None`` when ``qname`` is
        outside the zone (for the forwarder)."""
        if qname not in self:
            return None
        answer: list[dns.rrset.RRset] = []
        name = qname
        while True:  # CNAMEs inside the zone; the chain is finite (checked when built)
            sets = self._rrsets.get(name)
            if sets is None or CNAME not in sets or rdtype in (CNAME, ANY):
                break
            answer.append(owned_by(sets[CNAME], name))
            target = self._nodes[name].cname
            assert target is not None
            if target not in self:
                return ZoneAnswer(dns.rcode.NOERROR, tuple(answer), target=target)
            name = target
        if sets is None:
            rcode = dns.rcode.NOERROR if name in self._existing else dns.rcode.NXDOMAIN
            return ZoneAnswer(rcode, tuple(answer), (self.soa(),))
        if rdtype == ANY:
            found = [owned_by(s, name) for s in sets.values()]
        elif rdtype in sets:
            found = [owned_by(sets[rdtype], name)]
        else:
            found = []
        if not found:
            return ZoneAnswer(dns.rcode.NOERROR, tuple(answer), (self.soa(),))
        return ZoneAnswer(dns.rcode.NOERROR, tuple(answer + found))

    # Reading ------------------------------------------------------------------------

    def content(self) -> frozenset[tuple[dns.name.Name, int, tuple[str, ...]]]:
        """What the zone holds but its SOA (for telling whether a rebuild changed it);
        AAAA order counts (it is the trust order)."""
        return frozenset(
            (name, rdtype, tuple(r.to_text() for r in rrset))
            for name, sets in self._rrsets.items()
            for rdtype, rrset in sets.items()
            if rdtype != SOA
        )

    def to_text(self) -> list[str]:
        """Every RR in master-file form, names in DNSSEC canonical order, the apex's
        SOA first; one line each."""
        lines = []
        for name in sorted(self._rrsets, key=lambda n: n.canonicalize()):
            sets = self._rrsets[name]
            for rdtype in sorted(sets, key=lambda t: (t != SOA, t)):
                lines.extend(sets[rdtype].to_text(want_shuffle=False).splitlines())
        return lines

    def names(self) -> int:
        return len(self._rrsets)


def owned_by(rrset: dns.rrset.RRset, name: dns.name.Name) -> dns.rrset.RRset:
    """``rrset`` with ``name`` (the asker's spelling) as its owner."""
    if rrset.name.to_text() == name.to_text():
        return rrset
    copy = dns.rrset.RRset(name, rrset.rdclass, rrset.rdtype)
    copy.update(rrset)
    copy.ttl = rrset.ttl
    return copy
