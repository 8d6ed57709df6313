"""The HTTP edge's ASGI 3 app: the routes, each one ``ask`` to an actor.

Routes (a small router over ``scope["path"]``, see ``http_plumbing``; a path
that matches with another method gets 405 and ``Allow``, no match 404):

- ``/ct/v1/*``, ``/checkpoint``, ``/tile/...``, ``/issuer/<fp>``: the CT log
  (RFC 6962 §4 and static-ct-api, see ``http_ct``);
- ``/crl/<label>.crl`` (DER, application/pkix-crl) and ``/ca/<label>.cer`` (DER,
  application/pkix-cert): the URLs the issuer writes into certificates;
- ``/health``: 200 while the log's signed tree head (its checkpoint) is no older
  than ``http.max_sth_age_s`` (the log re-signs it when idle), else 503;
  ``/ready``: 200 when every actor is running and no resource is failing, else
  503 naming the actors that are not running and the failing resources (which
  actor, which resource, since when, the last error);
  ``/metrics``: Prometheus text, actors and log read afresh per scrape
  (``http_metrics``).

Every handler is one ``ask`` to an actor (``runtime.request_timeout_s``). Errors
are JSON ``{"error": {"code": code, "message": message}}``, as on the control
socket, with the status for the code (``http_plumbing.STATUS``); anything else
is a 500 that names no internals (the log does). JSON bodies are parsed as
untrusted (``loads_json``): too deep, NaN, or an integer past the digit limit
is a 400 like any other invalid JSON. A body over ``http.max_body_bytes``
gets 413 from its Content-Length, or without one at the first byte past the
limit.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from loguru import logger
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from trustchain.actors.acme.messages import GetAcmeStatus
from trustchain.actors.ca import IssuerNotValid
from trustchain.actors.ctlog.messages import GetLogInfo
from trustchain.actors.detector.messages import GetTrustStatus
from trustchain.actors.issuer.messages import GetCAStatus, GetCRL, GetIssuanceStatus
from trustchain.actors.locks import acme_runs
from trustchain.actors.monitor.messages import GetMonitorStatus
from trustchain.config import Config
from trustchain.protocols.http_acme import AcmeRoutes
from trustchain.protocols.http_ct import CtRoutes
from trustchain.protocols.http_metrics import BUCKETS_S, HealthSnapshot
from trustchain.protocols.http_plumbing import (
    INTERNAL_ERROR,
    NO_STORE,
    NotFound,
    Request,
    Response,
    Route,
    error_response,
    find_route,
    json_response,
    route,
)
from trustchain.supervisors import ActorState, Message, Registry, TrustChainError, ask
from trustchain.supervisors.messages import loads_json

_LABEL = r"([A-Za-z0-9][A-Za-z0-9._-]{0,63})"


class _Request(Request):
    """``http_plumbing.Request`` whose JSON body is parsed as untrusted input (400, never 500)."""

    async def json(self) -> Any:
        return loads_json(await self.body(), "the body")


class HttpApp:
    """The ASGI 3 application: route, ask an actor, answer; count every request."""

    def __init__(self, config: Config, registry: Registry) -> None:
        self.registry = registry
        self.timeout = config.runtime.request_timeout_s
        self.max_body = config.http.max_body_bytes
        self.max_sth_age_s = config.http.max_sth_age_s
        self.routes: list[Route] = [
            *CtRoutes(self.ask).routes(),
            route("/crl/{label}.crl", "GET", self.crl, rf"/crl/{_LABEL}\.crl"),
            route("/ca/{label}.cer", "GET", self.ca_certificate, rf"/ca/{_LABEL}\.cer"),
            route("/health", "GET", self.health),
            route("/ready", "GET", self.ready),
            route("/metrics", "GET", self.metrics),
            *(AcmeRoutes(self.ask, config).routes() if acme_runs(config) else []),
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
            reply = await self.ask("issuer", GetCRL(ca=label))
        except IssuerNotValid:
            raise NotFound(f"no CRL for {label!r}") from None
        return Response(200, _der(reply["crl"]), "application/pkix-crl",
                        [("cache-control", "public, max-age=60")])  # fmt: skip

    async def ca_certificate(self, request: Request) -> Response:
        assert request.match is not None
        label = request.match[1]
        for ca in await self.ask("issuer", GetCAStatus()):
            if ca["key_label"] == label:
                return Response(200, _der(ca["certificate"]), "application/pkix-cert",
                                [("cache-control", "public, max-age=3600")])  # fmt: skip
        raise NotFound(f"no current CA certificate {label!r}")

    # Operations --------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        try:
            info = await self.ask("ctlog", GetLogInfo())
        except TrustChainError as exc:
            reason = f"the CT log did not answer: {exc.message}"
            return _no_store({"status": "unhealthy", "reason": reason}, 503)
        age = info["sth_age_s"]
        if age > self.max_sth_age_s:
            reason = f"the tree head is {age:.1f} s old (limit {self.max_sth_age_s:g} s)"
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
            info: dict[str, Any] | None = await self.ask("ctlog", GetLogInfo())
        except TrustChainError:
            info = None  # the scrape still shows the actors, and that ctlog is not running
        try:
            monitor: dict[str, Any] | None = await self.ask("monitor", GetMonitorStatus())
        except TrustChainError:
            monitor = None
        try:  # the consensus runs with trust.enabled only
            trust: dict[str, Any] | None = await self.ask("detector", GetTrustStatus())
        except TrustChainError:
            trust = None
        try:  # ACME runs with [acme], [trust] and [http]
            acme: dict[str, Any] | None = await self.ask("acme", GetAcmeStatus())
        except TrustChainError:
            acme = None
        try:
            issuance: dict[str, Any] | None = await self.ask("issuer", GetIssuanceStatus())
        except TrustChainError:
            issuance = None
        scrape = CollectorRegistry(auto_describe=False)
        snapshot = HealthSnapshot(self.registry.health(), info, monitor, trust, acme, issuance)
        for collector in (self.requests, self.latency, self.in_flight, snapshot):
            scrape.register(collector)
        return Response(200, generate_latest(scrape), CONTENT_TYPE_LATEST)


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
