"""The error vocabulary shared by every layer.

A ``TrustChainError`` is a failure the *caller* caused or must handle (bad input,
a policy refusal, a resource that is not there). It travels back to the caller
as a typed reply and the actor that raised it lives on. Any other exception
is a bug: it crashes the actor that hit it and its supervisor restarts it.

Each subclass names what went wrong (``code``, a stable snake_case string that
the control socket and HTTP edges put on the wire) and its message says what
to do about it.
"""

from __future__ import annotations

from typing import Any


class TrustChainError(Exception):
    """Base of every error a user can cause; carried back to the caller."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidRequest(TrustChainError):
    """The request itself is malformed: wrong fields, wrong types, bad encoding."""

    code = "invalid_request"


class UnknownActor(TrustChainError):
    code = "unknown_actor"


class UnknownMessage(TrustChainError):
    code = "unknown_message"


class ActorUnavailable(TrustChainError):
    """The actor is down, restarting or stopped; the request was not handled."""

    code = "actor_unavailable"


class ActorCrashed(TrustChainError):
    """The actor crashed while handling this request; its supervisor restarts it."""

    code = "actor_crashed"


class RequestTimeout(TrustChainError):
    code = "timeout"
