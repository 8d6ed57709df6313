"""Serving the HTTP edge: socket, TLS, hypercorn on trio, the plain-http face, lifecycle.

Our own socket, IPV6_V6ONLY set before bind (hypercorn would leave the kernel
default, which lets IPv4-mapped peers in), and TLS from TrustChain's own
certificate: hypercorn's ``Config`` is subclassed so ``create_ssl_context()``
returns ``EdgeTLS.listener_context()``, whose SNI callback gives every handshake
the newest renewed certificate. Before asking for that certificate, its names
are checked against ``ca.permitted_zones`` (the zone rule of
``actors.ca.names``). ``PublicOnly`` serves CRLs and CA certificates over plain
http. Cancelling ``serve_http`` is its graceful stop.
Not done here: HTTP/3; issuance and revocation (the control socket has them).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import socket
import ssl
from typing import Any

import hypercorn.config
import hypercorn.trio
import trio
from loguru import logger

from trustchain.config import Config
from trustchain.protocols.http_app import HttpApp
from trustchain.protocols.http_plumbing import error_body
from trustchain.protocols.own_certificate import (
    FIRST_CERTIFICATE_TIMEOUT_S,
    follow,
    outside_zones,
    unfollow,
)
from trustchain.protocols.tls_reload import CertificateFiles, ReloadingSSLContext, server_context
from trustchain.supervisors import Registry, TrustChainError

ALPN = ("h2", "http/1.1")


class HttpStartFailed(TrustChainError):
    """The HTTPS edge cannot start: its config, its socket or its certificate."""

    code = "http_start_failed"


def bind_ipv6(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``[host]:port`` that never answers IPv4 (IPV6_V6ONLY)."""
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise HttpStartFailed(f"http.host must be an IPv6 address, not {host!r}") from None
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise HttpStartFailed(f"cannot listen on [{host}]:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


class HypercornConfig(hypercorn.config.Config):
    """hypercorn's Config, but serving our socket with our (reloading) TLS context."""

    def __init__(self, sock: socket.socket, tls: EdgeTLS | None, drain_s: float):
        super().__init__()
        host, port = sock.getsockname()[:2]
        self.bind = [f"[{host}]:{port}"]
        self.graceful_timeout = drain_s
        self.alpn_protocols = list(ALPN)
        self.accesslog = None
        self.errorlog = logging.getLogger("hypercorn.error")  # on to loguru (protocols.logs)
        self.errorlog.setLevel(logging.WARNING)  # its "Running on" line: we say it ourselves
        self._sock, self._tls = sock, tls

    @property
    def ssl_enabled(self) -> bool:
        return self._tls is not None

    def create_sockets(self) -> hypercorn.config.Sockets:
        secure = [self._sock] if self._tls is not None else []
        return hypercorn.config.Sockets(secure, [] if secure else [self._sock], [])

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return None if self._tls is None else self._tls.listener_context()


class EdgeTLS(ReloadingSSLContext):
    """Each renewed certificate's context also gets hypercorn's TLS settings: the context
    a handshake switches to decides the cipher suite, and h2 over TLS 1.2 wants AEAD
    suites only and no compression (RFC 7540 §9.2)."""

    def __init__(self, name: str, ciphers: str) -> None:
        super().__init__(name, ALPN)
        self._build = functools.partial(_edge_context, ciphers=ciphers)


def _edge_context(files: CertificateFiles, ciphers: str) -> ssl.SSLContext:
    context = server_context(files, ALPN)
    context.set_ciphers(ciphers)
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def check_names(names: list[str], zones: list[str]) -> None:
    """Refuse, before asking for it, a certificate the CA's policy would refuse."""
    bad = outside_zones(names, zones)
    if bad is not None:
        raise HttpStartFailed(f"http.names: {bad!r} is neither an IPv6 address nor inside "
                              f"ca.permitted_zones ({', '.join(zones)})")  # fmt: skip


class PublicOnly:
    """The plain-http face: CRLs and CA certificates, nothing else (404).

    Relying parties fetch these over http (BRs §7.1.2.11: CRL and caIssuers
    URLs are http); everything else stays behind TLS.
    """

    PREFIXES = ("/crl/", "/ca/")

    def __init__(self, app: HttpApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self.PREFIXES):
            only = "only /crl/ and /ca/ are served over plain http"
            body = json.dumps(error_body("not_found", only)).encode()
            headers = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode())]  # fmt: skip
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


async def serve_http(
    config: Config, registry: Registry, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until cancelled; ``task_status.started(port)`` once connections are accepted.

    Cancellation is the graceful stop: no new connection is accepted, requests in
    flight get ``runtime.drain_timeout_s``, then what is left is cut.
    """
    http, drain_s = config.http, config.runtime.drain_timeout_s
    if http.tls:
        check_names(http.names, config.ca.permitted_zones)
    sock = bind_ipv6(http.host, http.port)  # a port in use fails now, not after the certificate
    plain = bind_ipv6(http.host, http.plain_port) if http.tls and http.plain_port >= 0 else None
    subscription: int | None = None
    try:
        tls = None
        if http.tls:
            tls, subscription = await _certificate(config, registry)
        hyper = HypercornConfig(sock, tls, drain_s)
        port = sock.getsockname()[1]
        app = HttpApp(config, registry)
        async with trio.open_nursery() as nursery:
            stopping = trio.Event()
            await nursery.start(_hypercorn, app, hyper, stopping, drain_s)
            logger.info("HTTP edge serving on {}://[{}]:{}", "https" if tls else "http",
                        http.host, port)  # fmt: skip
            if plain is not None:
                plain_config = HypercornConfig(plain, None, drain_s)
                await nursery.start(_hypercorn, PublicOnly(app), plain_config, stopping, drain_s)
                logger.info("CRLs and CA certificates on http://[{}]:{}/crl/ and /ca/",
                            http.host, plain.getsockname()[1])  # fmt: skip
            task_status.started(port)
            try:
                await trio.sleep_forever()
            finally:
                stopping.set()
    finally:
        sock.close()
        if plain is not None:
            plain.close()
        unfollow(registry, subscription)


async def _hypercorn(app: HttpApp, hyper: HypercornConfig, stopping: trio.Event, drain_s: float,
                     task_status: Any = trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
    """hypercorn, shielded from the cancel that stops us: ``stopping`` triggers its own
    graceful shutdown instead, and a deadline bounds it."""
    with trio.CancelScope(shield=True) as scope:

        async def shutdown_trigger() -> None:
            await stopping.wait()
            scope.deadline = trio.current_time() + drain_s + 1.0

        await hypercorn.trio.serve(app, hyper, shutdown_trigger=shutdown_trigger,  # type: ignore[arg-type]
                                   task_status=task_status)  # fmt: skip


async def _certificate(config: Config, registry: Registry) -> tuple[EdgeTLS, int]:
    """The edge's certificate, followed through its renewals (``own_certificate``)."""
    http, timeout = config.http, config.runtime.request_timeout_s
    reloading = EdgeTLS(http.certificate, hypercorn.config.Config.ciphers)
    subscription = await follow(registry, reloading, http.certificate, http.names, timeout)
    if subscription is None:
        raise HttpStartFailed(
            f"no certificate {http.certificate!r} after {FIRST_CERTIFICATE_TIMEOUT_S:g} s; "
            "see `trustchain send renewal get_renewal_status`"
        )
    return reloading, subscription
