"""DNS over QUIC (RFC 9250), the message rules: sans-IO, no QUIC, no sockets, no clock.

What a query stream may carry (RFC 9250 §4.2): one DNS message behind a 2-octet
length prefix, then the stream's FIN. ``QueryStream`` gathers one stream's
bytes and hands back the message once the stream is finished, or raises
``DoqProtocolError`` for what §4.3.3 makes a connection error: bytes past the
announced message (a second query on one stream), or a FIN before the message
is whole (a truncated length prefix or message). ``check_query`` applies the
message rules: the DNS message ID is 0 (§4.2.1) and there is no
edns-tcp-keepalive option (§5.5.2); a message too short to hold a DNS header
(12 octets) is refused the same way, as the ID rule cannot be checked on it.
``QueryChecks`` remembers the queries that passed, so a repeated question (the same
octets: the ID is always 0) is not parsed again.
A message dnspython cannot parse is not a DoQ error: it goes to the resolver,
which answers FORMERR. ``frame`` is the server's side of the prefix.

Deliberately not here: padding (the resolver pads to ``PADDING_BLOCK`` when
asked, RFC 8467 §4.1), answering, and QUIC itself (``doq_session``).
"""

from __future__ import annotations

import dns.edns
import dns.exception
import dns.message
import dns.rcode

ALPN = "doq"

# RFC 9250 §4.3 (and its IANA registry): application error codes on streams and connections
DOQ_NO_ERROR = 0x0
DOQ_INTERNAL_ERROR = 0x1
DOQ_PROTOCOL_ERROR = 0x2
DOQ_REQUEST_CANCELLED = 0x3
DOQ_EXCESSIVE_LOAD = 0x4
DOQ_UNSPECIFIED_ERROR = 0x5

PADDING_BLOCK = 468  # RFC 8467 §4.1: responses padded to a multiple of 468 octets
MAX_MESSAGE = 65_535  # what a 2-octet length can announce
DNS_HEADER = 12


class DoqProtocolError(Exception):
    """The peer broke an RFC 9250 rule: the connection is closed with ``code``."""

    code = DOQ_PROTOCOL_ERROR


class QueryStream:
    """One client-initiated bidirectional stream's bytes, until its FIN."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes, end: bool) -> bytes | None:
        """Add what arrived; the query's wire once the stream ended with one whole
        message, None while it goes on."""
        buffer = self._buffer
        buffer += data
        if len(buffer) >= 2:
            size = 2 + int.from_bytes(buffer[:2], "big")
            if len(buffer) > size:
                raise DoqProtocolError(
                    f"{len(buffer) - size} octet(s) after the {size - 2}-octet message: "
                    "one query per stream (RFC 9250 §4.2)"
                )
        else:
            size = 2
        if not end:
            return None
        if len(buffer) < size:
            what = "its 2-octet length" if size == 2 else f"the {size - 2}-octet message"
            raise DoqProtocolError(
                f"stream finished after {len(buffer)} octet(s), before {what} (RFC 9250 §4.3.3)"
            )
        return bytes(buffer[2:])


def check_query(wire: bytes) -> None:
    """Raise ``DoqProtocolError`` if this query breaks a DoQ message rule."""
    if len(wire) < DNS_HEADER:
        raise DoqProtocolError(f"a {len(wire)}-octet message has no DNS header (12 octets)")
    message_id = int.from_bytes(wire[:2], "big")
    if message_id != 0:
        raise DoqProtocolError(f"DNS message ID {message_id}, not 0 (RFC 9250 §4.2.1)")
    if wire[10:12] == b"\0\0":  # ARCOUNT 0: no OPT record, so no EDNS option at all
        return
    try:
        message = dns.message.from_wire(wire, keyring=False, ignore_trailing=True)
    except Exception:
        return
    if any(option.otype == dns.edns.OptionType.KEEPALIVE for option in message.options):
        raise DoqProtocolError("edns-tcp-keepalive option in a DoQ query (RFC 9250 §5.5.2)")


class QueryChecks:
    """``check_query`` with a memory of the queries that passed it.

    Every DoQ query has ID 0 (§4.2.1), so a question asked again is the same octets
    again, and a client's repeated questions need not be parsed again to look for the
    keepalive option (a full dnspython parse, about 90 us, a fifth of the listener's
    time under load). Only queries of at most ``max_octets`` are kept, at most
    ``max_entries`` of them, the oldest forgotten first: a few hundred KiB at most,
    whatever clients send. One per listener, used from its one thread."""

    def __init__(self, max_entries: int = 4_096, max_octets: int = 512) -> None:
        self.max_entries, self.max_octets = max_entries, max_octets
        self._passed: dict[bytes, None] = {}

    def check(self, wire: bytes) -> None:
        """``check_query(wire)``, answered from memory for a query seen before."""
        if wire in self._passed:
            return
        check_query(wire)
        if len(wire) <= self.max_octets:
            if len(self._passed) >= self.max_entries:
                del self._passed[next(iter(self._passed))]
            self._passed[wire] = None

    def __len__(self) -> int:
        return len(self._passed)


def frame(response: bytes) -> bytes:
    """The response as it goes on its stream: 2-octet length, message."""
    if len(response) > MAX_MESSAGE:
        raise ValueError(f"a {len(response)}-octet response cannot be framed (max 65,535)")
    return len(response).to_bytes(2, "big") + response


def servfail(wire: bytes, reason: str) -> bytes | None:
    """A SERVFAIL for ``wire`` with an Extended DNS Error (RFC 8914, 'Other') saying
    ``reason``, padded like every response; None if the query cannot be parsed."""
    try:
        query = dns.message.from_wire(wire, keyring=False, ignore_trailing=True)
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.SERVFAIL)
        if query.edns >= 0:
            ede = dns.edns.EDEOption(dns.edns.EDECode.OTHER, reason[:200])
            response.use_edns(0, payload=query.payload, options=[ede], pad=PADDING_BLOCK)
        return response.to_wire()
    except Exception:
        return None
