"""ACME's errors: RFC 8555 §6.7 problem documents (RFC 7807), one exception carrying one.

Every refusal of the ACME server is an ``AcmeProblem``: its ``type`` is one of the
``urn:ietf:params:acme:error:*`` names of RFC 8555 §6.7 (and ``invalidProfile`` of the
profiles draft), with a ``detail`` that says what was wrong and what to do, the HTTP
status, extra headers (``Retry-After`` for ``rateLimited``), and ``subproblems`` per
identifier (§6.7.1). ``to_json`` is the ``application/problem+json`` body.

Imports nothing from the rest of TrustChain but its base error, so the sans-IO core,
the actor and the edge all name the same thing.
"""

from __future__ import annotations

from typing import Any

from trustchain.supervisors.errors import TrustChainError

ERROR_NS = "urn:ietf:params:acme:error:"
PROBLEM_JSON = "application/problem+json"

# Each type's default status (RFC 8555 §6.7 gives the types; the statuses follow
# Boulder's and pebble's usage). Unknown types are a bug, not a 500 in disguise.
STATUS = {
    "accountDoesNotExist": 400,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "caa": 403,
    "compound": 400,
    "connection": 400,
    "dns": 400,
    "externalAccountRequired": 401,
    "incorrectResponse": 403,
    "invalidContact": 400,
    "invalidProfile": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rateLimited": 429,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "tls": 400,
    "unauthorized": 403,
    "unsupportedContact": 400,
    "unsupportedIdentifier": 400,
    "userActionRequired": 403,
    "conflict": 409,  # keyChange to a key another account holds (RFC 8555 §7.3.5)
    "methodNotAllowed": 405,  # GET where only POST(-as-GET) is served
    "unsupportedMediaType": 415,  # a body that is not application/jose+json
}


class AcmeProblem(TrustChainError):
    """One ACME problem document; raise it anywhere in the ACME server."""

    code = "acme_problem"

    def __init__(
        self,
        type_: str,
        detail: str,
        *,
        status: int | None = None,
        headers: list[tuple[str, str]] | None = None,
        subproblems: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if type_ not in STATUS:
            raise ValueError(f"no ACME error type {type_!r}")
        super().__init__(detail)
        self.type = type_
        self.detail = detail
        self.status = status if status is not None else STATUS[type_]
        self.headers = list(headers or [])
        self.subproblems = list(subproblems or [])
        self.extra = dict(extra or {})

    @property
    def urn(self) -> str:
        return ERROR_NS + self.type

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.urn, "detail": self.detail, "status": self.status}
        if self.subproblems:
            body["subproblems"] = self.subproblems
        body.update(self.extra)
        return body


def subproblem(type_: str, detail: str, identifier: dict[str, str]) -> dict[str, Any]:
    """One identifier's problem inside a compound one (RFC 8555 §6.7.1)."""
    return {"type": ERROR_NS + type_, "detail": detail, "identifier": identifier}
