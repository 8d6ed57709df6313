"""The HTTPS edge: a plain ASGI 3 app served by hypercorn on trio, IPv6 only.

Routes (a small router over ``scope["path"]``; a path that matches with another
method gets 405 and ``Allow``, no match 404):

- ``/ct/v1/*``, ``/checkpoint``, ``/tile/...``, ``/issuer/<fp>``: the CT log
  (RFC 6962 §4 and static-ct-api, see ``http_ct``);
- ``/crl/<label>.crl`` (DER, application/pkix-crl) and ``/ca/<label>.cer`` (DER,
  application/pkix-cert): the URLs the issuer writes into certificates;
- ``/health``: 200 while the log's checkpoint is younger than
  ``http.healthy_checkpoint_age_s`` (the log re-signs it when idle), else 503;
  ``/ready``: 200 when every actor is running and no resource is failing, else
  503 naming the actors that are not running and the failing resources (which
  actor, which resource, since when, the last error);
  ``/metrics``: Prometheus text, actors and log read afresh per scrape.

Every handler is one ``ask`` to an actor (``runtime.request_timeout_s``). Errors
are JSON ``{"error": message, "code": code}`` with the status for the code
(``http_ct.STATUS``); anything else is a 500 that names no internals (the log
does). JSON bodies are parsed as untrusted (``loads_json``): too deep, NaN, or
an integer past the digit limit is a 400 like any other invalid JSON. A body
over ``http.max_body_bytes`` gets 413 from its Content-Length, or without one
at the first byte past the limit.

Serving: our own socket, IPV6_V6ONLY set before bind (hypercorn would leave the
kernel default, which lets IPv4-mapped peers in), and TLS from TrustChain's own
certificate: hypercorn's ``Config`` is subclassed so ``create_ssl_context()``
returns ``EdgeTLS.listener_context()``, whose SNI callback gives every handshake
the newest renewed certificate. Cancelling ``serve_http`` is its graceful stop.
Not done here: HTTP/3; issuance and revocation (the control socket has them).
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import hypercorn.config
import hypercorn.trio
import trio
from loguru import logger
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trustchain.actors.ca import IssuerNotValid
from trustchain.actors.ct_monitor import AlertKind, MonitorStatus
from trustchain.actors.ctlog import LogInfo
from trustchain.actors.issuer import CAStatus, GetCRL
from trustchain.actors.renewal import RegisterCertificate, Subscribe, Unsubscribe
from trustchain.config import Config
from trustchain.protocols.http_ct import (
    INTERNAL_ERROR,
    NO_STORE,
    CtRoutes,
    NotFound,
    Request,
    Response,
    Route,
    error_response,
    find_route,
    json_response,
    route,
)
from trustchain.protocols.tls_reload import CertificateFiles, ReloadingSSLContext, server_context
from trustchain.supervisors import ActorState, Message, Registry, TrustChainError, ask
from trustchain.supervisors.messages import loads_json

ALPN = ("h2", "http/1.1")
FIRST_CERTIFICATE_TIMEOUT_S = 30.0
BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_LABEL = r"([A-Za-z0-9][A-Za-z0-9._-]{0,63})"


class HttpStartFailed(TrustChainError):
    """The HTTPS edge cannot start: its config, its socket or its certificate."""

    code = "http_start_failed"


class _Request(Request):
    """``http_ct.Request`` whose JSON body is parsed as untrusted input (400, never 500)."""

    async def json(self) -> Any:
        return loads_json(await self.body(), "the body")


class HttpApp:
    """The ASGI 3 application: route, ask an actor, answer; count every request."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.registry = registry
        self.timeout = config.runtime.request_timeout_s
        self.max_body = config.http.max_body_bytes
        self.healthy_age_s = config.http.healthy_checkpoint_age_s
        self.routes: list[Route] = [
            *CtRoutes(self.ask).routes(),
            route("/crl/{label}.crl", "GET", self.crl, rf"/crl/{_LABEL}\.crl"),
            route("/ca/{label}.cer", "GET", self.ca_certificate, rf"/ca/{_LABEL}\.cer"),
            route("/health", "GET", self.health),
            route("/ready", "GET", self.ready),
            route("/metrics", "GET", self.metrics),
        ]
        self.requests = Counter("trustchain_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=None)  # fmt: skip
        self.in_flight = Gauge("trustchain_http_in_flight", "Being answered", registry=None)
        self.latency = Histogram("trustchain_http_request_duration_seconds", "Time to answer",
                                 ["route", "status"], registry=None, buckets=BUCKETS_S)  # fmt: skip

    async def ask(self, actor: str, message: Message) -> Any:
        return await ask(self.registry, actor, message, self.timeout)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets: hypercorn refuses the upgrade when the app returns
        started = time.perf_counter()
        with self.in_flight.track_inprogress():
            name, response = await self._respond(scope, receive)
            await send({"type": "http.response.start", "status": response.status,
                        "headers": response.asgi_headers()})  # fmt: skip
            await send({"type": "http.response.body", "body": response.body})
        status = str(response.status)
        self.requests.labels(name, scope["method"], status).inc()
        self.latency.labels(name, status).observe(time.perf_counter() - started)

    async def _respond(self, scope: dict[str, Any], receive: Any) -> tuple[str, Response]:
        name = "unmatched"
        try:
            request = _Request.from_scope(scope, receive, self.max_body)
            request.check_declared_length()
            found, request.match = find_route(self.routes, request)
            name = found.name
            return name, await found.handler(request)
        except TrustChainError as exc:
            return name, error_response(exc, f"{scope['method']} {scope['path']}")
        except Exception:  # a bug in the edge: answer 500, log it, keep serving
            logger.exception("http: {} {} failed", scope["method"], scope["path"])
            return name, INTERNAL_ERROR

    # The CA ------------------------------------------------------------------------------

    async def crl(self, request: Request) -> Response:
        assert request.match is not None
        label = request.match[1]
        try:
            reply = await self.ask("issuer", GetCRL(label))
        except IssuerNotValid:
            raise NotFound(f"no CRL for {label!r}") from None
        return Response(200, _der(reply["crl"]), "application/pkix-crl",
                        [("cache-control", "public, max-age=60")])  # fmt: skip

    async def ca_certificate(self, request: Request) -> Response:
        assert request.match is not None
        label = request.match[1]
        for ca in await self.ask("issuer", CAStatus()):
            if ca["key_label"] == label:
                return Response(200, _der(ca["certificate"]), "application/pkix-cert",
                                [("cache-control", "public, max-age=3600")])  # fmt: skip
        raise NotFound(f"no current CA certificate {label!r}")

    # Operations --------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        try:
            info = await self.ask("ctlog", LogInfo())
        except TrustChainError as exc:
            reason = f"the CT log did not answer: {exc.message}"
            return _no_store({"status": "unhealthy", "reason": reason}, 503)
        age = info["sth_age_s"]
        if age > self.healthy_age_s:
            reason = f"the last checkpoint is {age:.1f} s old (limit {self.healthy_age_s:g} s)"
            return _no_store({"status": "unhealthy", "reason": reason, "sth_age_s": age}, 503)
        return _no_store({"status": "healthy", "tree_size": info["tree_size"], "sth_age_s": age})

    async def ready(self, request: Request) -> Response:
        health = self.registry.health()
        waiting = {a["name"]: a["state"] for a in health if a["state"] != ActorState.RUNNING.value}
        # A resource an actor depends on (the log's disk, the HSM token) is failing:
        # the actor answers with a typed error and retries it; not ready meanwhile.
        down = [{"actor": a["name"], **f} for a in health for f in a.get("faults", ())]
        if waiting or down:
            body: dict[str, Any] = {"status": "not ready"}
            if waiting:
                body["not_running"] = waiting
            if down:
                body["faults"] = down
            return _no_store(body, 503)
        return _no_store({"status": "ready", "actors": len(health)})

    async def metrics(self, request: Request) -> Response:
        try:
            info: dict[str, Any] | None = await self.ask("ctlog", LogInfo())
        except TrustChainError:
            info = None  # the scrape still shows the actors, and that ctlog is not running
        try:
            monitor: dict[str, Any] | None = await self.ask("monitor", MonitorStatus())
        except TrustChainError:
            monitor = None
        scrape = CollectorRegistry(auto_describe=False)
        snapshot = _Snapshot(self.registry.health(), info, monitor)
        for collector in (self.requests, self.latency, self.in_flight, snapshot):
            scrape.register(collector)
        return Response(200, generate_latest(scrape), CONTENT_TYPE_LATEST)


class _Snapshot(Collector):
    """The actors' health and the log's size, as read for this one scrape."""

    def __init__(
        self,
        health: list[dict[str, Any]],
        log_info: dict[str, Any] | None,
        monitor: dict[str, Any] | None = None,
    ) -> None:
        self.health, self.log_info, self.monitor = health, log_info, monitor

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily("trustchain_actor_restarts", "Restarts by the supervisor",
                                       labels=["actor"])  # fmt: skip
        handled = CounterMetricFamily("trustchain_actor_handled", "Messages handled",
                                      labels=["actor"])  # fmt: skip
        mailbox = GaugeMetricFamily("trustchain_actor_mailbox", "Messages waiting",
                                    labels=["actor"])  # fmt: skip
        state = GaugeMetricFamily("trustchain_actor_state", "1 for the state the actor is in",
                                  labels=["actor", "state"])  # fmt: skip
        for actor in self.health:
            name = actor["name"]
            restarts.add_metric([name], actor["restarts"])
            handled.add_metric([name], actor["handled"])
            mailbox.add_metric([name], actor["mailbox"])
            for s in ActorState:
                state.add_metric([name, s.value], 1.0 if actor["state"] == s.value else 0.0)
        yield from (restarts, handled, mailbox, state)
        if self.log_info is not None:
            info = self.log_info
            yield GaugeMetricFamily("trustchain_ct_tree_size", "Entries in the CT log",
                                    value=info["tree_size"])  # fmt: skip
            yield GaugeMetricFamily("trustchain_ct_sth_age_seconds", "Age of the signed tree head",
                                    value=info["sth_age_s"])  # fmt: skip
            yield GaugeMetricFamily("trustchain_ct_pool", "Submissions waiting to be sequenced",
                                    value=info["pool"])  # fmt: skip
        if self.monitor is not None:
            alerts = CounterMetricFamily("trustchain_ct_monitor_alerts",
                                         "Misbehaviour the CT monitor saw, by kind",
                                         labels=["kind"])  # fmt: skip
            for kind in AlertKind:
                alerts.add_metric([kind.value], self.monitor["alerts"].get(kind.value, 0))
            yield alerts
            verified = (self.monitor.get("verified") or {}).get("tree_size", 0)
            yield GaugeMetricFamily(
                "trustchain_ct_monitor_verified_tree_size",
                "Largest tree head the monitor verified",
                value=verified,
            )


def _no_store(value: dict[str, Any], status: int = 200) -> Response:
    return json_response(value, status, [("cache-control", NO_STORE)])


def _der(pem: str) -> bytes:
    """The first PEM block's DER bytes (a certificate or a CRL)."""
    lines = pem.strip().splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("-----END"))
    return base64.b64decode("".join(lines[1:end]))


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# Serving -------------------------------------------------------------------------------


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
    suffixes = [z.strip(".").lower() for z in zones]
    for name in names:
        with suppress(ValueError):
            ipaddress.IPv6Address(name)
            continue
        n = name.strip(".").lower()
        if not any(n == z or n.endswith("." + z) for z in suffixes):
            raise HttpStartFailed(f"http.names: {name!r} is neither an IPv6 address nor inside "
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
            body = (
                b'{"error": "only /crl/ and /ca/ are served over plain http", "code": "not_found"}'
            )
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
        if subscription is not None:
            with suppress(TrustChainError):
                registry.tell("renewal", Unsubscribe(subscription))


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
    """Register the edge's certificate with the renewal actor, follow its renewals, and
    wait (bounded) for the first one."""
    http, timeout = config.http, config.runtime.request_timeout_s
    reloading = EdgeTLS(http.certificate, hypercorn.config.Config.ciphers)
    arrived = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def on_bundle(bundle: Any) -> None:  # on the renewal actor's thread
        reloading(bundle)
        with suppress(trio.RunFinishedError):
            token.run_sync_soon(arrived.set)

    await ask(registry, "renewal", RegisterCertificate(http.certificate, list(http.names)), timeout)
    subscription = await ask(registry, "renewal", Subscribe(http.certificate, on_bundle), timeout)
    with trio.move_on_after(FIRST_CERTIFICATE_TIMEOUT_S):
        await arrived.wait()
    if reloading.bundle is None:
        with suppress(TrustChainError):
            registry.tell("renewal", Unsubscribe(subscription))
        raise HttpStartFailed(
            f"no certificate {http.certificate!r} after {FIRST_CERTIFICATE_TIMEOUT_S:g} s; "
            "see `trustchain send renewal renewal_status`"
        )
    return reloading, subscription
