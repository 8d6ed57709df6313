"""The ACME actor's vocabulary (``acme`` in the tree): what the HTTPS edge asks it.

``AcmeRequest`` is one HTTP request under ``/acme/`` as the client made it; the actor
answers every one, refusals included, with an HTTP answer as a plain dict::

    {"status": 201, "headers": [["Location", "https://..."], ...],
     "body": b"{...}", "content_type": "application/json"}

(refusals are RFC 7807 problem documents, ``application/problem+json``). The edge
writes it out as it is. ``GetAcmeStatus`` is a query for ``trustchain status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from trustchain.supervisors import Message
from trustchain.supervisors.messages import Bounds

Url = Annotated[str, Bounds(min_length=1, max_length=2_048)]
Body = Annotated[bytes, Bounds(max_length=1_048_576)]  # the edge's http.max_body_bytes at most


@dataclass(frozen=True)
class AcmeRequest(Message):
    """One HTTP request under ``/acme/``: ``method`` (GET, HEAD, POST), ``url`` the
    absolute URL the client used (``https://host[:port]/acme/...``: a JWS names it and
    must match it, RFC 8555 §6.4), the ``body`` (a flattened JWS for POST) and its
    ``content_type``. Answered with ``{"status", "headers", "body", "content_type"}``."""

    method: Annotated[str, Bounds(min_length=1, max_length=8)]
    url: Url
    body: Body = b""
    content_type: Annotated[str, Bounds(max_length=256)] = ""


@dataclass(frozen=True)
class GetAcmeStatus(Message):
    """Counts for status and metrics: ``{"accounts", "orders": {status: n},
    "authorizations": {status: n}, "challenges": {"validated", "failed", "processing"},
    "certificates", "nonces", "validations_in_flight", "issuances_in_flight",
    "commits": {"groups", "members"}}`` (the group commits since the actor started, and
    the requests and results they held)."""

    query = True  # a read: answered ahead of the requests queued
