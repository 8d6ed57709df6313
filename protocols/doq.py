"""DNS over QUIC (RFC 9250) in `trustchain run`: the ``[resolver]`` listener.

``serve_doq(config, registry)`` binds UDP on ``[resolver] host/port`` (IPv6
only: IPV6_V6ONLY is set before bind, so IPv4 is never answered, not even
through IPv4-mapped addresses on ``::``), gets its TLS certificate from
TrustChain's own CA exactly as the HTTPS edge does (``RegisterCertificate``
for ``[resolver] certificate`` with ``[resolver] names``, then ``Subscribe``:
every renewal builds a new ``QuicConfiguration``, which new connections get
while live ones keep theirs; the listener never stops), then serves until
cancelled. Each query goes to the ``resolver`` actor as
``Query(wire, padding_block=468)`` and its reply, the response's wire bytes,
goes back on the query's stream; a resolver that fails or does not answer
within ``runtime.request_timeout_s`` becomes a SERVFAIL with an Extended DNS
Error saying so. A query the resolver answered before from its zone, asked again
while that zone is still the one it publishes, is answered by the listener from
memory (``ResolverClient``, ``actors.resolver.memo``): no message, no thread hop.

The pieces: ``doq_framing`` (RFC 9250's message rules, pure functions),
``doq_session`` (one connection, sans-IO over aioquic's ``QuicConnection``),
``doq_server`` (the trio driver: socket, routing, admission, timers).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import trio
from aioquic.quic.configuration import QuicConfiguration
from loguru import logger

from trustchain.actors.resolver.memo import ZoneMemo
from trustchain.actors.resolver.messages import Query, ZoneAnswersServed
from trustchain.config import Config
from trustchain.config.schema import ResolverConfig
from trustchain.protocols.doq_framing import ALPN, MAX_MESSAGE, PADDING_BLOCK
from trustchain.protocols.doq_server import CID_LENGTH, DoqEndpoint
from trustchain.protocols.doq_session import Limits
from trustchain.protocols.own_certificate import (
    FIRST_CERTIFICATE_TIMEOUT_S,
    follow,
    outside_zones,
    unfollow,
)
from trustchain.protocols.tls_reload import CertificateFiles, Reloading
from trustchain.supervisors import Registry, TrustChainError, ask

RESOLVER = "resolver"


class DoqStartFailed(TrustChainError):
    """The DoQ listener cannot start: its config, its socket or its certificate."""

    code = "doq_start_failed"


def bind_udp_ipv6(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``[host]:port`` that never answers IPv4."""
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise DoqStartFailed(f"resolver.host must be an IPv6 address, not {host!r}") from None
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise DoqStartFailed(f"cannot listen on udp [{host}]:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def limits_of(resolver: ResolverConfig) -> Limits:
    return Limits(
        max_streams=resolver.max_streams_per_connection,
        max_buffered_bytes=resolver.max_buffered_bytes,
    )


def quic_configuration(files: CertificateFiles, resolver: ResolverConfig) -> QuicConfiguration:
    """The server's QuicConfiguration for one certificate bundle."""
    configuration = QuicConfiguration(
        is_client=False,
        alpn_protocols=[ALPN],
        idle_timeout=resolver.idle_timeout_s,
        connection_id_length=CID_LENGTH,
        # flow control: what a peer may send before we read it; one query is at most
        # 2 + 65,535 octets, and the connection's whole budget is max_buffered_bytes
        max_data=resolver.max_buffered_bytes,
        max_stream_data=min(resolver.max_buffered_bytes, 2 + MAX_MESSAGE),
    )
    configuration.load_cert_chain(files.fullchain_path, files.key_path)
    return configuration


def check_names(names: list[str], zones: list[str]) -> None:
    """Refuse, before asking for it, a certificate the CA's policy would refuse."""
    bad = outside_zones(names, zones)
    if bad is not None:
        raise DoqStartFailed(f"resolver.names: {bad!r} is neither an IPv6 address nor "
                             f"inside ca.permitted_zones ({', '.join(zones)})")  # fmt: skip


REPORT_S = 1.0  # how late resolver_status may count the answers a listener gave itself


class ResolverClient:
    """How a listener gets its answers: from its memory of the zone the resolver
    publishes (``ZoneMemo``: a repeated zone query, with no message and no thread
    hop), else with a ``Query`` to the ``resolver`` actor; ``report`` (a task) hands
    the actor the count of the answers from memory every ``REPORT_S``."""

    def __init__(
        self, registry: Registry, timeout_s: float, padding_block: int = PADDING_BLOCK
    ) -> None:
        self.registry, self.timeout_s, self.padding_block = registry, timeout_s, padding_block
        self.memo = ZoneMemo()

    async def resolve(self, wire: bytes) -> bytes:
        zone = self.registry.published(RESOLVER)
        known = self.memo.get(zone, wire)
        if known is not None:
            return known
        query = Query(wire=wire, padding_block=self.padding_block)
        response: bytes = await ask(self.registry, RESOLVER, query, self.timeout_s)
        self.memo.put(zone, wire, response)
        return response

    async def report(self) -> None:
        while True:
            await trio.sleep(REPORT_S)
            self.send_counts()

    def send_counts(self) -> None:
        counts = self.memo.take_counts()
        if counts:
            try:
                self.registry.tell(RESOLVER, ZoneAnswersServed(counts))
            except TrustChainError:  # restarting: counted with the next report
                self.memo.give_back(counts)


async def serve_doq(
    config: Config,
    registry: Registry,
    task_status: Any = trio.TASK_STATUS_IGNORED,
    endpoints: list[DoqEndpoint] | None = None,
) -> None:
    """Serve until cancelled; ``task_status.started(port)`` once datagrams are answered.
    ``endpoints``, if given, gets the endpoint (tests and benchmarks read its counters)."""
    resolver = config.resolver
    check_names(resolver.names, config.ca.permitted_zones)
    sock = bind_udp_ipv6(resolver.host, resolver.port)  # a port in use fails before the certificate
    subscription: int | None = None
    try:
        tls, subscription = await _certificate(config, registry)
        asking = ResolverClient(registry, config.runtime.request_timeout_s)
        endpoint = DoqEndpoint(
            sock,
            tls.current,
            asking.resolve,
            limits_of(resolver),
            resolver.max_connections,
            retry=resolver.retry,
        )
        if endpoints is not None:
            endpoints.append(endpoint)
        logger.info(
            "DNS over QUIC on udp [{}]:{} (certificate {!r})",
            resolver.host,
            endpoint.port,
            resolver.certificate,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(asking.report)
                await endpoint.serve(task_status)
                nursery.cancel_scope.cancel()
        finally:
            asking.send_counts()
    finally:
        sock.close()
        unfollow(registry, subscription)


async def _certificate(
    config: Config, registry: Registry
) -> tuple[Reloading[QuicConfiguration], int]:
    """The listener's certificate, followed through its renewals (``own_certificate``)."""
    resolver, timeout = config.resolver, config.runtime.request_timeout_s
    reloading = Reloading(lambda files: quic_configuration(files, resolver), resolver.certificate)
    subscription = await follow(registry, reloading, resolver.certificate, resolver.names, timeout)
    if subscription is None:
        raise DoqStartFailed(
            f"no certificate {resolver.certificate!r} after {FIRST_CERTIFICATE_TIMEOUT_S:g} s; "
            "see `trustchain send renewal get_renewal_status`"
        )
    return reloading, subscription
