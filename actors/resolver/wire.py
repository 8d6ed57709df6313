"""DNS messages in and out of the resolver (sans-IO; dnspython does every octet).

A query from a client is untrusted bytes. ``parse_query`` turns them into a
dnspython query or a ``BadQuery`` holding the response to send instead, so that no
input raises past it:

* not a DNS message (too short, bad names, trailing junk...): FORMERR, with the
  query's ID and opcode when its header is there to read them;
* a response (QR set), no question or more than one: FORMERR;
* an opcode other than QUERY: NOTIMP; an EDNS version other than 0: BADVERS
  (RFC 6891 §6.1.3); a TSIG-signed query (no keys here): REFUSED;
* a class other than IN, or a meta type other than ANY (AXFR, IXFR, OPT...): REFUSED
  (the zone is not transferred; TrustChain answers IN only).

``render`` produces the wire form: the response's ID is the query's, RRsets keep
their order (the zone's trust order: dnspython shuffles unless told not to), the
size limit is DNS's own 65,535 octets (DoQ ignores the EDNS payload size, RFC 9250
§4.2), and with ``padding_block`` and EDNS in the query the OPT record gets a
Padding option bringing the message to a multiple of that block (RFC 7830, RFC 8467).
An EDE (RFC 8914) travels in the OPT record, so it is added only when the query
had EDNS.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

OUR_PAYLOAD = 1_232  # the EDNS payload size advertised (the DNS flag day 2020 value)
MAX_MESSAGE = 65_535


@dataclass(frozen=True)
class BadQuery:
    """A query that cannot be answered as asked, and the response that says so."""

    response: dns.message.Message
    reason: str


def _header_only(wire: bytes, rcode: dns.rcode.Rcode) -> dns.message.Message:
    """A response of just a header, from whatever of the query's header can be read."""
    query_id = int.from_bytes(wire[:2], "big") if len(wire) >= 2 else 0
    flags = int.from_bytes(wire[2:4], "big") if len(wire) >= 4 else 0
    response = dns.message.Message(id=query_id)
    response.flags = dns.flags.QR | (flags & dns.flags.RD)
    response.set_opcode(dns.opcode.from_flags(flags))
    response.set_rcode(rcode)
    return response


def respond(
    query: dns.message.Message, rcode: dns.rcode.Rcode, *, recursion: bool = False
) -> dns.message.Message:
    """The response to ``query``: its ID, question, RD; EDNS when it had EDNS."""
    response = dns.message.make_response(
        query, recursion_available=recursion, our_payload=OUR_PAYLOAD, pad=0
    )
    response.set_rcode(rcode)
    return response


def parse_query(wire: bytes) -> dns.message.Message | BadQuery:
    try:
        query = dns.message.from_wire(wire)
    except dns.message.UnknownTSIGKey:
        return BadQuery(_header_only(wire, dns.rcode.REFUSED), "TSIG-signed (no keys here)")
    except Exception as exc:  # any way bytes can fail to be a DNS message
        return BadQuery(_header_only(wire, dns.rcode.FORMERR), f"malformed: {exc}")
    if query.flags & dns.flags.QR:
        return BadQuery(_header_only(wire, dns.rcode.FORMERR), "a response, not a query")
    if query.opcode() != dns.opcode.QUERY:
        return BadQuery(_header_only(wire, dns.rcode.NOTIMP), "opcode is not QUERY")
    if len(query.question) != 1:
        reason = f"{len(query.question)} questions (one is answered)"
        return BadQuery(respond(query, dns.rcode.FORMERR), reason)
    if query.edns > 0:
        response = respond(query, dns.rcode.BADVERS)
        return BadQuery(response, f"EDNS version {query.edns}")
    question = query.question[0]
    if question.rdclass != dns.rdataclass.IN:
        reason = f"class {dns.rdataclass.to_text(question.rdclass)}"
        return BadQuery(respond(query, dns.rcode.REFUSED), reason)
    rdtype = question.rdtype
    if dns.rdatatype.is_metatype(rdtype) and rdtype != dns.rdatatype.ANY:
        reason = f"type {dns.rdatatype.to_text(rdtype)} is not answered"
        return BadQuery(respond(query, dns.rcode.REFUSED), reason)
    return query


def add_ede(response: dns.message.Message, code: dns.edns.EDECode, text: str) -> None:
    """Add an Extended DNS Error, if ``response`` has EDNS (it has when its query had)."""
    if response.edns < 0:
        return
    options = [*response.options, dns.edns.EDEOption(code, text[:480] or None)]
    response.use_edns(0, response.ednsflags, response.payload, response.request_payload, options)


def render(response: dns.message.Message, padding_block: int = 0) -> bytes:
    """The wire form (see the module's theory). Never raises for size: past 65,535
    octets the answer is cut and TC set."""
    response.pad = padding_block if padding_block > 0 and response.edns >= 0 else 0
    for pad in dict.fromkeys((response.pad, 0)):  # padded, else (too big padded) unpadded
        response.pad = pad
        try:
            wire = response.to_wire(max_size=MAX_MESSAGE, want_shuffle=False)
        except dns.exception.TooBig:
            wire = response.to_wire(
                max_size=MAX_MESSAGE, prefer_truncation=True, want_shuffle=False
            )
        if len(wire) <= MAX_MESSAGE:
            return wire
    return wire


def ede_of(response: dns.message.Message) -> dict[str, Any] | None:
    for option in response.options:
        if isinstance(option, dns.edns.EDEOption):
            return {"code": int(option.code), "text": option.text or ""}
    return None


def describe(response: dns.message.Message) -> dict[str, Any]:
    """A response as JSON values, for the control socket (``resolve``)."""
    question = response.question[0] if response.question else None
    found: dict[str, Any] = {
        "name": question.name.to_text() if question is not None else "",
        "type": dns.rdatatype.to_text(question.rdtype) if question is not None else "",
        "rcode": dns.rcode.to_text(response.rcode()),
        "flags": dns.flags.to_text(response.flags).split(),
        "answer": [
            line for r in response.answer for line in r.to_text(want_shuffle=False).splitlines()
        ],
        "authority": [
            line for r in response.authority for line in r.to_text(want_shuffle=False).splitlines()
        ],
    }
    ede = ede_of(response)
    if ede is not None:
        found["ede"] = ede
    return found


class Rendered:
    """The wire responses to recent zone queries, by the query's exact bytes and the
    padding block: a zone answer (AA set) is a function of those and of the zone alone,
    so the same query (every DoQ query has ID 0) is answered again without parsing or
    rendering. Forgotten when the zone changes; at most ``capacity`` entries, of queries
    of at most ``MAX_KEY`` octets."""

    MAX_KEY = 512

    def __init__(self, capacity: int = 4_096) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[bytes, int], tuple[bytes, str]] = OrderedDict()
        self._zone: object = None

    def get(self, zone: object, wire: bytes, padding_block: int) -> tuple[bytes, str] | None:
        """(response bytes, rcode text) for this query of ``zone``, if rendered before."""
        if zone is not self._zone:
            self._entries.clear()
            self._zone = zone
            return None
        found = self._entries.get((wire, padding_block))
        if found is not None:
            self._entries.move_to_end((wire, padding_block))
        return found

    def put(self, zone: object, wire: bytes, padding_block: int,
            response: dns.message.Message, rendered: bytes) -> None:  # fmt: skip
        if zone is not self._zone or not response.flags & dns.flags.AA:
            return
        if len(wire) > self.MAX_KEY or self.capacity <= 0:
            return
        self._entries[(wire, padding_block)] = (rendered, dns.rcode.to_text(response.rcode()))
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
