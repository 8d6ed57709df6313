"""ACME domain control through the real quorum: N = 4 validators (each in its own process,
each resolving through a real ResolverActor and fetching http-01 itself from a real
responder on [::1]) and the real detector (SQLite, the stake authority's key in SoftHSM).

An authorization is corroborated only by 2f+1 approving signed votes, which are kept as
evidence and found again by the issuer's gate (``ConfirmDomainControl``); a validator
that says the opposite of the quorum is outvoted and loses trust; too few answers is
``quorum_not_reached``, never an approval.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import outcome
import pytest

from trustchain.actors.detector import TrustScores
from trustchain.actors.detector.messages import ConfirmDomainControl, ValidateChallenge
from trustchain.actors.resolver.actor import ResolverActor
from trustchain.actors.trust.errors import NotApproved, QuorumNotReached
from trustchain.actors.trust.votes import Decision, check_decision
from trustchain.config.schema import ResolverConfig
from trustchain.supervisors import ChildSpec, FakeClock, Registry, start_root

from .acme_responders import serve_http01
from .byzantine import AlwaysAccept, Silent
from .consensus import DEADLINE_S, Consensus, wait_until

NAME = "www.trust.example.com"  # the resolver's zone maps it to ::1
TOKEN = "tok-" + "A" * 40
THUMBPRINT = "thumb-" + "B" * 37
KEY_AUTHORIZATION = f"{TOKEN}.{THUMBPRINT}"
CHECK_S = 2.0


@pytest.fixture(scope="module")
def resolver(hsm: Registry) -> Iterator[None]:
    """The resolver every validator of this module asks (its name is "resolver")."""
    zone = ResolverConfig(records={"www": ["::1"]})
    spec = ChildSpec("resolver", lambda ctx: ResolverActor.start(ctx, zone))
    root = start_root(hsm, f"resolver-root-{uuid.uuid4().hex[:6]}", [spec])
    yield
    root.stop(block=True, timeout=10)


def challenge(port: int, account: str = "acct-1", token: str = TOKEN) -> ValidateChallenge:
    return ValidateChallenge(account, "http-01", "dns", NAME, token, f"{token}.{THUMBPRINT}",
                             port=port, timeout_s=CHECK_S, valid_for_s=3_600)  # fmt: skip


@pytest.fixture
def consensus(hsm: Registry, resolver: None, tmp_path: Path) -> Iterator[Consensus]:
    made = Consensus(hsm, tmp_path, 4, {4: AlwaysAccept}, clock=FakeClock())
    yield made
    made.stop()


def scores_of(consensus: Consensus) -> dict[str, Any]:
    return {s["validator"]: s for s in consensus.ask(TrustScores())}


def test_a_met_challenge_is_corroborated_by_a_quorum_and_found_by_the_issuers_gate(
    consensus: Consensus,
) -> None:
    with serve_http01({TOKEN: KEY_AUTHORIZATION}) as responder:
        record = consensus.ask(challenge(responder.port))
        hosts = {host for _, host in responder.requests}
    assert len(responder.requests) >= 3  # each honest validator fetched it itself
    assert hosts == {f"{NAME}:{responder.port}"}
    decision = Decision.from_json(record["decision"])
    check_decision(decision, consensus.validator_keys(), consensus.f)
    assert decision.outcome == "approve" and len(decision.votes) >= 3
    assert (record["identifier"], record["kind"], record["account"]) == (NAME, "http-01", "acct-1")

    evidence = consensus.ask(ConfirmDomainControl("acct-1", [NAME]))
    assert [e["name"] for e in evidence] == [NAME]
    assert Decision.from_json(evidence[0]["decision"]) == decision
    with pytest.raises(NotApproved, match="acct-2"):  # another account proved nothing
        consensus.ask(ConfirmDomainControl("acct-2", [NAME]))
    with pytest.raises(NotApproved, match=r"api\.trust\.example\.com"):  # nor another name
        consensus.ask(ConfirmDomainControl("acct-1", [NAME, "api.trust.example.com"]))
    with pytest.raises(NotApproved, match="dns-01"):  # a wildcard needs dns-01
        consensus.ask(ConfirmDomainControl("acct-1", ["*.www.trust.example.com"]))


def test_an_unmet_challenge_is_refused_with_the_reason_and_the_liar_is_outvoted_and_scored(
    consensus: Consensus,
) -> None:
    liar = consensus.names[3]  # AlwaysAccept: approves whatever it is asked
    with (
        serve_http01({TOKEN: "not-the-key-authorization"}) as responder,
        pytest.raises(NotApproved, match="key authorization") as refused,
    ):
        consensus.ask(challenge(responder.port))
    assert refused.value.details["reasons"] == ["unauthorized"]  # an ACME error type
    with pytest.raises(NotApproved):
        consensus.ask(ConfirmDomainControl("acct-1", [NAME]))  # nothing recorded
    scores = scores_of(consensus)
    assert scores[liar]["dissented"] >= 1 and scores[liar]["score"] < 1.0
    assert all(scores[name]["dissented"] == 0 for name in consensus.names[:3])


def test_too_few_answers_is_quorum_not_reached_never_an_approval(
    hsm: Registry, resolver: None, tmp_path: Path
) -> None:
    silent = Consensus(hsm, tmp_path, 4, {3: Silent, 4: Silent}, clock=FakeClock())
    got: list[outcome.Outcome] = []
    try:
        with serve_http01({TOKEN: KEY_AUTHORIZATION}) as responder:
            hsm.tell(silent.detector, challenge(responder.port), got.append)

            def two_answered() -> bool:
                rounds = silent.status()["rounds_open"]
                return len(rounds) == 1 and rounds[0]["answered"] >= 2

            wait_until(two_answered, "the two honest votes")
            assert not got  # two approvals of four: no quorum yet, and no answer
            silent.clock.advance(CHECK_S + DEADLINE_S + 0.01)  # the challenge's deadline
            wait_until(lambda: got, "the answer after the deadline")
        (result,) = got
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, QuorumNotReached)
        with pytest.raises(NotApproved):
            silent.ask(ConfirmDomainControl("acct-1", [NAME]))
    finally:
        silent.stop()
