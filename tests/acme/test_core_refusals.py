"""Every refusal of the ACME core (RFC 8555 §6.7 problem documents), with requests
signed as certbot signs them: accounts, orders, challenges, finalize, the issuer's and
the validators' refusals, and requests the server does not take."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
from acme import jws as acme_jws
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.acme.core import AcmeCore
from trustchain.actors.acme.effects import Issue, Later, Validate
from trustchain.actors.acme.messages import AcmeRequest
from trustchain.actors.ca.errors import KeyNotAllowed, MalformedCSR, NameNotPermitted
from trustchain.actors.trust.errors import NotApproved, QuorumNotReached
from trustchain.supervisors.errors import ActorUnavailable, TrustChainError

from .test_core import (
    BASE,
    Client,
    approval,
    b64,
    body,
    csr_for,
    header,
    make_core,
    problem,
)

ACCOUNT = BASE + "/acme/new-account"


@pytest.fixture
def core(tmp_path: Path) -> AcmeCore:
    return make_core(tmp_path / "acme.sqlite3")


@pytest.fixture
def client(core: AcmeCore) -> Client:
    client = Client(core)
    client.register()
    return client


# Requests the server does not take -------------------------------------------------------


def test_get_on_a_post_as_get_resource_is_405_with_allow(client: Client) -> None:
    for path in ("new-account", "new-order", "acct/abc", "order/abc", "cert/abc"):
        reply = client.send("GET", f"{BASE}/acme/{path}")
        assert reply["status"] == 405 and problem(reply) == "methodNotAllowed"
        assert header(reply, "Allow") == "POST"


def test_an_unknown_path_is_a_404_problem(client: Client) -> None:
    reply = client.send("GET", BASE + "/acme/nothing-here")
    assert reply["status"] == 404 and problem(reply) == "malformed"


def test_a_post_that_is_not_jose_json_is_415(client: Client) -> None:
    url = BASE + "/acme/new-order"
    reply = client.send("POST", url, client.sign(url, {}), content_type="application/json")
    assert reply["status"] == 415 and problem(reply) == "unsupportedMediaType"


def test_a_used_nonce_is_bad_nonce_with_a_fresh_one(client: Client) -> None:
    url = BASE + "/acme/new-order"
    nonce = client.nonce
    client.post(url, {"identifiers": [{"type": "dns", "value": "a.example.com"}]})
    reply = client.post(url, {"identifiers": []}, nonce=nonce)
    assert reply["status"] == 400 and problem(reply) == "badNonce"
    assert header(reply, "Replay-Nonce") not in (None, nonce)


def test_a_jws_naming_another_url_is_unauthorized(client: Client) -> None:
    body_ = client.sign(BASE + "/acme/new-order", {"identifiers": []})
    reply = client.send("POST", BASE + "/acme/revoke-cert", body_)
    assert problem(reply) == "unauthorized"


# Accounts --------------------------------------------------------------------------------


def test_an_existing_key_gets_its_account_with_200(client: Client) -> None:
    reply = client.post(ACCOUNT, {}, jwk=True)
    assert reply["status"] == 200 and header(reply, "Location") == client.kid


def test_only_return_existing_never_creates_an_account(core: AcmeCore) -> None:
    reply = Client(core).post(ACCOUNT, {"onlyReturnExisting": True}, jwk=True)
    assert reply["status"] == 400 and problem(reply) == "accountDoesNotExist"
    assert core.status()["accounts"] == 0


@pytest.mark.parametrize("contact, expected", [
    (["tel:+15551234"], "unsupportedContact"),
    (["https://example.com"], "unsupportedContact"),
    (["mailto:not-an-address"], "invalidContact"),
    (["mailto:a@example.com?subject=x"], "invalidContact"),
    (["mailto:a@example.com,b@example.com"], "invalidContact"),
])  # fmt: skip
def test_contacts_are_one_mailto_address_each(core: AcmeCore, contact: list[str],
                                              expected: str) -> None:  # fmt: skip
    reply = Client(core).post(ACCOUNT, {"contact": contact}, jwk=True)
    assert problem(reply) == expected


def test_a_kid_to_an_unknown_account_is_account_does_not_exist(client: Client) -> None:
    client.kid = BASE + "/acme/acct/nobody"
    assert problem(client.order("a.example.com")) == "accountDoesNotExist"


def test_terms_of_service_must_be_agreed_when_set(tmp_path: Path) -> None:
    core = make_core(tmp_path / "a.sqlite3", terms_of_service="https://example.com/tos")
    assert problem(Client(core).post(ACCOUNT, {}, jwk=True)) == "malformed"
    client = Client(core)
    reply = client.register(termsOfServiceAgreed=True)
    assert body(reply)["termsOfServiceAgreed"] is True


def _eab(client: Client, kid: str, secret: bytes) -> dict[str, Any]:
    """An External Account Binding as certbot makes it (acme.messages)."""
    directory = messages.Directory({"newAccount": ACCOUNT})
    binding = messages.ExternalAccountBinding.from_data(
        client.key.public_key(), kid, b64(secret), directory)  # fmt: skip
    return dict(binding)


def test_external_account_binding_when_required(tmp_path: Path) -> None:
    secret = b"s" * 32
    core = make_core(tmp_path / "a.sqlite3", eab_required=True, eab_keys={"op-1": b64(secret)})
    client = Client(core)
    assert problem(client.post(ACCOUNT, {}, jwk=True)) == "externalAccountRequired"
    wrong = client.post(ACCOUNT, {"externalAccountBinding": _eab(client, "op-1", b"x" * 32)},
                        jwk=True)  # fmt: skip
    assert problem(wrong) == "unauthorized"
    reply = client.post(ACCOUNT, {"externalAccountBinding": _eab(client, "op-1", secret)},
                        jwk=True)  # fmt: skip
    assert reply["status"] == 201, body(reply)
    assert body(reply)["externalAccountBinding"] == {"kid": "op-1"}


def test_an_account_updates_its_contact_and_deactivates_for_good(client: Client) -> None:
    reply = client.post(client.kid, {"contact": ["mailto:new@example.com"]})
    assert body(reply)["contact"] == ["mailto:new@example.com"]
    pending = header(client.order("p.example.com"), "Location")
    assert body(client.post(client.kid, {"status": "deactivated"}))["status"] == "deactivated"
    assert problem(client.order("a.example.com")) == "unauthorized"
    assert problem(client.post(pending)) == "unauthorized"
    assert problem(client.post(ACCOUNT, {}, jwk=True)) == "unauthorized"


def test_another_accounts_resources_are_unauthorized(client: Client) -> None:
    order = body(client.order("mine.example.com"))
    other = Client(client.core)
    other.register()
    assert problem(other.post(order["authorizations"][0])) == "unauthorized"
    assert problem(other.post(order["finalize"], {"csr": csr_for("mine.example.com")})) == (
        "unauthorized")  # fmt: skip
    assert problem(other.post(client.kid)) == "unauthorized"


def _key_change(client: Client, new_key: jose.JWK) -> dict[str, Any]:
    """keyChange (RFC 8555 §7.3.5), its inner JWS signed with the acme library's JWS (the
    library has no rollover of its own; lego's and Boulder's carry the same JSON)."""
    url = BASE + "/acme/key-change"
    change = {"account": client.kid, "oldKey": client.key.public_key().to_json()}
    inner = acme_jws.JWS.sign(json.dumps(change).encode(), key=new_key, alg=jose.ES256,
                              nonce=None, url=url)  # fmt: skip
    return client.post(url, json.loads(inner.json_dumps()))


def test_key_change_moves_the_account_to_the_new_key(client: Client) -> None:
    new_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    reply = _key_change(client, new_key)
    assert reply["status"] == 200, body(reply)
    old_key, client.key = client.key, new_key
    assert client.order("k.example.com")["status"] == 201
    client.key = old_key
    assert problem(client.order("k.example.com")) == "malformed"  # the signature fails


def test_key_change_to_another_accounts_key_is_a_conflict(client: Client) -> None:
    other = Client(client.core)
    other.register()
    reply = _key_change(client, other.key)
    assert reply["status"] == 409 and problem(reply) == "conflict"
    assert header(reply, "Location") == other.kid


# Orders ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["notBefore", "notAfter"])
def test_not_before_and_not_after_are_refused_saying_so(client: Client, field: str) -> None:
    reply = client.order("a.example.com", **{field: "2030-01-01T00:00:00Z"})
    assert problem(reply) == "malformed" and field in body(reply)["detail"]


def test_an_unknown_profile_is_invalid_profile(client: Client) -> None:
    reply = client.order("a.example.com", profile="forever")
    assert problem(reply) == "invalidProfile" and "default" in body(reply)["detail"]


def test_identifiers_outside_the_zones_are_rejected(client: Client) -> None:
    reply = client.order("www.example.org")
    assert problem(reply) == "rejectedIdentifier"
    assert problem(client.order("192.0.2.1")) == "rejectedIdentifier"


def test_replaces_must_name_a_certificate_of_this_account(client: Client) -> None:
    assert problem(client.order("a.example.com", replaces="AAAA.AQ")) == "malformed"
    assert problem(client.order("a.example.com", replaces="not an id")) == "malformed"


def test_finalize_before_ready_is_order_not_ready(client: Client) -> None:
    order = body(client.order("n.example.com"))
    reply = client.post(order["finalize"], {"csr": csr_for("n.example.com")})
    assert reply["status"] == 403 and problem(reply) == "orderNotReady"


def _ready(client: Client, *names: str) -> dict[str, Any]:
    reply = client.order(*names)
    for validate in client.answer_challenge(body(reply)):
        client.core.validated(validate.challenge_id, approval(validate, client.now), client.now)
    return body(client.post(header(reply, "Location")))


@pytest.mark.parametrize("names", [("x.example.com",), ("r.example.com", "x.example.com"),
                                   ("R.example.com",)])  # fmt: skip
def test_a_csr_must_name_the_orders_identifiers_exactly(client: Client, names: tuple[str]) -> None:
    order = _ready(client, "r.example.com", "s.example.com")
    reply = client.post(order["finalize"], {"csr": csr_for(*names)})
    assert problem(reply) == "badCSR"
    assert body(client.post(order["finalize"].removesuffix("/finalize")))["status"] == "ready"


def test_a_csr_that_is_not_one_is_bad_csr(client: Client) -> None:
    order = _ready(client, "c.example.com")
    assert problem(client.post(order["finalize"], {"csr": b64(b"junk")})) == "badCSR"


@pytest.mark.parametrize("error, expected", [
    (MalformedCSR("pkcs10", "unreadable"), "badCSR"),
    (KeyNotAllowed("allowed_key_types", "no DSA"), "badPublicKey"),
    (NameNotPermitted("permitted_zones", "outside"), "rejectedIdentifier"),
    (NotApproved("the validators did not corroborate"), "unauthorized"),
    (TrustChainError("something else"), "serverInternal"),
])  # fmt: skip
def test_the_issuers_refusal_is_the_orders_error(client: Client, error: TrustChainError,
                                                 expected: str) -> None:  # fmt: skip
    order = _ready(client, "i.example.com")
    client.post(order["finalize"], {"csr": csr_for("i.example.com")})
    effect = client.effects[-1]
    assert isinstance(effect, Issue)
    assert client.core.issued(effect.order_id, error, client.now) == []
    final = body(client.post(order["finalize"].removesuffix("/finalize")))
    assert final["status"] == "invalid" and final["error"]["type"].endswith(":" + expected)


def test_an_issuer_that_is_restarting_is_asked_again_then_given_up_on(client: Client) -> None:
    order = _ready(client, "u.example.com")
    client.post(order["finalize"], {"csr": csr_for("u.example.com")})
    effect = client.effects[-1]
    delays = []
    for _ in range(10):
        effects = client.core.issued(effect.order_id, ActorUnavailable("restarting"), client.now)
        if not effects:
            break
        (later,) = effects
        assert isinstance(later, Later) and isinstance(later.effect, Issue)
        delays.append(later.delay_s)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    final = body(client.post(order["finalize"].removesuffix("/finalize")))
    assert final["status"] == "invalid" and final["error"]["type"].endswith(":serverInternal")


# Challenges ------------------------------------------------------------------------------


def _answered(client: Client, name: str) -> tuple[dict[str, Any], Validate]:
    order_reply = client.order(name)
    (validate,) = client.answer_challenge(body(order_reply))
    return {**body(order_reply), "url": header(order_reply, "Location")}, validate


@pytest.mark.parametrize("reason, expected", [
    ("connection", "connection"), ("incorrectResponse", "incorrectResponse"),
    ("dns", "dns"), ("tls", "tls"), ("work_invalid", "unauthorized"),
])  # fmt: skip
def test_the_validators_refusal_fails_challenge_authorization_and_order(
    client: Client, reason: str, expected: str
) -> None:
    order, validate = _answered(client, "f.example.com")
    refusal = NotApproved(f"the validators refused it: {reason}: nothing at port 80",
                          reasons=[reason])  # fmt: skip
    client.core.validated(validate.challenge_id, refusal, client.now)
    authz = body(client.post(order["authorizations"][0]))
    (challenge,) = [c for c in authz["challenges"] if c["status"] != "pending"]
    assert challenge["status"] == "invalid"
    assert challenge["error"]["type"].endswith(":" + expected)
    assert "nothing at port 80" in challenge["error"]["detail"]
    assert authz["status"] == "invalid"
    final = body(client.post(order["url"]))
    assert final["status"] == "invalid" and final["error"] == challenge["error"]


def test_quorum_not_reached_is_retried_then_fails_the_challenge_as_server_internal(
    client: Client,
) -> None:
    """Too few validators answering is not the applicant's failure: asked again after a
    backoff, and only after the last attempt invalid, as the server's problem."""
    order, validate = _answered(client, "q.example.com")
    for _ in range(10):
        again = client.core.validated(validate.challenge_id, QuorumNotReached("2 of 4"),
                                      client.now)  # fmt: skip
        if not again:
            break
        (later,) = again
        assert isinstance(later, Later) and isinstance(later.effect, Validate)
        assert body(client.post(order["url"]))["status"] == "pending"
    else:
        raise AssertionError("retried without end")
    assert body(client.post(order["url"]))["status"] == "invalid"
    authz = body(client.post(order["authorizations"][0]))
    assert authz["challenges"][0]["error"]["type"].endswith(":serverInternal")


