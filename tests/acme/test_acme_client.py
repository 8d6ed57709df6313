"""TrustChain's ACME server at the protocol's edges, over the wire, with the ``acme``
library (the library certbot is built on) against a real ``trustchain run``.

Requests the library would never send (a reused nonce, a wrong ``url``, a broken
signature) are signed here with the library's own JWS (``acme.jws.JWS``) and sent with
``requests``, so that the answer's status, problem document and headers can be read:
the library raises on an error and drops the headers, Retry-After among them.

One tree for the module, with low rate limits (``ACME``): every test uses accounts of
its own, so only the rate-limit tests reach them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
import requests
from acme import challenges, client, crypto_util, messages
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.config import HsmConfig

from .conftest import AcmeTree, acme_tree

pytestmark = pytest.mark.slow  # a tree with N = 4 validators takes seconds to start

ERROR = "urn:ietf:params:acme:error:"
MAX_ORDERS_PER_ACCOUNT = 4
ACME = {
    "authorization_reuse_s": 0,  # every order's names are validated again
    "max_orders_per_account": MAX_ORDERS_PER_ACCOUNT,
    "max_certificates_per_name": 1,
    "profiles": {"default": 86_400, "asset": 86_400},
    "consensus_profiles": ["asset"],  # domain control and the four-proof consensus
}


@pytest.fixture(scope="module")
def tree(softhsm: HsmConfig) -> Iterator[AcmeTree]:
    with acme_tree(softhsm, ACME) as running:
        yield running


class Account:
    """A registered account: the library's client, its key, and raw signed requests."""

    def __init__(self, tree: AcmeTree) -> None:
        self.tree = tree
        self.key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.net = client.ClientNetwork(self.key, alg=jose.ES256, verify_ssl=str(tree.root))
        self.acme = client.ClientV2(
            client.ClientV2.get_directory(tree.directory_url, self.net), self.net
        )
        self.regr = self.acme.new_account(
            messages.NewRegistration.from_data(terms_of_service_agreed=True)
        )
        self.cert_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def directory(self) -> messages.Directory:
        return self.acme.directory

    def nonce(self) -> str:
        response = requests.head(self.directory["newNonce"], verify=str(self.tree.root), timeout=10)
        assert response.status_code == 200, response.text
        return response.headers["Replay-Nonce"]

    def post(
        self,
        url: str,
        payload: dict[str, Any] | None,
        *,
        nonce: str | None = None,
        jws_url: str | None = None,
        break_signature: bool = False,
    ) -> requests.Response:
        """One signed POST (POST-as-GET when ``payload`` is None), as the library signs
        it but sent as is: ``nonce``, ``jws_url`` and the signature can be wrong."""
        body = b"" if payload is None else json.dumps(payload).encode()
        signed_json = acme_jws.JWS.sign(
            body,
            key=self.key,
            alg=jose.ES256,
            nonce=jose.b64decode(nonce or self.nonce()),
            url=jws_url or url,
            kid=self.regr.uri,
        ).json_dumps()
        signed = json.loads(signed_json)
        if break_signature:
            signature = bytearray(jose.b64decode(signed["signature"]))
            signature[5] ^= 0x01
            signed["signature"] = jose.b64encode(bytes(signature)).decode()
        return requests.post(
            url,
            data=json.dumps(signed),
            headers={"Content-Type": "application/jose+json"},
            verify=str(self.tree.root),
            timeout=30,
        )

    def csr(self, *names: str) -> bytes:
        return crypto_util.make_csr(self.cert_key, list(names))

    def ready_order(self, name: str, profile: str | None = None) -> messages.OrderResource:
        """An order for ``name`` whose http-01 challenge the validators checked: ready."""
        orderr = self.acme.new_order(self.csr(name), profile=profile)
        for authzr in orderr.authorizations:
            challb = next(
                c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01)
            )
            response, validation = challb.response_and_validation(self.key)
            assert self.tree.responder is not None
            self.tree.responder.tokens[challb.chall.encode("token")] = validation
            self.acme.answer_challenge(challb, response)
        return self.wait_order(orderr, {"ready", "valid", "invalid"})

    def wait_order(self, orderr: messages.OrderResource, until: set[str]) -> messages.OrderResource:
        deadline = time.monotonic() + 30  # a bound on a failure, not a timing assertion
        while True:
            response = self.post(orderr.uri, None)
            assert response.status_code == 200, response.text
            body = messages.Order.from_json(response.json())
            if body.status in {messages.Status.from_json(s) for s in until}:
                return orderr.update(body=body)
            assert time.monotonic() < deadline, f"order still {body.status}: {response.text}"
            time.sleep(0.05)


