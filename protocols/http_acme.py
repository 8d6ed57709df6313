"""The ACME routes of the HTTPS edge (RFC 8555), over one AcmeActor (``acme``).

Every request under ``/acme/`` (GET, HEAD, POST) becomes one ``AcmeRequest`` carrying
the absolute URL the client used -- ``acme.base_url`` and the path when it is set,
else ``https://<Host><path>`` -- because a JWS names that URL and the server checks it
(RFC 8555 §6.4). The actor's answer (status, headers, body, content type) is written
out as it is: the actor decides everything, refusals included.

When the actor cannot answer (not running, restarting, a timeout) or the request cannot
be made into a message (too large), the answer is still an ACME problem document
(``application/problem+json``; ``serverInternal`` with 503 and Retry-After, or
``malformed``), never TrustChain's ``{"error": ...}`` shape, which ACME clients cannot
read. Those answers carry no Replay-Nonce (only the actor holds nonces); clients fetch
one from newNonce.
"""

from __future__ import annotations

import json
import re

from trustchain.actors.acme.messages import AcmeRequest
from trustchain.actors.acme.problems import PROBLEM_JSON, AcmeProblem
from trustchain.config import Config
from trustchain.protocols.http_plumbing import Ask, Request, Response, Route, route
from trustchain.supervisors import TrustChainError

ACTOR = "acme"
RETRY_AFTER_S = 1
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")


def problem_response(problem: AcmeProblem) -> Response:
    body = json.dumps(problem.to_json(), indent=2).encode()
    return Response(problem.status, body, PROBLEM_JSON, list(problem.headers))


class AcmeRoutes:
    """``/acme/...`` over the ``acme`` actor; ``config`` is the whole configuration."""

    def __init__(self, ask: Ask, config: Config, actor: str = ACTOR) -> None:
        self._ask = ask
        self.actor = actor
        base = config.acme.base_url.rstrip("/")
        self.base = base.removesuffix("/acme") if base else ""
        self.scheme = "https" if config.http.tls else "http"
        self.default_host = f"[{config.http.host}]:{config.http.port}"

    def routes(self) -> list[Route]:
        return [route("/acme/{path}", "GET POST", self.handle, r"/acme/(.*)")]

    def url_of(self, request: Request) -> str:
        """The absolute URL the client used (or the configured one)."""
        if self.base:
            return self.base + request.path
        host = request.headers.get("host", "")
        if not _HOST.fullmatch(host):
            host = self.default_host
        return f"{self.scheme}://{host}{request.path}"

    async def handle(self, request: Request) -> Response:
        try:
            body = await request.body() if request.method == "POST" else b""
            message = AcmeRequest(request.method, self.url_of(request), body,
                                  request.headers.get("content-type", ""))  # fmt: skip
        except TrustChainError as exc:  # too large, or a bound of the message
            status = 413 if exc.code == "body_too_large" else 400
            return problem_response(AcmeProblem("malformed", exc.message, status=status))
        try:
            answer = await self._ask(self.actor, message)
        except TrustChainError as exc:
            return problem_response(AcmeProblem(
                "serverInternal",
                f"the ACME server is not available ({exc.code}); try again shortly",
                status=503, headers=[("Retry-After", str(RETRY_AFTER_S))],
            ))  # fmt: skip
        headers = [(str(name), str(value)) for name, value in answer["headers"]]
        return Response(answer["status"], answer["body"], answer["content_type"], headers)
