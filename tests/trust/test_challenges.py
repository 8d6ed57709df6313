"""ACME challenges checked by a validator itself (``actors/validator/challenges.py``):
http-01, dns-01 and tls-alpn-01 against real responders on [::1]
(``acme_responders.py``), each failure a reason that starts with its RFC 8555 error
type; then the actor's path, with a real ResolverActor (its zone, and a real upstream
for a TXT record): a signed approval, a reject for a name that does not resolve, the
same vote when asked again, an error and no vote when there is no resolver, and a
Byzantine validator's hooks reached by a challenge."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import outcome
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.resolver.actor import ResolverActor
from trustchain.actors.trust.votes import Vote, check_vote
from trustchain.actors.validator import CheckChallenge, GetValidatorKey, ValidatorActor
from trustchain.actors.validator.challenges import (
    Resolution,
    check_challenge,
    check_dns01,
    check_http01,
    check_tls_alpn01,
    dns01_value,
    resolution_of,
)
from trustchain.config.schema import ResolverConfig
from trustchain.supervisors import (
    ChildSpec,
    FakeClock,
    InvalidRequest,
    Registry,
    TrustChainError,
    start_root,
)

from ..resolver.upstreams import UpstreamServer
from .acme_responders import (
    CHALLENGE_PATH,
    refused_port,
    serve_http01,
    serve_tls_alpn01,
    silent_listener,
    tls_alpn01_certificate,
)
from .byzantine import Equivocating
from .test_validator_actor import small_config

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
KEY_AUTHORIZATION = f"{TOKEN}.{THUMBPRINT}"
OTHER_KEY_AUTHORIZATION = f"{TOKEN}.{'x' * 43}"
NAME = "www.example.com"
SHORT_S = 2.0  # the time a check may take here; no test waits it out
PREFIXES = ("connection", "dns", "incorrectResponse", "tls", "unauthorized", "malformed")


def types_of(reasons: list[str]) -> list[str]:
    assert all(r.split(": ", 1)[0] in PREFIXES for r in reasons), reasons
    return [r.split(": ", 1)[0] for r in reasons]


# http-01 (RFC 8555 §8.3) ------------------------------------------------------------------


def test_http01_is_met_by_the_key_authorization_asked_for_with_the_identifier_as_host() -> None:
    with serve_http01({TOKEN: KEY_AUTHORIZATION + "\r\n"}) as responder:
        assert check_http01(["::1"], "dns", NAME, TOKEN, KEY_AUTHORIZATION, responder.port,
                            SHORT_S) == []  # fmt: skip
        assert check_http01(["::1"], "ip", "::1", TOKEN, KEY_AUTHORIZATION, responder.port,
                            SHORT_S) == []  # fmt: skip
    path = CHALLENGE_PATH + TOKEN
    assert responder.requests == [(path, f"{NAME}:{responder.port}"),
                                  (path, f"[::1]:{responder.port}")]  # fmt: skip


def test_http01_rejects_a_wrong_body_and_a_404_saying_which() -> None:
    with serve_http01({TOKEN: OTHER_KEY_AUTHORIZATION}) as responder:
        port = responder.port
        wrong = check_http01(["::1"], "dns", NAME, TOKEN, KEY_AUTHORIZATION, port, SHORT_S)
        missing = check_http01(["::1"], "dns", NAME, "A" * 43, KEY_AUTHORIZATION, port, SHORT_S)
    assert wrong == [f"unauthorized: the key authorization from [::1]:{port} does not match"]
    assert missing == [
        f"incorrectResponse: [::1]:{port} answered 404 for {CHALLENGE_PATH}{'A' * 43}"
    ]


def test_http01_follows_redirects_on_the_same_host_only_and_at_most_ten() -> None:
    moved, loop, away = (CHALLENGE_PATH + t for t in ("moved", "loop", "away"))
    with serve_http01({TOKEN: KEY_AUTHORIZATION}) as responder:
        port = responder.port
        responder.redirects.update({
            moved: f"http://{NAME}:{port}{CHALLENGE_PATH}{TOKEN}",  # absolute, same host
            loop: loop,  # relative, forever
            away: f"http://elsewhere.example.net:{port}{CHALLENGE_PATH}{TOKEN}",
        })  # fmt: skip

        def check(token: str) -> list[str]:
            return check_http01(["::1"], "dns", NAME, token, KEY_AUTHORIZATION, port, SHORT_S)

        assert check("moved") == []
        assert check("loop") == [f"incorrectResponse: [::1]:{port} redirected more than 10 times"]
        assert check("away") == [f"incorrectResponse: [::1]:{port} redirected to another host "
                                 "(elsewhere.example.net): not followed"]  # fmt: skip
        assert len([p for p, _ in responder.requests if p == loop]) == 11


def test_http01_connection_failures_refused_and_silent_within_the_time_allowed() -> None:
    port = refused_port()
    refused = check_http01(["::1"], "dns", NAME, TOKEN, KEY_AUTHORIZATION, port, SHORT_S)
    assert refused == [f"connection: [::1]:{port} refused the connection"]
    with silent_listener() as silent:
        # one deadline for every address: the second is not tried once it is spent
        reasons = check_http01(["::1", "::1"], "dns", NAME, TOKEN, KEY_AUTHORIZATION, silent,
                               0.2)  # fmt: skip
    assert reasons == [f"connection: [::1]:{silent} did not answer within 0.2 s"]


def test_http01_tries_each_address_in_turn_and_never_ipv4() -> None:
    with serve_http01({TOKEN: KEY_AUTHORIZATION}) as responder:
        port = responder.port
        addresses = ["::ffff:127.0.0.1", "::1"]
        assert check_http01(addresses, "dns", NAME, TOKEN, KEY_AUTHORIZATION, port, SHORT_S) == []
    reasons = check_http01(["::ffff:127.0.0.1", "::1"], "dns", NAME, TOKEN, KEY_AUTHORIZATION,
                           refused_port(), SHORT_S)  # fmt: skip
    assert types_of(reasons) == ["connection", "connection"]
    assert reasons[0] == "connection: ::ffff:127.0.0.1 is IPv4-mapped (validators reach IPv6 only)"


# dns-01 (RFC 8555 §8.4) -------------------------------------------------------------------


def test_dns01_is_met_by_any_txt_value_of_the_key_authorizations_digest() -> None:
    value = dns01_value(KEY_AUTHORIZATION)
    assert len(value) == 43 and "=" not in value
    assert check_dns01(["other", value], "dns", NAME, KEY_AUTHORIZATION) == []
    assert check_dns01([dns01_value(OTHER_KEY_AUTHORIZATION)], "dns", NAME, KEY_AUTHORIZATION) == [
        f"unauthorized: no TXT record of _acme-challenge.{NAME} matches the key authorization"
    ]
    assert check_dns01([], "dns", NAME, KEY_AUTHORIZATION) == [
        f"dns: _acme-challenge.{NAME} has no TXT records"]  # fmt: skip
    assert types_of(check_dns01([value], "ip", "::1", KEY_AUTHORIZATION)) == ["malformed"]


def test_the_resolvers_answer_becomes_addresses_txt_values_or_a_dns_reason() -> None:
    http = CheckChallenge("http-01", "dns", NAME, TOKEN, KEY_AUTHORIZATION)
    txt = CheckChallenge("dns-01", "dns", NAME, TOKEN, KEY_AUTHORIZATION)
    answer = {"rcode": "NOERROR", "answer": [
        f"{NAME}. 300 IN CNAME web.example.com.",
        "web.example.com. 300 IN AAAA 2001:DB8:0::1",
        "web.example.com. 300 IN AAAA ::1",
    ]}  # fmt: skip
    assert resolution_of(http, answer) == Resolution(addresses=("2001:db8::1", "::1"))
    split = {"rcode": "NOERROR", "answer": [f'_acme-challenge.{NAME}. 60 IN TXT "ab" "cd"']}
    assert resolution_of(txt, split) == Resolution(txt=("abcd",))
    assert resolution_of(http, {"rcode": "NXDOMAIN", "answer": []}).problem == (
        f"dns: {NAME} does not exist (NXDOMAIN)")  # fmt: skip
    assert resolution_of(http, {"rcode": "NOERROR", "answer": []}).problem == (
        f"dns: {NAME} has no AAAA records")  # fmt: skip
    assert resolution_of(txt, {"rcode": "SERVFAIL", "answer": []}).problem == (
        f"dns: looking up TXT for _acme-challenge.{NAME} failed (SERVFAIL)")  # fmt: skip
    # a failed lookup is the challenge's failure, whatever the kind
    assert check_challenge(http, Resolution(problem="dns: x")) == ["dns: x"]


# tls-alpn-01 (RFC 8737, RFC 8738 §6) ------------------------------------------------------


def test_tls_alpn01_is_met_by_the_acme_identifier_certificate_for_names_and_addresses() -> None:
    authorizations = {NAME: KEY_AUTHORIZATION, "::1": KEY_AUTHORIZATION}
    with serve_tls_alpn01(authorizations) as responder:
        port = responder.port
        assert check_tls_alpn01(["::1"], "dns", NAME, KEY_AUTHORIZATION, port, SHORT_S) == []
        assert check_tls_alpn01(["::1"], "ip", "::1", KEY_AUTHORIZATION, port, SHORT_S) == []
        wrong = check_tls_alpn01(["::1"], "dns", NAME, OTHER_KEY_AUTHORIZATION, port, SHORT_S)
        other = check_tls_alpn01(["::1"], "dns", "other.example.com", KEY_AUTHORIZATION, port,
                                 SHORT_S)  # fmt: skip
    assert responder.requests[:2] == [NAME, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
                                            "0.0.0.0.0.0.0.ip6.arpa"]  # fmt: skip
    assert wrong == [f"unauthorized: the key authorization does not match the acmeIdentifier "
                     f"from [::1]:{port}"]  # fmt: skip
    assert other == [f"unauthorized: the certificate from [::1]:{port} does not name "
                     "other.example.com alone"]  # fmt: skip


@pytest.mark.parametrize(("certificate", "reason"), [
    (functools.partial(tls_alpn01_certificate, critical=False),
     "unauthorized: the acmeIdentifier extension from {where} is not critical"),
    (functools.partial(tls_alpn01_certificate, names=[NAME, "www2.example.com"]),
     f"unauthorized: the certificate from {{where}} does not name {NAME} alone"),
    (functools.partial(tls_alpn01_certificate, value=b"\x04\x01x"),
     "unauthorized: the key authorization does not match the acmeIdentifier from {where}"),
])  # fmt: skip
def test_tls_alpn01_rejects_a_wrong_certificate(certificate, reason: str) -> None:
    with serve_tls_alpn01({NAME: KEY_AUTHORIZATION}, certificate=certificate) as responder:
        reasons = check_tls_alpn01(["::1"], "dns", NAME, KEY_AUTHORIZATION, responder.port,
                                   SHORT_S)  # fmt: skip
    assert reasons == [reason.format(where=f"[::1]:{responder.port}")]


def test_tls_alpn01_needs_acme_tls_1_negotiated_over_tls() -> None:
    with serve_tls_alpn01({NAME: KEY_AUTHORIZATION}, alpn=None) as responder:
        port = responder.port
        reasons = check_tls_alpn01(["::1"], "dns", NAME, KEY_AUTHORIZATION, port, SHORT_S)
    assert reasons == [f"tls: [::1]:{port} did not negotiate acme-tls/1"]
    with serve_http01({}) as plain:  # not TLS at all
        reasons = check_tls_alpn01(["::1"], "dns", NAME, KEY_AUTHORIZATION, plain.port, SHORT_S)
    assert types_of(reasons) == ["tls"]
    port = refused_port()
    assert check_tls_alpn01(["::1"], "dns", NAME, KEY_AUTHORIZATION, port, SHORT_S) == [
        f"connection: [::1]:{port} refused the connection"]  # fmt: skip
    with silent_listener() as silent:
        reasons = check_tls_alpn01(["::1"], "dns", NAME, KEY_AUTHORIZATION, silent, 0.2)
    assert reasons == [f"connection: [::1]:{silent} did not answer within 0.2 s"]


def test_a_challenge_message_is_checked_when_built() -> None:
    good = {"kind": "http-01", "identifier_type": "dns", "identifier": NAME, "token": TOKEN,
            "key_authorization": KEY_AUTHORIZATION}  # fmt: skip
    assert CheckChallenge(**good).digest() == CheckChallenge(**good, port=8080).digest()
    for bad in ({"kind": "http-02"}, {"identifier_type": "ip"}, {"identifier": "WWW.example.com"},
                {"identifier_type": "ip", "identifier": "192.0.2.1"}, {"token": TOKEN + "="},
                {"key_authorization": TOKEN}):  # fmt: skip
        with pytest.raises(InvalidRequest):
            CheckChallenge(**{**good, **bad})


# The actor's path: a validator, its process and the resolver ---------------------------------

ZONE_NAME = "www.trust.example.com"
UPSTREAM_NAME = "www.example.org"


class Tree:
    """A validator (honest, or of ``validator``'s class) beside a real resolver whose zone
    maps ``ZONE_NAME`` to ::1 and whose upstream holds a TXT record (or no resolver)."""

    def __init__(self, directory: Path, *, resolver: bool = True,
                 validator: type[ValidatorActor] = ValidatorActor) -> None:  # fmt: skip
        config = small_config(directory)
        self.upstream = UpstreamServer("udp", {
            f"_acme-challenge.{UPSTREAM_NAME}. TXT": [f'"{dns01_value(KEY_AUTHORIZATION)}"'],
        })  # fmt: skip
        zone = ResolverConfig(records={"www": ["::1"]}, upstreams=[self.upstream.url],
                              upstream_timeout_s=SHORT_S)  # fmt: skip
        specs = [ChildSpec("validator-1",
                           lambda ctx: validator.start(ctx, config, "validator-1"))]  # fmt: skip
        if resolver:
            specs.insert(0, ChildSpec("resolver", lambda ctx: ResolverActor.start(ctx, zone)))
        self.registry = Registry()
        self.root = start_root(self.registry, "root", specs, clock=FakeClock())
        key = self.registry.ask("validator-1", GetValidatorKey())["public_key"]
        self.key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(key))

    def check(self, challenge: CheckChallenge) -> Vote:
        vote = Vote.from_bytes(self.registry.ask("validator-1", challenge, timeout=30))
        check_vote(vote, self.key)
        assert vote.digest == challenge.digest()
        return vote

    def close(self) -> None:
        self.root.stop(block=True, timeout=10)
        self.upstream.close()


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    made = Tree(tmp_path)
    yield made
    made.close()


def http01(identifier: str, port: int, kind: str = "http-01") -> CheckChallenge:
    return CheckChallenge(kind, "dns", identifier, TOKEN, KEY_AUTHORIZATION, port, SHORT_S)


def test_a_met_http01_challenge_gets_a_signed_approval_and_the_same_vote_again(tree) -> None:
    with serve_http01({TOKEN: KEY_AUTHORIZATION}) as responder:
        vote = tree.check(http01(ZONE_NAME, responder.port))
    assert (vote.verdict, vote.reasons, vote.validator) == ("approve", (), "validator-1")
    assert responder.requests == [(CHALLENGE_PATH + TOKEN, f"{ZONE_NAME}:{responder.port}")]
    # asked again (a retry, the detector again): the vote it gave, not another look --
    # the responder is gone now, and a new look would reject
    assert tree.check(http01(ZONE_NAME, responder.port)) == vote


def test_a_name_that_does_not_resolve_gets_a_signed_reject_with_a_dns_reason(tree) -> None:
    vote = tree.check(http01("nowhere.trust.example.com", refused_port()))
    assert vote.verdict == "reject"
    assert vote.reasons == ("dns: nowhere.trust.example.com does not exist (NXDOMAIN)",)
    # another port: looked at again (the inputs differ), the same verdict: the same vote
    assert tree.check(http01("nowhere.trust.example.com", 80)) == vote


def test_dns01_through_the_resolver_and_an_ip_identifier_without_it(tree) -> None:
    approved = tree.check(http01(UPSTREAM_NAME, 80, "dns-01"))
    assert (approved.verdict, approved.reasons) == ("approve", ())
    assert tree.upstream.queries == [f"_acme-challenge.{UPSTREAM_NAME}. TXT"]
    with serve_tls_alpn01({"::1": KEY_AUTHORIZATION}) as responder:
        challenge = CheckChallenge("tls-alpn-01", "ip", "::1", TOKEN, KEY_AUTHORIZATION,
                                   responder.port, SHORT_S)  # fmt: skip
        assert tree.check(challenge).verdict == "approve"


def test_without_a_resolver_the_answer_is_an_error_and_no_vote(tmp_path: Path) -> None:
    tree = Tree(tmp_path, resolver=False)
    try:
        with pytest.raises(TrustChainError, match="resolver"):
            tree.registry.ask("validator-1", http01(ZONE_NAME, 80), timeout=30)
    finally:
        tree.close()


def test_a_byzantine_validators_hooks_are_reached_by_challenges(tmp_path: Path) -> None:
    """The hooks get the challenge with its resolution: an equivocating validator answers
    honestly first, then signs the opposite verdict on the same digest."""
    tree = Tree(tmp_path, validator=Equivocating)
    try:
        challenge = http01("nowhere.trust.example.com", 80)
        first, second = tree.check(challenge), tree.check(challenge)
        assert (first.verdict, second.verdict) == ("reject", "approve")
        assert first.digest == second.digest == challenge.digest()
    finally:
        tree.close()


def test_a_silent_responder_holds_no_other_question_behind_it(tree) -> None:
    """The look runs on the validator's probe threads: while one challenge waits on a
    responder that never answers, the validator answers other questions (a four-proof
    one would be next in line), and then the waiting challenge with a reject."""
    finished: list[str] = []
    done = threading.Event()

    def record(what: str) -> Any:
        def reply(result: outcome.Outcome) -> None:
            finished.append(what)
            if len(finished) == 3:
                done.set()

        return reply

    other = "oTHERtOKEN" + TOKEN[10:]
    with silent_listener() as silent, serve_http01({other: f"{other}.{THUMBPRINT}"}) as quick:
        slow = CheckChallenge("http-01", "ip", "::1", TOKEN, KEY_AUTHORIZATION, silent, SHORT_S)
        fast = CheckChallenge("http-01", "ip", "::1", other, f"{other}.{THUMBPRINT}",
                              quick.port, SHORT_S)  # fmt: skip
        tree.registry.tell("validator-1", slow, record("slow"))
        tree.registry.tell("validator-1", GetValidatorKey(), record("key"))
        tree.registry.tell("validator-1", fast, record("fast"))
        assert done.wait(30), f"answered only {finished}"
    assert finished[-1] == "slow", finished  # the silent one last, behind nothing
    assert tree.check(slow).verdict == "reject"  # the vote it gave (the memo), a reject
