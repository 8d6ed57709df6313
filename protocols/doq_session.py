"""One DNS-over-QUIC connection, server side, sans-IO: aioquic's ``QuicConnection`` plus
RFC 9250's stream rules and this server's limits. No socket, no trio, no clock:
datagrams and ``now`` go in, ``Work`` comes out for the driver (``doq_server``).

Theory of operation. Every event aioquic reports is turned into what the driver
must do: a query to resolve (``NewQuery``, once a client-initiated bidirectional
stream has ended with exactly one message: the server defers processing to the
FIN, as §4.2 allows), a query to stop working on (``Cancelled``, for
STOP_SENDING or RESET_STREAM: §4.3.2), a connection id to route or forget
(``CidIssued``/``CidRetired``), or the end (``Terminated``). Any broken rule
(§4.3.3: a message ID other than 0, a second query on a stream, a FIN before
the message is whole, a unidirectional stream, the edns-tcp-keepalive option)
closes the connection with DOQ_PROTOCOL_ERROR; going past a limit closes it
with DOQ_EXCESSIVE_LOAD. After a close nothing more is dispatched.

Invariants: at most ``max_streams`` queries open (gathering or being
resolved), and at most ``max_buffered_bytes`` held for this connection: the
open queries' bytes plus what aioquic holds out of order for its streams.
aioquic hides two things this needs, read in ``_quic_backlog`` and set in
``limit_streams`` (private attributes, pinned by the tests): its receive
buffers (a frame at a far offset makes it allocate the gap) and its
concurrent-stream limit (128 fixed). The first is checked after every
datagram, so one datagram's worth of gaps is the most a peer gets before the
close; the second is the transport parameter the client sees, so a compliant
client never opens more than ``max_streams`` streams at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.events import (
    ConnectionIdIssued,
    ConnectionIdRetired,
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)

from trustchain.protocols.doq_framing import (
    ALPN,
    DOQ_EXCESSIVE_LOAD,
    DOQ_PROTOCOL_ERROR,
    DOQ_REQUEST_CANCELLED,
    DoqProtocolError,
    QueryChecks,
    QueryStream,
    frame,
)


@dataclass(frozen=True)
class Limits:
    max_streams: int = 100
    max_buffered_bytes: int = 65_536


@dataclass(frozen=True)
class NewQuery:
    stream_id: int
    wire: bytes


@dataclass(frozen=True)
class Cancelled:
    stream_id: int


@dataclass(frozen=True)
class CidIssued:
    cid: bytes


@dataclass(frozen=True)
class CidRetired:
    cid: bytes


@dataclass(frozen=True)
class Terminated:
    error_code: int
    reason: str


Work = NewQuery | Cancelled | CidIssued | CidRetired | Terminated


def limit_streams(quic: QuicConnection, max_streams: int) -> None:
    """Advertise ``max_streams`` concurrent bidirectional streams instead of aioquic's
    fixed 128 (it adds one per stream it discards, RFC 9000 §4.6). Call before the
    first datagram: it is a transport parameter."""
    limit = getattr(quic, "_local_max_streams_bidi", None)
    if limit is not None:
        limit.value = max_streams


def _quic_backlog(quic: QuicConnection) -> int:
    """Octets aioquic holds for streams beyond what it delivered (gaps, reordering)."""
    total = 0
    for stream in getattr(quic, "_streams", {}).values():
        receiver = stream.receiver
        if not receiver.is_finished:
            total += receiver.highest_offset - receiver.starting_offset()
    return total


class DoqSession:
    """RFC 9250 over one server-side ``QuicConnection`` (made by the driver)."""

    def __init__(
        self, quic: QuicConnection, limits: Limits, checks: QueryChecks | None = None
    ) -> None:
        self.quic = quic
        self.limits = limits
        self.checks = checks if checks is not None else QueryChecks()  # the listener's, shared
        self._gathering: dict[int, QueryStream] = {}
        self._resolving: dict[int, int] = {}  # stream id -> octets of its query
        # STOP_SENDING before the query was whole: what still comes is dropped; an id
        # leaves when its stream's receiving side ends (so at most the open streams)
        self._ignored: set[int] = set()
        self._held = 0  # octets in _gathering and _resolving
        self.closing = False  # closed by us or by the peer: nothing more is dispatched
        self.terminated = False
        self.queries = 0

    @property
    def open_queries(self) -> int:
        return len(self._gathering) + len(self._resolving)

    @property
    def held(self) -> int:
        return self._held

    def receive(self, data: bytes, addr: NetworkAddress, now: float) -> list[Work]:
        self.quic.receive_datagram(data, addr, now)
        work = self._drain()
        if (
            not self.closing
            and self._held + _quic_backlog(self.quic) > self.limits.max_buffered_bytes
        ):
            self._close(
                DOQ_EXCESSIVE_LOAD, f"more than {self.limits.max_buffered_bytes} octets buffered"
            )
            work.extend(self._drop_all())
        return work

    def handle_timer(self, now: float) -> list[Work]:
        self.quic.handle_timer(now)
        return self._drain()

    def answer(self, stream_id: int, response: bytes) -> bool:
        """Send ``response`` on its stream and end it (FIN); False if the query is no
        longer wanted (cancelled, or the connection is closing)."""
        size = self._resolving.pop(stream_id, None)
        if size is None or self.closing:
            return False
        self._held -= size
        try:
            self.quic.send_stream_data(stream_id, frame(response), end_stream=True)
        except RuntimeError:  # its sending side was reset (STOP_SENDING before any query data)
            return False
        return True

    def fail(self, stream_id: int, error_code: int) -> None:
        """Give up on one query: reset its stream with ``error_code``."""
        size = self._resolving.pop(stream_id, None)
        if size is not None and not self.closing:
            self._held -= size
            self.quic.reset_stream(stream_id, error_code)

    def close(self, error_code: int, reason: str) -> list[Work]:
        self._close(error_code, reason)
        return self._drop_all()

    # -- events ------------------------------------------------------------------

    def _drain(self) -> list[Work]:
        work: list[Work] = []
        while (event := self.quic.next_event()) is not None:
            try:
                self._event(event, work)
            except DoqProtocolError as exc:
                self._close(exc.code, str(exc))
                work.extend(self._drop_all())
        return work

    def _event(self, event: QuicEvent, work: list[Work]) -> None:
        if isinstance(event, StreamDataReceived):
            self._stream_data(event, work)
        elif isinstance(event, StopSendingReceived | StreamReset):
            self._cancel(event.stream_id, work, reset=isinstance(event, StreamReset))
        elif isinstance(event, ConnectionIdIssued):
            work.append(CidIssued(event.connection_id))
        elif isinstance(event, ConnectionIdRetired):
            work.append(CidRetired(event.connection_id))
        elif isinstance(event, HandshakeCompleted):
            if event.alpn_protocol != ALPN:  # aioquic refuses other ALPNs; never trust one layer
                raise DoqProtocolError(f"ALPN {event.alpn_protocol!r}, not {ALPN!r}")
        elif isinstance(event, ConnectionTerminated):
            self.closing = self.terminated = True
            work.extend(self._drop_all())
            work.append(Terminated(event.error_code, event.reason_phrase))

    def _stream_data(self, event: StreamDataReceived, work: list[Work]) -> None:
        stream_id = event.stream_id
        if self.closing:
            return
        if stream_id & 0x2:
            raise DoqProtocolError(f"data on unidirectional stream {stream_id} (RFC 9250 §4.2)")
        if stream_id in self._resolving:
            raise DoqProtocolError(
                f"more data on stream {stream_id} after its query (RFC 9250 §4.2)"
            )
        if stream_id in self._ignored:
            if event.end_stream:
                self._ignored.discard(stream_id)
            return
        stream = self._gathering.get(stream_id)
        if stream is None:
            if self.open_queries >= self.limits.max_streams:
                self._close(DOQ_EXCESSIVE_LOAD, f"more than {self.limits.max_streams} queries open")
                work.extend(self._drop_all())
                return
            stream = self._gathering[stream_id] = QueryStream()
        before = stream.buffered
        wire = stream.feed(event.data, event.end_stream)
        self._held += stream.buffered - before
        if wire is None:
            return
        del self._gathering[stream_id]
        self._held -= stream.buffered
        self.checks.check(wire)
        self._resolving[stream_id] = len(wire)
        self._held += len(wire)
        self.queries += 1
        work.append(NewQuery(stream_id, wire))

    def _cancel(self, stream_id: int, work: list[Work], reset: bool) -> None:
        """STOP_SENDING (``reset`` False) or RESET_STREAM (True) from the client: the
        query is not wanted any more (RFC 9250 §4.3.2)."""
        if stream_id & 0x2:
            raise DoqProtocolError(f"unidirectional stream {stream_id} (RFC 9250 §4.2)")
        stream = self._gathering.pop(stream_id, None)
        if stream is not None:
            self._held -= stream.buffered
        size = self._resolving.pop(stream_id, None)
        if size is not None:
            self._held -= size
            work.append(Cancelled(stream_id))
        if reset:
            self._ignored.discard(stream_id)  # its receiving side is over
            if stream is not None and not self.closing:
                # the query will never be whole: end our side too, so the stream is freed
                self.quic.reset_stream(stream_id, DOQ_REQUEST_CANCELLED)
        elif stream is not None:  # aioquic reset our side already; drop what may still come
            self._ignored.add(stream_id)

    def _close(self, error_code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            self.quic.close(error_code=error_code, reason_phrase=reason)

    def _drop_all(self) -> list[Work]:
        cancelled: list[Work] = [Cancelled(stream_id) for stream_id in self._resolving]
        self._gathering.clear()
        self._resolving.clear()
        self._ignored.clear()
        self._held = 0
        return cancelled


__all__ = [
    "DOQ_PROTOCOL_ERROR",
    "Cancelled",
    "CidIssued",
    "CidRetired",
    "DoqSession",
    "Limits",
    "NewQuery",
    "Terminated",
    "Work",
    "limit_streams",
]
