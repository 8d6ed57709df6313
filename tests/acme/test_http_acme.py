"""protocols/http_acme.py inside the HTTPS edge's ASGI app (``HttpApp``), called in
memory on trio, over a running AcmeActor (the tree of ``test_actor``): the URL a JWS
must name comes from the Host header or ``acme.base_url``, the actor's answer goes out
as it is, and an actor that cannot answer is still an ACME problem document."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trustchain.config import AcmeConfig, Config
from trustchain.protocols.http_app import HttpApp
from trustchain.supervisors import Registry

from .test_actor import Tree
from .test_core import Client

HOST = "[::1]:8443"


async def call(app: HttpApp, method: str, path: str, body: bytes = b"",
               headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """One request through the ASGI app; the response as status, headers, body."""
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    head = {"host": HOST, "content-length": str(len(body)), **(headers or {})}
    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in head.items()]}  # fmt: skip
    await app(scope, receive, send)
    start, content = sent
    return {"status": start["status"], "body": content["body"],
            "headers": [[k.decode(), v.decode()] for k, v in start["headers"]]}  # fmt: skip


def header(response: dict[str, Any], name: str) -> str | None:
    return next((v for k, v in response["headers"] if k.lower() == name.lower()), None)


class HttpClient(Client):
    """The in-memory client, over the ASGI app (its ``send`` runs in the trio test)."""

    def __init__(self, app: HttpApp) -> None:
        super().__init__(core=None)  # type: ignore[arg-type]
        self.app = app

    async def asend(self, method: str, url: str, body: bytes = b"") -> dict[str, Any]:
        path = url.split(HOST, 1)[1]
        response = await call(self.app, method, path, body,
                              {"content-type": "application/jose+json"})  # fmt: skip
        self.nonce = header(response, "Replay-Nonce")
        return response


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    running = Tree(tmp_path / "acme.sqlite3")
    yield running
    running.stop()


def app_for(registry: Registry, **acme: Any) -> HttpApp:
    config = Config()
    config = dataclasses.replace(config, acme=AcmeConfig(**acme))
    return HttpApp(config, registry)


async def test_the_directory_names_urls_on_the_host_the_client_used(tree: Tree) -> None:
    response = await call(app_for(tree.registry), "GET", "/acme/directory")
    assert response["status"] == 200 and header(response, "content-type") == "application/json"
    assert json.loads(response["body"])["newOrder"] == f"https://{HOST}/acme/new-order"
    assert header(response, "Replay-Nonce")


async def test_base_url_names_the_urls_whatever_the_host(tree: Tree) -> None:
    app = app_for(tree.registry, base_url="https://acme.example.com/acme")
    response = await call(app, "GET", "/acme/directory")
    assert json.loads(response["body"])["newAccount"] == "https://acme.example.com/acme/new-account"


async def test_a_signed_new_account_over_the_edge(tree: Tree) -> None:
    client = HttpClient(app_for(tree.registry))
    nonce = await client.asend("HEAD", f"https://{HOST}/acme/new-nonce")
    assert nonce["status"] == 200 and nonce["body"] == b""
    url = f"https://{HOST}/acme/new-account"
    response = await client.asend("POST", url, client.sign(url, {"contact": []}, jwk=True))
    assert response["status"] == 201
    assert (header(response, "Location") or "").startswith(f"https://{HOST}/acme/acct/")
    assert json.loads(response["body"])["status"] == "valid"


async def test_get_on_a_post_only_resource_is_a_405_problem(tree: Tree) -> None:
    response = await call(app_for(tree.registry), "GET", "/acme/new-order")
    assert response["status"] == 405
    assert header(response, "content-type") == "application/problem+json"
    assert header(response, "Allow") == "POST"


async def test_an_acme_actor_that_is_not_running_is_a_503_problem() -> None:
    response = await call(app_for(Registry()), "GET", "/acme/directory")
    assert response["status"] == 503
    assert header(response, "content-type") == "application/problem+json"
    assert header(response, "Retry-After") == "1"
    problem = json.loads(response["body"])
    assert problem["type"] == "urn:ietf:params:acme:error:serverInternal"


async def test_acme_is_not_routed_when_it_is_off() -> None:
    response = await call(app_for(Registry(), enabled=False), "GET", "/acme/directory")
    assert response["status"] == 404