def test_a_failed_authorization_shows_the_challenge_used_and_takes_no_other(
    client: Client,
) -> None:
    order = body(client.order("g.example.com"))
    challenges = body(client.post(order["authorizations"][0]))["challenges"]
    (validate,) = client.answer_challenge(order)
    client.core.validated(validate.challenge_id, NotApproved("x", reasons=["dns"]), client.now)
    authz = body(client.post(order["authorizations"][0]))
    assert [c["type"] for c in authz["challenges"]] == ["http-01"]
    other = next(c for c in challenges if c["type"] == "dns-01")
    assert problem(client.post(other["url"], {})) == "malformed"


def test_a_deactivated_authorization_invalidates_its_order(client: Client) -> None:
    order = body(client.order("h.example.com"))
    authz = body(client.post(order["authorizations"][0], {"status": "deactivated"}))
    assert authz["status"] == "deactivated"
    reply = client.post(order["authorizations"][0], {"status": "deactivated"})
    assert problem(reply) == "malformed"
    assert body(client.post(order["finalize"].removesuffix("/finalize")))["status"] == "invalid"


def test_an_order_past_its_expiry_is_invalid(client: Client) -> None:
    url = header(client.order("e.example.com"), "Location")
    client.now += client.core.config.order_lifetime_s
    order = body(client.post(url))
    assert order["status"] == "invalid" and order["error"]["type"].endswith(":unauthorized")


def test_raw_requests_still_answer_without_a_body(core: AcmeCore) -> None:
    answer, effects = core.handle(AcmeRequest("POST", BASE + "/acme/new-order", b""), 0.0)
    assert answer is not None and answer["status"] == 415 and effects == []
