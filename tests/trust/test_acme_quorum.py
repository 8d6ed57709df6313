"""ACME's challenges through the real quorum, as a client sees them: the ACME actor in
front of the real detector and N = 4 validators (each in its own process, resolving
through the real resolver and fetching http-01 itself from a responder on [::1]).

A met challenge makes the authorization valid with the validators' signed votes; an
unmet one makes it invalid with the reason f+1 of them agree on, as an RFC 8555 problem,
even though one validator lies that it was met (outvoted, and scored); when too few
validators answer, the authorization never becomes valid: after the ACME actor's
retries it is invalid with a ``serverInternal`` problem.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trustchain.actors.acme.actor import AcmeActor
from trustchain.actors.acme.jws import thumbprint
from trustchain.actors.acme.messages import AcmeRequest
from trustchain.actors.detector import TrustScores
from trustchain.actors.detector.messages import ConfirmDomainControl
from trustchain.config import AcmeConfig, CaConfig
from trustchain.supervisors import ChildSpec, FakeClock, Registry, start_root

from ..acme.test_actor import ActorClient
from ..acme.test_core import body, header
from .acme_responders import serve_http01
from .byzantine import AlwaysAccept, Silent
from .consensus import Consensus
from .test_challenge_quorum import resolver as resolver  # the module's resolver fixture

NAME = "www.trust.example.com"  # the resolver's zone maps it to ::1


class AcmeTree:
    """The ACME actor under a root of its own, asking the consensus's detector; its
    clock is the consensus's, so that one ``advance`` moves every deadline."""

    def __init__(self, registry: Registry, consensus: Consensus, directory: Path,
                 http01_port: int) -> None:  # fmt: skip
        self.registry = registry
        self.clock = consensus.clock
        self.name = f"acme-{uuid.uuid4().hex[:6]}"
        config = AcmeConfig(database=directory / "acme.sqlite3", http01_port=http01_port,
                            challenge_timeout_s=2.0)  # fmt: skip
        ca = CaConfig(permitted_zones=["trust.example.com"])
        spec = ChildSpec(self.name, lambda ctx: AcmeActor.start(
            ctx, config, ca, detector=consensus.detector, issuer="no-issuer"))  # fmt: skip
        self.root = start_root(registry, f"root-{self.name}", [spec], clock=self.clock)

    def client(self) -> ActorClient:
        client = _Client(self)
        client.register()
        return client

    def stop(self) -> None:
        self.root.stop(block=True, timeout=30)


class _Client(ActorClient):
    def send(self, method: str, url: str, body: bytes = b"",
             content_type: str = "application/jose+json") -> dict[str, Any]:  # fmt: skip
        answer: dict[str, Any] = self.tree.registry.ask(
            self.tree.name, AcmeRequest(method, url, body, content_type)
        )
        self.nonce = header(answer, "Replay-Nonce")
        self.last = answer
        return answer


@dataclass
class Outcome:
    authz: dict[str, Any]  # the authorization once it left pending
    account: str  # the ACME account's id
    fetches: int  # how many times the responder was asked for the token


def order_and_answer(registry: Registry, consensus: Consensus, directory: Path, *,
                     served: str | None = None, tick: Any = None) -> Outcome:  # fmt: skip
    """An account orders NAME and answers its http-01 challenge, the responder serving
    ``served`` for the token (None: the right key authorization); then wait (calling
    ``tick`` meanwhile) until the authorization is no longer pending."""
    with serve_http01({}) as responder:
        acme = AcmeTree(registry, consensus, directory, responder.port)
        try:
            client = acme.client()
            order = body(client.order(NAME))
            (authz_url,) = order["authorizations"]
            authz = body(client.post(authz_url))
            (challenge,) = [c for c in authz["challenges"] if c["type"] == "http-01"]
            right = f"{challenge['token']}.{thumbprint(client.key.public_key().to_json())}"
            responder.tokens[challenge["token"]] = right if served is None else served
            client.post(challenge["url"], {})
            deadline = time.monotonic() + 30
            while (authz := body(client.post(authz_url)))["status"] == "pending":
                assert time.monotonic() < deadline, f"{authz_url} stayed pending: {authz}"
                if tick is not None:
                    tick()
                time.sleep(0.01)
            account = client.kid.rsplit("/", 1)[-1] if client.kid else ""
            return Outcome(authz, account, len(responder.requests))
        finally:
            acme.stop()


def http01_error(authz: dict[str, Any]) -> dict[str, Any]:
    (failed,) = [c for c in authz["challenges"] if c["type"] == "http-01"]
    assert failed["status"] == "invalid"
    error: dict[str, Any] = failed["error"]
    return error


@pytest.fixture
def lying(hsm: Registry, resolver: None, tmp_path: Path) -> Iterator[Consensus]:
    made = Consensus(hsm, tmp_path, 4, {4: AlwaysAccept}, clock=FakeClock())
    yield made
    made.stop()


def test_a_met_challenge_makes_the_authorization_valid_with_the_quorums_votes(
    hsm: Registry, lying: Consensus, tmp_path: Path
) -> None:
    done = order_and_answer(hsm, lying, tmp_path)
    assert done.authz["status"] == "valid", done.authz
    assert done.fetches >= 3  # the honest validators fetched it themselves
    evidence = lying.ask(ConfirmDomainControl(done.account, [NAME]))  # the issuer's gate
    assert evidence[0]["identifier"] == NAME


def test_an_unmet_challenge_is_invalid_with_the_agreed_reason_and_the_liar_is_scored(
    hsm: Registry, lying: Consensus, tmp_path: Path
) -> None:
    done = order_and_answer(hsm, lying, tmp_path, served="not-the-key-authorization")
    assert done.authz["status"] == "invalid"
    error = http01_error(done.authz)
    assert error["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "key authorization" in error["detail"]
    scores = {s["validator"]: s for s in lying.ask(TrustScores())}
    liar = lying.names[3]
    assert scores[liar]["dissented"] >= 1 and scores[liar]["score"] < 1.0


def test_too_few_validators_never_make_an_authorization_valid(
    hsm: Registry, resolver: None, tmp_path: Path
) -> None:
    silent = Consensus(hsm, tmp_path, 4, {3: Silent, 4: Silent}, clock=FakeClock())
    try:  # every round's deadline passes, and every retry's backoff
        done = order_and_answer(hsm, silent, tmp_path, tick=lambda: silent.clock.advance(1.0))
    finally:
        silent.stop()
    assert done.authz["status"] == "invalid"
    error = http01_error(done.authz)
    assert error["type"] == "urn:ietf:params:acme:error:serverInternal"
    assert "quorum" in error["detail"]
