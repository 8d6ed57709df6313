"""The DNS-over-QUIC endpoint: one UDP socket, one ``DoqSession`` per connection, on trio.

Theory of operation. One task reads the socket: it waits until the socket is
readable or the earliest connection timer is due, reads what is there (a batch
of datagrams), hands each to its connection, fires due timers, then sends what
every touched connection has to send (so the acknowledgements of a batch go out
together), except for a connection that has just asked the resolver: its answer,
sent as soon as it comes, carries the acknowledgement too (aioquic acknowledges
after 1 ms; the connection's timer sends it then if the answer is slower), and that
pass of aioquic's over the connection is off every query's path. Sends are
non-blocking: a datagram the kernel will not take now is dropped and QUIC's loss
recovery sends it again. One task per query asks the
resolver (``resolve(wire) -> response wire``) and writes the answer; its
cancel scope is what STOP_SENDING, RESET_STREAM or the connection's end cancel.
Time is ``trio.current_time()`` everywhere (aioquic's ``now``, retry tokens).

Who gets state. A datagram is routed by its destination connection id (the ids
the connection issued and retired, followed through its events, plus the
client's original one). Anything else makes no connection unless it is a
valid-looking Initial packet of a supported version, in a datagram of at least
1,200 bytes, with a destination id of at least 8 bytes (RFC 9000 §7.2, §14.1), that
aioquic can decrypt and answer (else the connection made for it is dropped
at once);
with ``retry`` the client's address is proven first by a Retry round trip
(aioquic's ``QuicRetryTokenHandler``, stateless), and an Initial over
``max_connections`` is refused statelessly with CONNECTION_REFUSED (an
application code such as DOQ_EXCESSIVE_LOAD cannot be sent before the handshake).
Junk, short Initials and packets for unknown connections cost a header parse
and nothing is kept. A long-header datagram of an unknown version of 1,200
bytes or more gets a Version Negotiation packet (RFC 9000 §6.1).

0-RTT is off: no session tickets are issued (no ticket handler), so no client
can resume or send early data. DNS queries in early data can be replayed
(RFC 9250 §4.5, RFC 9001 §9.2), and an answer that depends on trust scores or
the cache could then be observed or driven by a third party; the full
handshake measured here costs about a millisecond, not worth that risk.

No client's input may hurt the others: every datagram's handling is wrapped so
that an unexpected exception closes that one connection (DOQ_INTERNAL_ERROR)
and is logged, and the loop goes on.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import TRANSPORT_CLOSE_FRAME_CAPACITY, NetworkAddress, QuicConnection
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicHeader,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.retry import QuicRetryTokenHandler
from loguru import logger

from trustchain.protocols.doq_framing import (
    DOQ_INTERNAL_ERROR,
    DOQ_NO_ERROR,
    QueryChecks,
    servfail,
)
from trustchain.protocols.doq_session import (
    Cancelled,
    CidIssued,
    CidRetired,
    DoqSession,
    Limits,
    NewQuery,
    Terminated,
    Work,
    limit_streams,
)

MIN_INITIAL_DATAGRAM = 1_200  # RFC 9000 §14.1
MIN_INITIAL_DCID = 8  # RFC 9000 §7.2
CID_LENGTH = 8
RECEIVE_SIZE = 2_048  # larger than any datagram aioquic sends or a client may (1,200-1,500)
BATCH = 64  # datagrams read before timers and sends get their turn

Resolve = Callable[[bytes], Awaitable[bytes]]


@dataclass
class EndpointStats:
    datagrams: int = 0
    dropped: int = 0  # not QUIC, not for a connection, not a valid Initial
    accepted: int = 0  # connections made
    refused: int = 0  # Initials past max_connections
    retries: int = 0  # Retry packets sent
    invalid_tokens: int = 0
    version_negotiations: int = 0
    queries: int = 0
    cancelled: int = 0
    resolver_failures: int = 0  # answered SERVFAIL (or reset) because the resolver failed
    internal_errors: int = 0
    send_dropped: int = 0  # datagrams the kernel would not take at once


@dataclass(eq=False)
class _Connection:
    session: DoqSession
    cids: set[bytes] = field(default_factory=set)
    tasks: dict[int, trio.CancelScope] = field(default_factory=dict)
    deadline: float | None = None


def initial_close(header: QuicHeader, error_code: int) -> bytes:
    """A server Initial packet that closes the connection ``header`` asks for, with a
    transport error, keeping no state (as aioquic's server does for INVALID_TOKEN)."""
    assert header.version is not None
    crypto = CryptoPair()
    crypto.setup_initial(cid=header.destination_cid, is_client=False, version=header.version)
    builder = QuicPacketBuilder(
        host_cid=header.destination_cid,
        is_client=False,
        max_datagram_size=MIN_INITIAL_DATAGRAM,
        peer_cid=header.source_cid,
        version=header.version,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    buf = builder.start_frame(
        QuicFrameType.TRANSPORT_CLOSE, capacity=TRANSPORT_CLOSE_FRAME_CAPACITY
    )
    buf.push_uint_var(error_code)
    buf.push_uint_var(QuicFrameType.PADDING)
    buf.push_uint_var(0)
    datagrams, _ = builder.flush()
    return datagrams[0]


class DoqEndpoint:
    """Serve DoQ on ``sock`` (a bound, non-blocking UDP socket) until cancelled.

    ``configuration()`` gives the QuicConfiguration for each new connection (the
    current certificate: a renewal reaches new connections, live ones keep theirs);
    ``resolve(wire)`` answers one query.
    """

    def __init__(
        self,
        sock: socket.socket,
        configuration: Callable[[], QuicConfiguration],
        resolve: Resolve,
        limits: Limits,
        max_connections: int,
        retry: bool = False,
    ) -> None:
        self._sock = sock
        self._configuration = configuration
        self._resolve = resolve
        self.limits = limits
        self._checks = QueryChecks()  # the queries that passed the DoQ rules, shared
        self.max_connections = max_connections
        self._retry = QuicRetryTokenHandler() if retry else None
        self._routes: dict[bytes, _Connection] = {}
        self._connections: set[_Connection] = set()
        self._timers: list[tuple[float, int, _Connection]] = []
        self._sequence = itertools.count()
        self._dirty: set[_Connection] = set()
        self._asking: set[_Connection] = set()  # of _dirty: it has just asked the resolver
        self._waiting: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.stats = EndpointStats()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def open_queries(self) -> int:
        return sum(c.session.open_queries for c in self._connections)

    @property
    def held(self) -> int:
        """Octets held for queries, over every connection."""
        return sum(c.session.held for c in self._connections)

    @property
    def tasks(self) -> int:
        return sum(len(c.tasks) for c in self._connections)

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self.port)
            try:
                await self._receive_loop()
            finally:
                self._close_all()
                nursery.cancel_scope.cancel()

    # -- the socket ----------------------------------------------------------------

    async def _receive_loop(self) -> None:
        sock = self._sock
        while True:
            deadline = self._timers[0][0] if self._timers else float("inf")
            with trio.CancelScope(deadline=deadline) as self._waiting:
                await trio.lowlevel.wait_readable(sock)
            self._waiting = None
            now = trio.current_time()
            for _ in range(BATCH):
                try:
                    data, addr = sock.recvfrom(RECEIVE_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # e.g. an ICMP error queued on the socket
                    logger.debug("DoQ socket: {}", exc)
                    continue
                self._datagram(data, addr, now)
            self._expire(now)
            for conn in self._dirty:
                if conn in self._asking:  # its answer, due at once, carries what it has
                    self._schedule(conn)  # (the ACK among it); or its timers send it
                else:
                    self._flush(conn)
            self._dirty.clear()
            self._asking.clear()

    def _send(self, data: bytes, addr: NetworkAddress) -> None:
        try:
            self._sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.stats.send_dropped += 1  # QUIC sends it again
        except OSError as exc:
            logger.debug("DoQ send to {}: {}", addr[0], exc)

    def _datagram(self, data: bytes, addr: NetworkAddress, now: float) -> None:
        self.stats.datagrams += 1
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:  # BufferReadError is one too
            self.stats.dropped += 1
            return
        conn = self._routes.get(header.destination_cid)
        if conn is not None:
            self._run(conn, conn.session.receive, data, addr, now)
            return
        conn = self._admit(header, data, addr, now)
        if conn is None:
            return
        self._run(conn, conn.session.receive, data, addr, now)
        try:
            answer = conn.session.quic.datagrams_to_send(now)
        except Exception:
            answer = []
        if not answer:  # aioquic could not read it: not an Initial after all
            self.stats.accepted -= 1
            self.stats.dropped += 1
            self._forget(conn)
            return
        for datagram, to in answer:
            self._send(datagram, to)
        self._schedule(conn)

    # -- admission -----------------------------------------------------------------

    def _admit(
        self, header: QuicHeader, data: bytes, addr: NetworkAddress, now: float
    ) -> _Connection | None:
        """A new connection for a valid Initial, or None (and maybe a stateless reply)."""
        try:
            configuration = self._configuration()
        except Exception:
            self.stats.dropped += 1
            return None
        versions = configuration.supported_versions
        if header.version is not None and header.version not in versions:
            if (
                header.packet_type != QuicPacketType.VERSION_NEGOTIATION
                and len(data) >= MIN_INITIAL_DATAGRAM
            ):
                self.stats.version_negotiations += 1
                self._send(
                    encode_quic_version_negotiation(
                        source_cid=header.destination_cid,
                        destination_cid=header.source_cid,
                        supported_versions=versions,
                    ),
                    addr,
                )
            else:
                self.stats.dropped += 1
            return None
        if (
            header.packet_type != QuicPacketType.INITIAL
            or len(data) < MIN_INITIAL_DATAGRAM
            or len(header.destination_cid) < MIN_INITIAL_DCID
        ):
            self.stats.dropped += 1
            return None
        original_cid, retry_cid = header.destination_cid, None
        if self._retry is not None:
            if not header.token:
                self.stats.retries += 1
                source_cid = os.urandom(CID_LENGTH)
                token = self._retry.create_token(
                    address=addr,
                    now=now,
                    original_destination_connection_id=header.destination_cid,
                    retry_source_connection_id=source_cid,
                )
                assert header.version is not None
                self._send(
                    encode_quic_retry(
                        version=header.version,
                        source_cid=source_cid,
                        destination_cid=header.source_cid,
                        original_destination_cid=header.destination_cid,
                        retry_token=token,
                    ),
                    addr,
                )
                return None
            try:
                original_cid = self._retry.validate_token(
                    address=addr,
                    now=now,
                    destination_cid=header.destination_cid,
                    token=header.token,
                )
            except ValueError:
                self.stats.invalid_tokens += 1
                self._send(initial_close(header, QuicErrorCode.INVALID_TOKEN), addr)
                return None
            retry_cid = header.destination_cid
        if len(self._connections) >= self.max_connections:
            self.stats.refused += 1
            self._send(initial_close(header, QuicErrorCode.CONNECTION_REFUSED), addr)
            return None
        quic = QuicConnection(
            configuration=configuration,
            original_destination_connection_id=original_cid,
            retry_source_connection_id=retry_cid,
        )
        limit_streams(quic, self.limits.max_streams)
        conn = _Connection(DoqSession(quic, self.limits, self._checks))
        for cid in (header.destination_cid, quic.host_cid):
            self._routes[cid] = conn
            conn.cids.add(cid)
        self._connections.add(conn)
        self.stats.accepted += 1
        return conn

    # -- one connection ----------------------------------------------------------------

    def _run(self, conn: _Connection, step: Callable[..., list[Work]], *args: Any) -> None:
        """Run one sans-IO step of ``conn`` and do what it asks; a bug closes only it."""
        try:
            work = step(*args)
        except Exception:
            self.stats.internal_errors += 1
            logger.exception("DoQ connection failed; closing it (DOQ_INTERNAL_ERROR)")
            try:
                work = conn.session.close(DOQ_INTERNAL_ERROR, "internal error")
            except Exception:
                self._forget(conn)
                return
        self._apply(conn, work)
        self._dirty.add(conn)

    def _apply(self, conn: _Connection, work: list[Work]) -> None:
        for item in work:
            if isinstance(item, NewQuery):
                self.stats.queries += 1
                self._asking.add(conn)
                scope = conn.tasks[item.stream_id] = trio.CancelScope()
                assert self._nursery is not None
                self._nursery.start_soon(self._answer, conn, item.stream_id, item.wire, scope)
            elif isinstance(item, Cancelled):
                if (cancelled := conn.tasks.pop(item.stream_id, None)) is not None:
                    self.stats.cancelled += 1
                    cancelled.cancel()
            elif isinstance(item, CidIssued):
                self._routes[item.cid] = conn
                conn.cids.add(item.cid)
            elif isinstance(item, CidRetired):
                if self._routes.get(item.cid) is conn:
                    del self._routes[item.cid]
                conn.cids.discard(item.cid)
            elif isinstance(item, Terminated):
                self._forget(conn)

    async def _answer(
        self, conn: _Connection, stream_id: int, wire: bytes, scope: trio.CancelScope
    ) -> None:
        with scope:
            try:
                response: bytes | None = await self._resolve(wire)
                if not isinstance(response, bytes) or response[:2] != b"\0\0":
                    raise TypeError(
                        f"the resolver answered {type(response).__name__} "
                        "that is not a DoQ response (wire bytes, ID 0)"
                    )
            except Exception as exc:  # the resolver is down, slow or wrong: SERVFAIL
                self.stats.resolver_failures += 1
                logger.debug("DoQ query failed in the resolver: {}", exc)
                response = servfail(wire, f"resolver unavailable: {exc}")
            if conn.tasks.pop(stream_id, None) is None:
                return  # cancelled meanwhile
            try:
                if response is None:
                    conn.session.fail(stream_id, DOQ_INTERNAL_ERROR)
                else:
                    conn.session.answer(stream_id, response)
            except ValueError:  # longer than a DoQ message can be
                conn.session.fail(stream_id, DOQ_INTERNAL_ERROR)
            self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        """Send what ``conn`` has to send."""
        if conn not in self._connections:
            return
        try:
            datagrams = conn.session.quic.datagrams_to_send(trio.current_time())
        except Exception:
            self.stats.internal_errors += 1
            logger.exception("DoQ connection failed while sending; forgetting it")
            self._forget(conn)
            return
        for data, addr in datagrams:
            self._send(data, addr)
        self._schedule(conn)

    def _forget(self, conn: _Connection) -> None:
        for cid in conn.cids:
            if self._routes.get(cid) is conn:
                del self._routes[cid]
        conn.cids.clear()
        for scope in conn.tasks.values():
            scope.cancel()
        conn.tasks.clear()
        conn.deadline = None
        self._connections.discard(conn)

    # -- timers --------------------------------------------------------------------

    def _schedule(self, conn: _Connection) -> None:
        deadline = conn.session.quic.get_timer()
        if deadline == conn.deadline:
            return
        conn.deadline = deadline
        if deadline is None:
            return
        heapq.heappush(self._timers, (deadline, next(self._sequence), conn))
        if self._waiting is not None and deadline < self._waiting.deadline:
            self._waiting.deadline = deadline
        if len(self._timers) > 4 * len(self._connections) + 1_024:  # stale entries
            self._timers = [
                (c.deadline, next(self._sequence), c)
                for c in self._connections
                if c.deadline is not None
            ]
            heapq.heapify(self._timers)

    def _expire(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            deadline, _, conn = heapq.heappop(self._timers)
            if conn.deadline != deadline or conn not in self._connections:
                continue  # a stale entry: the connection's timer moved since
            conn.deadline = None
            self._run(conn, conn.session.handle_timer, now)

    def _close_all(self) -> None:
        """Stopping: every connection is closed with DOQ_NO_ERROR, once, best effort."""
        now = trio.current_time()
        for conn in list(self._connections):
            try:
                conn.session.close(DOQ_NO_ERROR, "server stopping")
                for data, addr in conn.session.quic.datagrams_to_send(now):
                    self._send(data, addr)
            except Exception:
                pass
            self._forget(conn)