def problem(response: requests.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    document = response.json()
    assert document["type"] == ERROR + type_, document
    assert document.get("detail"), document
    # every answer carries a fresh nonce, errors too (RFC 8555 §6.5)
    assert response.headers.get("Replay-Nonce"), response.headers
    return document


@pytest.fixture
def account(tree: AcmeTree) -> Account:
    return Account(tree)


def test_a_reused_nonce_is_bad_nonce_with_a_fresh_one_to_retry(account: Account) -> None:
    url = account.regr.uri
    nonce = account.nonce()
    first = account.post(url, None, nonce=nonce)
    assert first.status_code == 200, first.text
    again = account.post(url, None, nonce=nonce)
    problem(again, 400, "badNonce")
    fresh = again.headers["Replay-Nonce"]
    assert fresh not in (nonce, first.headers["Replay-Nonce"])
    retried = account.post(url, None, nonce=fresh)  # what the library does on badNonce
    assert retried.status_code == 200, retried.text
    assert account.post(url, None, nonce="AAAAAAAAAAAAAAAAAAAAAA").status_code == 400


def test_a_jws_url_other_than_the_request_url_is_unauthorized(account: Account) -> None:
    new_order = account.directory["newOrder"]
    payload = {"identifiers": [{"type": "dns", "value": account.tree.fresh_name()}]}
    refused = account.post(new_order, payload, jws_url=new_order + "x")
    problem(refused, 403, "unauthorized")  # RFC 8555 §6.4


def test_a_bad_signature_is_refused(account: Account) -> None:
    new_order = account.directory["newOrder"]
    payload = {"identifiers": [{"type": "dns", "value": account.tree.fresh_name()}]}
    document = problem(account.post(new_order, payload, break_signature=True), 400, "malformed")
    assert "signature" in document["detail"]
    assert account.post(new_order, payload).status_code == 201  # the same, signed: taken


def test_a_name_outside_the_permitted_zones_is_a_rejected_identifier(account: Account) -> None:
    payload = {"identifiers": [{"type": "dns", "value": "www.example.org"}]}
    document = problem(
        account.post(account.directory["newOrder"], payload), 400, "rejectedIdentifier"
    )
    assert "www.example.org" in document["detail"] or any(
        "www.example.org" in str(sub) for sub in document.get("subproblems", [])
    )
    with pytest.raises(messages.Error) as refused:  # the library says the same
        account.acme.new_order(account.csr("www.example.org"))
    assert refused.value.code == "rejectedIdentifier"


def test_finalize_before_the_order_is_ready_is_order_not_ready(account: Account) -> None:
    name = account.tree.fresh_name()
    orderr = account.acme.new_order(account.csr(name))
    assert orderr.body.status == messages.STATUS_PENDING
    csr_der = x509.load_pem_x509_csr(account.csr(name)).public_bytes(serialization.Encoding.DER)
    finalize = account.post(orderr.body.finalize, {"csr": jose.b64encode(csr_der).decode()})
    problem(finalize, 403, "orderNotReady")


def test_a_csr_for_names_not_in_the_order_is_bad_csr(account: Account) -> None:
    name, other = account.tree.fresh_name(), account.tree.fresh_name()
    orderr = account.ready_order(name)
    assert orderr.body.status == messages.STATUS_READY, orderr.body
    for names in ([other], [name, other]):
        csr_der = x509.load_pem_x509_csr(account.csr(*names)).public_bytes(
            serialization.Encoding.DER
        )
        finalize = account.post(orderr.body.finalize, {"csr": jose.b64encode(csr_der).decode()})
        problem(finalize, 400, "badCSR")


def test_an_order_completes_and_its_chain_verifies(account: Account) -> None:
    name = account.tree.fresh_name()
    orderr = account.ready_order(name)
    assert orderr.body.status == messages.STATUS_READY, orderr.body
    orderr = account.acme.begin_finalization(orderr.update(csr_pem=account.csr(name)))
    orderr = account.wait_order(orderr, {"valid", "invalid"})
    assert orderr.body.status == messages.STATUS_VALID, orderr.body
    download = account.post(orderr.body.certificate, None)
    assert download.status_code == 200, download.text
    assert download.headers["Content-Type"].startswith("application/pem-certificate-chain")
    chain = x509.load_pem_x509_certificates(download.content)
    leaf = chain[0]
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [name]
    root = x509.load_pem_x509_certificate(account.tree.root.read_bytes())
    store = x509.verification.Store([root])
    verifier = (
        x509.verification.PolicyBuilder().store(store).build_server_verifier(x509.DNSName(name))
    )
    verifier.verify(leaf, chain[1:])


def test_orders_past_the_accounts_limit_are_rate_limited_with_retry_after(
    account: Account,
) -> None:
    new_order = account.directory["newOrder"]
    for _ in range(MAX_ORDERS_PER_ACCOUNT):
        payload = {"identifiers": [{"type": "dns", "value": account.tree.fresh_name()}]}
        assert account.post(new_order, payload).status_code == 201
    payload = {"identifiers": [{"type": "dns", "value": account.tree.fresh_name()}]}
    limited = account.post(new_order, payload)
    problem(limited, 429, "rateLimited")
    assert int(limited.headers["Retry-After"]) > 0, limited.headers
    other = Account(account.tree)  # the limit is the account's, not everyone's
    assert other.post(new_order, payload).status_code == 201


def test_certificates_past_the_names_limit_are_rate_limited_with_retry_after(
    tree: AcmeTree,
) -> None:
    name = tree.fresh_name()
    first = Account(tree)
    orderr = first.ready_order(name)
    orderr = first.acme.begin_finalization(orderr.update(csr_pem=first.csr(name)))
    assert first.wait_order(orderr, {"valid", "invalid"}).body.status == messages.STATUS_VALID
    second = Account(tree)  # the limit is the name's, whoever asks
    payload = {"identifiers": [{"type": "dns", "value": name}]}
    limited = second.post(second.directory["newOrder"], payload)
    if limited.status_code == 201:  # a server may count at finalize instead of newOrder
        orderr = second.ready_order(name)
        csr_der = x509.load_pem_x509_csr(second.csr(name)).public_bytes(serialization.Encoding.DER)
        limited = second.post(orderr.body.finalize, {"csr": jose.b64encode(csr_der).decode()})
    problem(limited, 429, "rateLimited")
    assert int(limited.headers["Retry-After"]) > 0, limited.headers


def test_a_consensus_profile_needs_the_assets_proofs_and_keeps_both_approvals(
    account: Account, tmp_path: Path
) -> None:
    tree = account.tree
    name = tree.fresh_name()
    orderr = account.ready_order(name, profile="asset")
    assert orderr.body.status == messages.STATUS_READY, orderr.body
    csr_pem = account.csr(name)
    csr_der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    finalize = {"csr": jose.b64encode(csr_der).decode()}
    document = problem(account.post(orderr.body.finalize, finalize), 403, "unauthorized")
    assert "trustchainProofs" in document["detail"]
    # the asset's proofs for this CSR, as a user makes them (registering the CLI's asset)
    (tmp_path / "req.csr").write_bytes(csr_pem)
    proved = tree.cli("trust", "prove", "--csr", str(tmp_path / "req.csr"))
    assert proved.returncode == 0, proved.stderr
    proofs = json.loads(proved.stdout)
    # proofs made for another CSR are bound to it: the validators refuse them
    other = Account(tree)
    other_name = tree.fresh_name()
    wrong = other.ready_order(other_name, profile="asset")
    other_csr = x509.load_pem_x509_csr(other.csr(other_name)).public_bytes(
        serialization.Encoding.DER
    )
    bound_elsewhere = {"csr": jose.b64encode(other_csr).decode(), "trustchainProofs": proofs}
    taken = other.post(wrong.body.finalize, bound_elsewhere)
    assert taken.status_code == 200, taken.text
    refused = other.wait_order(wrong, {"valid", "invalid"})
    assert refused.body.status == messages.STATUS_INVALID, refused.body
    assert refused.body.error.code == "unauthorized", refused.body.error
    # with its own proofs the order is issued, and the record keeps both approvals
    taken = account.post(orderr.body.finalize, {**finalize, "trustchainProofs": proofs})
    assert taken.status_code == 200, taken.text
    orderr = account.wait_order(orderr, {"valid", "invalid"})
    assert orderr.body.status == messages.STATUS_VALID, orderr.body
    leaf = x509.load_pem_x509_certificates(account.post(orderr.body.certificate, None).content)[0]
    serial = format(leaf.serial_number, "x")
    got = tree.cli("send", "issuer", "get_certificate", "--args", json.dumps({"serial": serial}))
    assert got.returncode == 0, got.stderr
    decision = json.loads(got.stdout)["decision"]
    assert decision["outcome"] == "approve" and len(decision["votes"]) >= 3  # 2f+1 of N = 4
    assert [d["name"] for d in decision["domain_control"]] == [name]
