"""The HTTP edge's vocabulary: requests, responses, routes, errors and their statuses.

Generic plumbing under every route (``http_ct``'s and ``http_app``'s): a
``Request`` read from an ASGI scope (the body only when a route asks, refused
as soon as it passes ``max_body``; query parameters checked for shape),
a ``Response``, a small router (``route``, ``find_route``: a path that matches
with another method is a 405 with ``Allow``, no match a 404), and
``error_response``: ``{"error": {"code", "message"}}``, the control socket's
error object, with the status ``STATUS`` gives the code; any other code is a
500 that tells the client nothing (the log does).
Nothing here knows an actor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from loguru import logger

from trustchain.supervisors import InvalidRequest, Message, TrustChainError, to_jsonable
from trustchain.supervisors.messages import decode_base64

MAX_PARAMETER = 2**63 - 1  # what CT clients (int64) can send
IMMUTABLE = "public, max-age=604800, immutable"
NO_STORE = "no-store"
STATUS = {
    "invalid_chain": 400, "invalid_request": 400, "invalid_log_entry": 400,
    "index_out_of_range": 400, "tree_size_out_of_range": 400, "malformed_ct_structure": 400,
    "not_found": 404, "tile_not_found": 404, "method_not_allowed": 405, "body_too_large": 413,
    "log_busy": 503, "actor_unavailable": 503, "timeout": 503,
    "log_unavailable": 503, "hsm_unavailable": 503, "ca_store_unavailable": 503,
    "trust_store_unavailable": 503,
}  # fmt: skip
"""HTTP status by error ``code``; any other code is a 500 that tells the client nothing."""


class NotFound(TrustChainError):
    code = "not_found"


class MethodNotAllowed(TrustChainError):
    code = "method_not_allowed"


class BodyTooLarge(TrustChainError):
    code = "body_too_large"


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


def error_body(code: str, message: str) -> dict[str, Any]:
    """The one shape of an error, over HTTP as on the control socket."""
    return {"error": {"code": code, "message": message}}


INTERNAL_ERROR = json_response(error_body("internal_error", "internal error"), 500)
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
    """``{"error": {"code", "message"}}`` with the status for its code (``details`` too if
    the error has any, as on the control socket); a 500 is logged, not explained."""
    status = STATUS.get(exc.code, 500)
    if status == 500:
        logger.error("http: {}: {} [{}]", what, exc.message, exc.code)
        return INTERNAL_ERROR
    headers = []
    if status == 503:
        headers.append(("retry-after", str(exc.details.get("retry_after_s", 1))))
    if exc.code == "method_not_allowed":
        headers.append(("allow", exc.details["allow"]))
    return json_response({"error": exc.to_dict()}, status, headers)
