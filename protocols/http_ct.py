"""The HTTP edge's vocabulary (requests, responses, routes, errors), and the CT routes.

RFC 6962 §4 under ``/ct/v1/`` (add-chain, add-pre-chain, get-sth,
get-sth-consistency, get-proof-by-hash, get-entries, get-roots,
get-entry-and-proof) and the C2SP static-ct-api read path at the top level
(``/checkpoint``, ``/tile/<L>/<N>[.p/<W>]``, ``/tile/data/<N>[.p/<W>]``,
``/issuer/<hex SHA-256>``). Each route turns a request into one CTLogActor
message; the actor checks chains, ranges and sizes, this module checks only
the shape of what arrives: JSON bodies, base64, and query parameters, which
are decimal integers in 0..2^63-1 (a larger number is refused, not clamped).
A ``+`` in a base64 query value that a client forgot to escape arrives as a
space and is read back as ``+``. Nothing here appends on an error: a
submission reaches the actor only once all of it has parsed.

Full tiles and issuer certificates never change, so they are served
``immutable``; partial tiles (replaced by wider ones, then deleted) and the
checkpoint are ``no-store``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from loguru import logger

from trustchain.actors.ct import LogCorrupted
from trustchain.actors.ctlog import (
    AddChain,
    AddPreChain,
    GetCheckpoint,
    GetConsistency,
    GetEntries,
    GetEntryAndProof,
    GetIssuer,
    GetProofByHash,
    GetRoots,
    GetSTH,
    GetTile,
)
from trustchain.supervisors import InvalidRequest, Message, TrustChainError, to_jsonable

MAX_PARAMETER = 2**63 - 1  # what CT clients (int64) can send
IMMUTABLE = "public, max-age=604800, immutable"
NO_STORE = "no-store"
SCT_FIELDS = ("sct_version", "id", "timestamp", "extensions", "signature")  # RFC 6962 §4.1
STATUS = {
    "invalid_chain": 400, "invalid_request": 400, "invalid_log_entry": 400,
    "index_out_of_range": 400, "tree_size_out_of_range": 400, "malformed_ct_structure": 400,
    "not_found": 404, "tile_not_found": 404, "method_not_allowed": 405, "body_too_large": 413,
    "log_busy": 503, "actor_unavailable": 503, "timeout": 503,
    "log_unavailable": 503, "hsm_unavailable": 503,
}  # fmt: skip
"""HTTP status by error ``code``; any other code is a 500 that tells the client nothing."""


class NotFound(TrustChainError):
    code = "not_found"


class MethodNotAllowed(TrustChainError):
    code = "method_not_allowed"


class BodyTooLarge(TrustChainError):
    code = "body_too_large"


# The vocabulary ---------------------------------------------------------------------


@dataclass
class Request:
    """One HTTP request as ASGI gave it; the body is read only when a route asks."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    receive: Callable[[], Awaitable[dict[str, Any]]]
    max_body: int
    match: re.Match[str] | None = None

    @classmethod
    def from_scope(cls, scope: dict[str, Any], receive: Any, max_body: int) -> Request:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        return cls(scope["method"], scope["path"], query, headers, receive, max_body)

    def check_declared_length(self) -> None:
        """413 from the Content-Length alone, before a byte of the body is read."""
        declared = self.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_body:
            raise BodyTooLarge(f"the body is {declared} bytes; at most {self.max_body} are taken")

    async def body(self) -> bytes:
        """The whole body, refused as soon as it passes ``max_body``."""
        chunks, size = [], 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequest("the client went away before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(f"the body is over {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def json(self) -> Any:
        try:
            return json.loads(await self.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"the body is not valid JSON: {exc}") from None

    def param(self, name: str) -> str:
        values = self.query.get(name)
        if not values:
            raise InvalidRequest(f"missing query parameter {name!r}")
        if len(values) > 1:
            raise InvalidRequest(f"query parameter {name!r} is given more than once")
        return values[0]

    def int_param(self, name: str) -> int:
        raw = self.param(name)
        if not re.fullmatch(r"[0-9]+", raw):
            raise InvalidRequest(f"{name!r} must be a non-negative decimal integer, not {raw!r}")
        if len(raw) > 19 or int(raw) > MAX_PARAMETER:
            raise InvalidRequest(f"{name!r} is too large (at most {MAX_PARAMETER})")
        return int(raw)

    def base64_param(self, name: str) -> bytes:
        return decode_base64(self.param(name).replace(" ", "+"), name)


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def asgi_headers(self) -> list[tuple[bytes, bytes]]:
        head = [("content-type", self.content_type), ("content-length", str(len(self.body)))]
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in head + self.headers]


def json_response(
    value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = json.dumps(to_jsonable(value), separators=(",", ":")).encode()
    return Response(status, body, "application/json", headers or [])


INTERNAL_ERROR = json_response({"error": "internal error", "code": "internal_error"}, 500)
Handler = Callable[[Request], Awaitable[Response]]
Ask = Callable[[str, Message], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    name: str  # the pattern as people write it; also the metrics label
    pattern: re.Pattern[str]
    methods: frozenset[str]
    handler: Handler


def route(name: str, methods: str, handler: Handler, pattern: str | None = None) -> Route:
    """``methods`` like "GET" or "POST"; GET routes answer HEAD too."""
    allowed = set(methods.split())
    if "GET" in allowed:
        allowed.add("HEAD")
    return Route(name, re.compile(pattern or re.escape(name)), frozenset(allowed), handler)


def find_route(routes: list[Route], request: Request) -> tuple[Route, re.Match[str]]:
    allowed: set[str] = set()
    for candidate in routes:
        match = candidate.pattern.fullmatch(request.path)
        if match is None:
            continue
        if request.method in candidate.methods:
            return candidate, match
        allowed |= candidate.methods
    if allowed:
        raise MethodNotAllowed(f"{request.method} is not allowed on {request.path}",
                               allow=", ".join(sorted(allowed)))  # fmt: skip
    raise NotFound(f"nothing at {request.path}")


def error_response(exc: TrustChainError, what: str) -> Response:
    """``{"error", "code"}`` with the status for its code; a 500 is logged, not explained."""
    status = STATUS.get(exc.code, 500)
    if status == 500:
        logger.error("http: {}: {} [{}]", what, exc.message, exc.code)
        return INTERNAL_ERROR
    headers = []
    if status == 503:
        headers.append(("retry-after", str(exc.details.get("retry_after_s", 1))))
    if exc.code == "method_not_allowed":
        headers.append(("allow", exc.details["allow"]))
    return json_response({"error": exc.message, "code": exc.code}, status, headers)


def decode_base64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidRequest(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{what} is not valid base64") from None


# The CT routes ----------------------------------------------------------------------


class CtRoutes:
    """RFC 6962 §4 and the static-ct-api read path over one CTLogActor."""

    def __init__(self, ask: Ask, actor: str = "ctlog") -> None:
        self._ask = ask
        self.actor = actor

    def routes(self) -> list[Route]:
        v1 = "/ct/v1/"
        return [
            route(v1 + "add-chain", "POST", self.add_chain),
            route(v1 + "add-pre-chain", "POST", self.add_pre_chain),
            route(v1 + "get-sth", "GET", self.get_sth),
            route(v1 + "get-sth-consistency", "GET", self.get_sth_consistency),
            route(v1 + "get-proof-by-hash", "GET", self.get_proof_by_hash),
            route(v1 + "get-entries", "GET", self.get_entries),
            route(v1 + "get-roots", "GET", self.get_roots),
            route(v1 + "get-entry-and-proof", "GET", self.get_entry_and_proof),
            route("/checkpoint", "GET", self.checkpoint),
            route("/tile/{path}", "GET", self.tile, r"/tile/(.+)"),
            route("/issuer/{fingerprint}", "GET", self.issuer, r"/issuer/([0-9a-fA-F]{64})"),
        ]

    async def ask(self, message: Message) -> Any:
        return await self._ask(self.actor, message)

    # RFC 6962 §4 ----------------------------------------------------------------------

    async def add_chain(self, request: Request) -> Response:
        return await self._submit(request, AddChain)

    async def add_pre_chain(self, request: Request) -> Response:
        return await self._submit(request, AddPreChain)

    async def _submit(self, request: Request, kind: type[AddChain] | type[AddPreChain]) -> Response:
        body = await request.json()
        chain = body.get("chain") if isinstance(body, dict) else None
        if not isinstance(chain, list):
            raise InvalidRequest('the body must be {"chain": [base64 DER certificate, ...]}')
        ders = [decode_base64(c, f"chain[{i}]") for i, c in enumerate(chain)]
        reply = await self.ask(kind(ders))
        return json_response({k: reply[k] for k in SCT_FIELDS})

    async def get_sth(self, request: Request) -> Response:
        return json_response(await self.ask(GetSTH()))

    async def get_sth_consistency(self, request: Request) -> Response:
        first, second = request.int_param("first"), request.int_param("second")
        return json_response(await self.ask(GetConsistency(first, second)))

    async def get_proof_by_hash(self, request: Request) -> Response:
        leaf_hash = request.base64_param("hash")
        if len(leaf_hash) != 32:
            raise InvalidRequest(f"'hash' is a SHA-256 leaf hash (32 bytes), not {len(leaf_hash)}")
        message = GetProofByHash(leaf_hash, request.int_param("tree_size"))
        return json_response(await self.ask(message))

    async def get_entries(self, request: Request) -> Response:
        start, end = request.int_param("start"), request.int_param("end")
        if end < start:
            raise InvalidRequest(f"'end' ({end}) is before 'start' ({start})")
        return json_response(await self.ask(GetEntries(start, end)))

    async def get_roots(self, request: Request) -> Response:
        return json_response(await self.ask(GetRoots()))

    async def get_entry_and_proof(self, request: Request) -> Response:
        message = GetEntryAndProof(request.int_param("leaf_index"), request.int_param("tree_size"))
        return json_response(await self.ask(message))

    # static-ct-api ---------------------------------------------------------------------

    async def checkpoint(self, request: Request) -> Response:
        note = await self.ask(GetCheckpoint())
        return Response(200, note, "text/plain; charset=utf-8", [("cache-control", NO_STORE)])

    async def tile(self, request: Request) -> Response:
        path = request.path.removeprefix("/")
        data = await self.ask(GetTile(path))
        cache = NO_STORE if ".p/" in path else IMMUTABLE
        return Response(200, data, "application/octet-stream", [("cache-control", cache)])

    async def issuer(self, request: Request) -> Response:
        assert request.match is not None
        fingerprint = request.match[1].lower()
        try:
            der = await self.ask(GetIssuer(fingerprint))
        except LogCorrupted:  # the log says "missing or damaged"; to a client, it is not here
            raise NotFound(f"no issuer certificate with fingerprint {fingerprint}") from None
        return Response(200, der, "application/pkix-cert", [("cache-control", IMMUTABLE)])
