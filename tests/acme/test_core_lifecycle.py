"""The ACME core over time: a restart mid-order (a new core over the same SQLite file),
rate limits and their Retry-After, renewal information (RFC 9773) and renewals that
name the certificate they replace, and revocation (RFC 8555 §7.6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.acme.core import AcmeCore
from trustchain.actors.acme.effects import Issue, Revoke, Validate
from trustchain.actors.acme.identifiers import cert_id
from trustchain.actors.acme.messages import AcmeRequest
from trustchain.actors.acme.records import rfc3339
from trustchain.actors.ca.errors import AlreadyRevoked
from trustchain.supervisors.errors import ActorUnavailable

from .test_core import (
    BASE,
    Client,
    Issuer,
    approval,
    b64,
    body,
    csr_for,
    header,
    issue,
    make_core,
    problem,
)

REVOKE = BASE + "/acme/revoke-cert"


# A restart mid-order ---------------------------------------------------------------------


def test_a_new_core_over_the_same_file_resumes_what_was_processing(tmp_path: Path) -> None:
    database = tmp_path / "acme.sqlite3"
    client = Client(make_core(database))
    client.register()
    validating = body(client.order("v.example.com"))
    (validate,) = client.answer_challenge(validating)
    issuing_url = header(client.order("i.example.com"), "Location")
    for each in client.answer_challenge(body(client.post(issuing_url))):
        client.core.validated(each.challenge_id, approval(each, client.now), client.now)
    client.post(f"{issuing_url}/finalize", {"csr": csr_for("i.example.com")})
    # the process dies here: the validators' and the issuer's answers are lost with it

    restarted = make_core(database)
    effects = restarted.resume(client.now + 5)
    (again,) = [e for e in effects if isinstance(e, Validate)]
    (issue_again,) = [e for e in effects if isinstance(e, Issue)]
    assert again.message == validate.message
    assert issue_again.message.acme_account == validate.message.account
    restarted.validated(again.challenge_id, approval(again, client.now), client.now)
    restarted.issued(issue_again.order_id, Issuer().answer(issue_again, client.now), client.now)

    client.core, client.nonce = restarted, None  # old nonces are gone: the client gets one
    assert body(client.post(issuing_url))["status"] == "valid"
    order = body(client.post(header(client.order("v.example.com"), "Location")))
    assert order["status"] == "ready"  # v's authorization, validated after the restart
    assert restarted.resume(client.now) == []


def test_a_result_that_comes_twice_counts_once(client: Client) -> None:
    (validate,) = client.answer_challenge(body(client.order("t.example.com")))
    assert client.core.validated(validate.challenge_id, approval(validate, client.now),
                                 client.now) == []  # fmt: skip
    late = ActorUnavailable("a retry's answer after the approval")
    assert client.core.validated(validate.challenge_id, late, client.now) == []
    assert client.core.status()["challenges"]["validated"] == 1


@pytest.fixture
def core(tmp_path: Path) -> AcmeCore:
    return make_core(tmp_path / "acme.sqlite3", max_orders_per_account=3,
                     max_certificates_per_name=2, rate_window_s=3_600)  # fmt: skip


@pytest.fixture
def client(core: AcmeCore) -> Client:
    client = Client(core)
    client.register()
    return client


# Rate limits -----------------------------------------------------------------------------


def test_orders_per_account_are_limited_with_retry_after(client: Client) -> None:
    for i in range(3):
        assert client.order(f"o{i}.example.com")["status"] == 201
        client.now += 100
    reply = client.order("o9.example.com")
    assert reply["status"] == 429 and problem(reply) == "rateLimited"
    assert header(reply, "Retry-After") == str(3_600 - 300)  # when the first leaves the window
    client.now += 3_600 - 300
    assert client.order("o9.example.com")["status"] == 201
    other = Client(client.core)
    other.register()
    assert other.order("o9.example.com")["status"] == 201  # per account


def test_certificates_per_name_are_limited_with_retry_after(tmp_path: Path) -> None:
    client = Client(make_core(tmp_path / "a.sqlite3", max_certificates_per_name=2))
    client.register()
    issuer = Issuer()
    issue(client, issuer, "n.example.com")
    client.now += 60
    issue(client, issuer, "n.example.com")
    reply = client.order("n.example.com", "m.example.com")
    assert reply["status"] == 429 and problem(reply) == "rateLimited"
    assert header(reply, "Retry-After") == str(3_600 - 60)
    assert "n.example.com" in body(reply)["detail"]
    assert client.order("m.example.com")["status"] == 201


# Renewal information (RFC 9773) and renewals ---------------------------------------------


def _leaf(client: Client, order: dict[str, Any]) -> x509.Certificate:
    return x509.load_pem_x509_certificates(client.post(order["certificate"])["body"])[0]


def test_renewal_info_suggests_two_thirds_to_five_sixths_of_the_lifetime(client: Client) -> None:
    order = issue(client, Issuer(), "w.example.com")
    leaf = _leaf(client, order)
    reply = client.send("GET", f"{BASE}/acme/renewal-info/{cert_id(leaf)}")
    assert reply["status"] == 200 and int(header(reply, "Retry-After") or 0) > 0
    window = body(reply)["suggestedWindow"]
    start = leaf.not_valid_before_utc.timestamp()
    assert window == {"start": rfc3339(start + 16 * 3_600), "end": rfc3339(start + 20 * 3_600)}


def test_renewal_info_of_an_unknown_certificate_is_404(client: Client) -> None:
    reply = client.send("GET", f"{BASE}/acme/renewal-info/AAAA.AQ")
    assert reply["status"] == 404
    assert problem(client.send("GET", f"{BASE}/acme/renewal-info/nonsense")) == "malformed"


def test_a_renewal_names_what_it_replaces_once(client: Client) -> None:
    issuer = Issuer()
    first = issue(client, issuer, "r.example.com")
    old = cert_id(_leaf(client, first))
    reply = client.order("r.example.com", replaces=old)
    assert reply["status"] == 201 and body(reply)["replaces"] == old
    again = client.order("r.example.com", replaces=old)
    assert again["status"] == 409 and problem(again) == "conflict"
    other = Client(client.core)
    other.register()
    assert problem(other.order("r.example.com", replaces=old)) == "malformed"


# Revocation (§7.6) -----------------------------------------------------------------------


def _revoke(client: Client, leaf: x509.Certificate, reason: int | None = None,
            **how: Any) -> tuple[dict[str, Any] | None, list[Any]]:  # fmt: skip
    payload: dict[str, Any] = {"certificate": b64(leaf.public_bytes(serialization.Encoding.DER))}
    if reason is not None:
        payload["reason"] = reason
    request = AcmeRequest("POST", REVOKE, client.sign(REVOKE, payload, **how),
                          "application/jose+json")  # fmt: skip
    answer, effects = client.core.handle(request, client.now)
    client.nonce = None if answer is None else header(answer, "Replay-Nonce")
    return answer, effects


def test_the_ordering_account_revokes_and_the_answer_waits_for_the_issuer(client: Client) -> None:
    leaf = _leaf(client, issue(client, Issuer(), "x.example.com"))
    answer, effects = _revoke(client, leaf, reason=1)
    assert answer is None
    (revoke,) = effects
    assert isinstance(revoke, Revoke)
    assert revoke.message.reason == "key_compromise"
    assert revoke.message.serial == format(leaf.serial_number, "x")
    issuer_answer = {"serial": revoke.message.serial, "status": "revoked"}
    reply = client.core.revoked(revoke.pending, issuer_answer, client.now)
    assert reply["status"] == 200 and header(reply, "Replay-Nonce")
    client.nonce = header(reply, "Replay-Nonce")
    answer, effects = _revoke(client, leaf)
    assert answer is not None and problem(answer) == "alreadyRevoked" and effects == []
    window = body(client.send("GET", f"{BASE}/acme/renewal-info/{cert_id(leaf)}"))
    assert window["suggestedWindow"]["end"] <= rfc3339(client.now)  # renew now


def test_the_certificates_own_key_may_revoke_it(client: Client) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    order = body(client.order("k.example.com"))
    for each in client.answer_challenge(order):
        client.core.validated(each.challenge_id, approval(each, client.now), client.now)
    client.post(order["finalize"], {"csr": csr_for("k.example.com", key=key)})
    issue_effect = client.effects[-1]
    client.core.issued(issue_effect.order_id, Issuer().answer(issue_effect, client.now),
                       client.now)  # fmt: skip
    leaf = _leaf(client, body(client.post(order["finalize"].removesuffix("/finalize"))))
    answer, effects = _revoke(client, leaf, key=jose.JWKEC(key=key), jwk=True)
    assert answer is None and isinstance(effects[0], Revoke)
    answer, _ = _revoke(client, leaf, key=jose.JWKEC(key=ec.generate_private_key(
        ec.SECP256R1())), jwk=True)  # fmt: skip
    assert answer is not None and problem(answer) == "unauthorized"


def test_another_account_without_authorizations_may_not_revoke(client: Client) -> None:
    leaf = _leaf(client, issue(client, Issuer(), "y.example.com"))
    other = Client(client.core)
    other.register()
    answer, _ = _revoke(other, leaf)
    assert answer is not None and problem(answer) == "unauthorized"


@pytest.mark.parametrize("reason", [2, 6, 7, 8, 10, 11, -1])
def test_reasons_the_issuer_does_not_take_are_bad_revocation_reason(
    client: Client, reason: int
) -> None:
    leaf = _leaf(client, issue(client, Issuer(), f"z{reason + 1}.example.com"))
    answer, _ = _revoke(client, leaf, reason=reason)
    assert answer is not None and problem(answer) == "badRevocationReason"


def test_the_issuers_already_revoked_is_already_revoked(client: Client) -> None:
    leaf = _leaf(client, issue(client, Issuer(), "a.example.com"))
    _, (revoke,) = _revoke(client, leaf)
    reply = client.core.revoked(revoke.pending, AlreadyRevoked("revoked before"), client.now)
    assert problem(reply) == "alreadyRevoked"


def test_an_issuer_that_cannot_revoke_now_is_a_503_to_retry(client: Client) -> None:
    leaf = _leaf(client, issue(client, Issuer(), "b.example.com"))
    _, (revoke,) = _revoke(client, leaf)
    reply = client.core.revoked(revoke.pending, ActorUnavailable("restarting"), client.now)
    assert reply["status"] == 503 and problem(reply) == "serverInternal"
    assert header(reply, "Retry-After")
    client.nonce = header(reply, "Replay-Nonce")
    answer, effects = _revoke(client, leaf)  # not revoked: it can be asked again
    assert answer is None and effects
