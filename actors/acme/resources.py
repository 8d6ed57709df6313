"""ACME's resources as the client sees them: their URLs, their JSON (RFC 8555 §7.1)
and the HTTP answers that carry them.

URLs live under one base, ``<scheme>://<host>[:port][/prefix]/acme``: ``acme.base_url``
when set (with or without its trailing ``/acme``), else the origin of the request's
own URL, so a client reaching the server as ``https://[::1]:8443`` is given URLs it
can reach. Paths (the router in ``core`` parses the same ones):

    directory  new-nonce  new-account  new-order  revoke-cert  key-change
    renewal-info/<certID>  acct/<id>  acct/<id>/orders  order/<id>
    order/<id>/finalize  authz/<id>  chall/<id>  cert/<id>

JSON follows §7.1's examples: times RFC 3339 in UTC, ``identifiers`` as objects,
authorizations and finalize as URLs; absent members are left out, not null.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from trustchain.actors.acme.effects import Answer
from trustchain.actors.acme.problems import PROBLEM_JSON, AcmeProblem
from trustchain.actors.acme.records import (
    INVALID,
    PROCESSING,
    VALID,
    Account,
    Authorization,
    Challenge,
    Order,
    rfc3339,
)

JSON = "application/json"
PEM_CHAIN = "application/pem-certificate-chain"
JOSE_JSON = "application/jose+json"


class Urls:
    """Every URL the server gives, under ``base`` (which ends in ``/acme``)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.directory = base + "/directory"
        self.new_nonce = base + "/new-nonce"
        self.new_account = base + "/new-account"
        self.new_order = base + "/new-order"
        self.revoke_cert = base + "/revoke-cert"
        self.key_change = base + "/key-change"
        self.renewal_info = base + "/renewal-info"

    @classmethod
    def of(cls, base_url: str, request_url: str) -> Urls:
        if base_url:
            base = base_url.rstrip("/")
        else:
            parts = urlsplit(request_url)
            path = parts.path
            prefix = path[: path.find("/acme/")] if "/acme/" in path else ""
            base = f"{parts.scheme}://{parts.netloc}{prefix}"
        return cls(base if base.endswith("/acme") else base + "/acme")

    def account(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}"

    def orders(self, account_id: str) -> str:
        return f"{self.base}/acct/{account_id}/orders"

    def order(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}"

    def finalize(self, order_id: str) -> str:
        return f"{self.base}/order/{order_id}/finalize"

    def authz(self, authz_id: str) -> str:
        return f"{self.base}/authz/{authz_id}"

    def challenge(self, challenge_id: str) -> str:
        return f"{self.base}/chall/{challenge_id}"

    def certificate(self, certificate_id: str) -> str:
        return f"{self.base}/cert/{certificate_id}"


def acme_path(url: str) -> str:
    """The part of ``url``'s path after ``/acme/`` ("" when there is none)."""
    path = urlsplit(url).path
    at = path.find("/acme/")
    return "" if at < 0 else path[at + len("/acme/") :]


# Answers ------------------------------------------------------------------------------


def answer(
    status: int,
    body: bytes = b"",
    content_type: str = JSON,
    headers: list[list[str]] | None = None,
) -> Answer:
    return {"status": status, "headers": list(headers or []), "body": body,
            "content_type": content_type}  # fmt: skip


def json_answer(status: int, value: Any, headers: list[list[str]] | None = None) -> Answer:
    body = json.dumps(value, indent=2).encode()
    return answer(status, body, JSON, headers)


def problem_answer(problem: AcmeProblem) -> Answer:
    """An RFC 7807 problem document with its status and headers (Retry-After...)."""
    headers = [[name, value] for name, value in problem.headers]
    return answer(problem.status, json.dumps(problem.to_json(), indent=2).encode(), PROBLEM_JSON,
                  headers)  # fmt: skip


def link(url: str, rel: str) -> list[str]:
    return ["Link", f'<{url}>;rel="{rel}"']


# Resources' JSON ------------------------------------------------------------------------


def identifier_json(identifier: tuple[str, str]) -> dict[str, str]:
    return {"type": identifier[0], "value": identifier[1]}


def account_json(account: Account, urls: Urls) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": account.status,
        "contact": list(account.contact),
        "orders": urls.orders(account.id),
        "createdAt": rfc3339(account.created),
    }
    if account.terms_agreed:
        body["termsOfServiceAgreed"] = True
    if account.eab_kid is not None:
        body["externalAccountBinding"] = {"kid": account.eab_kid}
    return body


def order_json(order: Order, urls: Urls) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": order.status,
        "expires": rfc3339(order.expires),
        "identifiers": [identifier_json(i) for i in order.identifiers],
        "authorizations": [urls.authz(a) for a in order.authorizations],
        "finalize": urls.finalize(order.id),
        "profile": order.profile,
    }
    if order.replaces is not None:
        body["replaces"] = order.replaces
    if order.status == INVALID and order.error is not None:
        body["error"] = order.error
    if order.status == VALID and order.certificate is not None:
        body["certificate"] = urls.certificate(order.certificate)
    return body


def challenge_json(challenge: Challenge, urls: Urls) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": challenge.type,
        "url": urls.challenge(challenge.id),
        "status": challenge.status,
        "token": challenge.token,
    }
    if challenge.validated is not None:
        body["validated"] = rfc3339(challenge.validated)
    if challenge.error is not None:
        body["error"] = challenge.error
    return body


def authz_json(authz: Authorization, challenges: list[Challenge], urls: Urls) -> dict[str, Any]:
    body: dict[str, Any] = {
        "identifier": identifier_json(authz.identifier),
        "status": authz.status,
        "expires": rfc3339(authz.expires),
        "challenges": [challenge_json(c, urls) for c in challenges],
    }
    if authz.wildcard:
        body["wildcard"] = True
    return body


def retry_after(order_or_challenge_status: str, seconds: int = 1) -> list[list[str]]:
    """A Retry-After while something is being worked on (§7.4, §8.2)."""
    if order_or_challenge_status == PROCESSING:
        return [["Retry-After", str(seconds)]]
    return []
