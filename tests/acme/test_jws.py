"""actors/acme/jws.py against signatures made by independent code: the ``acme`` library's
JWS classes with josepy keys (as certbot signs), and jwcrypto for EdDSA."""

from __future__ import annotations

import base64
import json
from typing import Any

import josepy as jose
import pytest
from acme import jws as acme_jws
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from trustchain.actors.acme.jws import (
    ALGORITHMS,
    check_public_key,
    check_request,
    key_authorization,
    thumbprint,
)
from trustchain.actors.acme.nonces import NonceStore
from trustchain.actors.acme.problems import AcmeProblem

BASE = "https://acme.trust.example.com/acme"
NEW_ACCOUNT = f"{BASE}/new-account"
NEW_ORDER = f"{BASE}/new-order"
KEY_CHANGE = f"{BASE}/key-change"
ACCOUNT = f"{BASE}/acct/1"

EC256 = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
EC384 = jose.JWKEC(key=ec.generate_private_key(ec.SECP384R1()))
EC256_OTHER = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
RSA2048 = jose.JWKRSA(key=rsa.generate_private_key(65537, 2048))
RSA1024 = jose.JWKRSA(key=rsa.generate_private_key(65537, 1024))
ED25519 = jwcrypto_jwk.JWK.from_pyca(ed25519.Ed25519PrivateKey.generate())


def public(key: jose.JWK) -> dict[str, Any]:
    return dict(key.public_key().to_partial_json())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def certbot_sign(
    payload: bytes,
    key: jose.JWK,
    alg: jose.JWASignature,
    nonce: str | None,
    url: str,
    kid: str | None = None,
) -> bytes:
    """A request body exactly as certbot's ClientNetwork._wrap_in_jws makes it."""
    raw_nonce = jose.b64decode(nonce) if nonce is not None else None
    signed = acme_jws.JWS.sign(payload, key=key, alg=alg, nonce=raw_nonce, url=url, kid=kid)
    return signed.json_dumps(indent=2).encode()


def jwcrypto_sign(payload: bytes, key: Any, header: dict[str, Any]) -> bytes:
    """A flattened JWS signed by jwcrypto with any protected header we like."""
    token = jwcrypto_jws.JWS(payload)
    token.add_signature(key, alg=header["alg"], protected=json.dumps(header))
    return token.serialize(compact=False).encode()


def no_account(kid: str) -> dict[str, Any]:
    raise AcmeProblem("accountDoesNotExist", f"no account {kid}")


def accounts(**keys: dict[str, Any]) -> Any:
    by_url = {f"{BASE}/acct/{name}": key for name, key in keys.items()}

    def account_key(kid: str) -> dict[str, Any]:
        if kid not in by_url:
            raise AcmeProblem("accountDoesNotExist", f"no account {kid}")
        return by_url[kid]

    return account_key


@pytest.fixture
def nonces() -> NonceStore:
    return NonceStore(capacity=64)


def refused(type_: str, body: bytes, url: str, nonces: NonceStore, **kw: Any) -> AcmeProblem:
    kw.setdefault("jwk_allowed", True)
    kw.setdefault("account_key", no_account)
    with pytest.raises(AcmeProblem) as caught:
        check_request(body, url, nonces, kw.pop("account_key"), **kw)
    assert caught.value.type == type_, caught.value.detail
    return caught.value


# --- what certbot, lego and jwcrypto send is accepted -------------------------------------


@pytest.mark.parametrize(
    ("key", "alg"),
    [(EC256, jose.ES256), (EC384, jose.ES384), (RSA2048, jose.RS256)],
    ids=["ES256", "ES384", "RS256"],
)
def test_certbot_signed_new_account_is_accepted(
    key: jose.JWK, alg: Any, nonces: NonceStore
) -> None:
    nonce = nonces.new()
    body = certbot_sign(b'{"termsOfServiceAgreed": true}', key, alg, nonce, NEW_ACCOUNT)
    request = check_request(body, NEW_ACCOUNT, nonces, no_account, jwk_allowed=True)
    assert request.alg == alg.name
    assert request.nonce == nonce
    assert request.url == NEW_ACCOUNT
    assert request.kid is None
    assert request.jwk == public(key)
    assert request.json() == {"termsOfServiceAgreed": True}
    assert not request.post_as_get()


def test_certbot_signed_kid_request_uses_the_accounts_key(nonces: NonceStore) -> None:
    body = certbot_sign(b'{"identifiers": []}', EC256, jose.ES256, nonces.new(), NEW_ORDER, ACCOUNT)
    request = check_request(
        body, NEW_ORDER, nonces, accounts(**{"1": public(EC256)}), jwk_allowed=False
    )
    assert request.kid == ACCOUNT
    assert request.jwk is None
    assert request.json() == {"identifiers": []}


def test_post_as_get_has_an_empty_payload_and_no_json(nonces: NonceStore) -> None:
    url = f"{BASE}/order/7"
    body = certbot_sign(b"", EC256, jose.ES256, nonces.new(), url, ACCOUNT)
    request = check_request(body, url, nonces, accounts(**{"1": public(EC256)}), jwk_allowed=False)
    assert request.post_as_get()
    with pytest.raises(AcmeProblem, match="POST-as-GET") as caught:
        request.json()
    assert caught.value.type == "malformed"


def test_jwcrypto_eddsa_request_is_accepted(nonces: NonceStore) -> None:
    jwk = json.loads(ED25519.export_public())
    header = {"alg": "EdDSA", "jwk": jwk, "nonce": nonces.new(), "url": NEW_ACCOUNT}
    request = check_request(
        jwcrypto_sign(b"{}", ED25519, header), NEW_ACCOUNT, nonces, no_account, jwk_allowed=True
    )
    assert request.alg == "EdDSA"
    assert request.jwk == jwk


# --- refusals, in the order RFC 8555 §6.2-6.5 checks them -----------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"protected": "e30", "payload": "", "signature": "AA", "header": {}}',
        b'{"signatures": [], "payload": ""}',
        b"eyJhbGciOiJFUzI1NiJ9.e30.AAAA",  # compact serialization
        b'{"protected": "e30", "payload": "", "signature": "AA", "protected": "e30"}',
        b'{"protected": "e30=", "payload": "", "signature": "AA"}',  # padded
        b'{"protected": "e30", "payload": NaN, "signature": "AA"}',
    ],
    ids=["not-json", "array", "unprotected-header", "general", "compact", "dup", "pad", "nan"],
)
def test_anything_but_flattened_json_with_protected_header_only_is_malformed(
    body: bytes, nonces: NonceStore
) -> None:
    refused("malformed", body, NEW_ACCOUNT, nonces)


def test_deeply_nested_json_is_malformed_not_a_crash(nonces: NonceStore) -> None:
    refused("malformed", b"[" * 100_000 + b"]" * 100_000, NEW_ACCOUNT, nonces)
    deep = {
        "protected": "e30",
        "payload": "",
        "signature": "AA",
        "x": json.loads("[" * 50 + "]" * 50),
    }
    refused("malformed", json.dumps(deep).encode(), NEW_ACCOUNT, nonces)


def test_protected_header_that_is_not_an_object_is_malformed(nonces: NonceStore) -> None:
    body = json.dumps({"protected": b64(b"[1]"), "payload": "", "signature": "AA"}).encode()
    refused("malformed", body, NEW_ACCOUNT, nonces)


@pytest.mark.parametrize("alg", ["none", "HS256", "ES512", "PS256", "RS384"])
def test_alg_outside_the_list_is_bad_signature_algorithm_listing_ours(
    alg: str, nonces: NonceStore
) -> None:
    header = {"alg": alg, "jwk": public(EC256), "nonce": nonces.new(), "url": NEW_ACCOUNT}
    body = {"protected": b64(json.dumps(header).encode()), "payload": b64(b"{}"), "signature": ""}
    problem = refused("badSignatureAlgorithm", json.dumps(body).encode(), NEW_ACCOUNT, nonces)
    assert problem.to_json()["algorithms"] == list(ALGORITHMS)
    assert len(nonces) == 1  # refused before its nonce was spent


def test_hs256_signed_by_jwcrypto_is_refused(nonces: NonceStore) -> None:
    key = jwcrypto_jwk.JWK(kty="oct", k=b64(b"k" * 32))
    header = {"alg": "HS256", "kid": ACCOUNT, "nonce": nonces.new(), "url": NEW_ORDER}
    refused(
        "badSignatureAlgorithm",
        jwcrypto_sign(b"{}", key, header),
        NEW_ORDER,
        nonces,
        jwk_allowed=False,
    )


def test_reused_nonce_is_bad_nonce(nonces: NonceStore) -> None:
    nonce = nonces.new()
    body = certbot_sign(b"{}", EC256, jose.ES256, nonce, NEW_ACCOUNT)
    check_request(body, NEW_ACCOUNT, nonces, no_account, jwk_allowed=True)
    refused("badNonce", body, NEW_ACCOUNT, nonces)


def test_unknown_or_missing_nonce_is_bad_nonce(nonces: NonceStore) -> None:
    refused(
        "badNonce",
        certbot_sign(b"{}", EC256, jose.ES256, b64(b"x" * 16), NEW_ACCOUNT),
        NEW_ACCOUNT,
        nonces,
    )
    refused(
        "badNonce", certbot_sign(b"{}", EC256, jose.ES256, None, NEW_ACCOUNT), NEW_ACCOUNT, nonces
    )


def test_wrong_url_is_unauthorized(nonces: NonceStore) -> None:
    body = certbot_sign(b"{}", EC256, jose.ES256, nonces.new(), NEW_ORDER)
    refused("unauthorized", body, NEW_ACCOUNT, nonces)


def test_both_jwk_and_kid_is_malformed(nonces: NonceStore) -> None:
    header = {
        "alg": "ES256",
        "jwk": public(EC256),
        "kid": ACCOUNT,
        "nonce": nonces.new(),
        "url": NEW_ORDER,
    }
    key = jwcrypto_jwk.JWK(**EC256.to_partial_json())
    problem = refused("malformed", jwcrypto_sign(b"{}", key, header), NEW_ORDER, nonces)
    assert "exactly one" in problem.detail


def test_jwk_where_kid_is_needed_and_kid_where_jwk_is_needed_are_malformed(
    nonces: NonceStore,
) -> None:
    body = certbot_sign(b"{}", EC256, jose.ES256, nonces.new(), NEW_ORDER)
    problem = refused("malformed", body, NEW_ORDER, nonces, jwk_allowed=False)
    assert "needs 'kid'" in problem.detail
    body = certbot_sign(b"{}", EC256, jose.ES256, nonces.new(), NEW_ACCOUNT, ACCOUNT)
    problem = refused("malformed", body, NEW_ACCOUNT, nonces, jwk_allowed=True)
    assert "'jwk'" in problem.detail


def test_unknown_account_is_the_lookups_own_problem(nonces: NonceStore) -> None:
    body = certbot_sign(b"{}", EC256, jose.ES256, nonces.new(), NEW_ORDER, f"{BASE}/acct/9")
    refused(
        "accountDoesNotExist",
        body,
        NEW_ORDER,
        nonces,
        jwk_allowed=False,
        account_key=accounts(**{"1": public(EC256)}),
    )


def test_flipped_signature_byte_is_malformed_signature_invalid(nonces: NonceStore) -> None:
    body = json.loads(certbot_sign(b"{}", EC256, jose.ES256, nonces.new(), NEW_ACCOUNT))
    signature = bytearray(jose.b64decode(body["signature"]))
    signature[10] ^= 0x01
    body["signature"] = b64(bytes(signature))
    problem = refused("malformed", json.dumps(body).encode(), NEW_ACCOUNT, nonces)
    assert "JWS signature invalid" in problem.detail


def test_signature_by_another_key_than_the_accounts_is_malformed(nonces: NonceStore) -> None:
    body = certbot_sign(b"{}", EC256_OTHER, jose.ES256, nonces.new(), NEW_ORDER, ACCOUNT)
    refused(
        "malformed",
        body,
        NEW_ORDER,
        nonces,
        jwk_allowed=False,
        account_key=accounts(**{"1": public(EC256)}),
    )


def test_payload_that_is_not_an_object_is_malformed(nonces: NonceStore) -> None:
    for payload in (b"[1, 2]", b"not json", b'{"a": NaN}', b'"text"'):
        body = certbot_sign(payload, EC256, jose.ES256, nonces.new(), NEW_ACCOUNT)
        request = check_request(body, NEW_ACCOUNT, nonces, no_account, jwk_allowed=True)
        with pytest.raises(AcmeProblem) as caught:
            request.json()
        assert caught.value.type == "malformed"


def test_ec_key_with_rs256_alg_is_bad_signature_algorithm(nonces: NonceStore) -> None:
    header = {"alg": "RS256", "jwk": public(EC256), "nonce": nonces.new(), "url": NEW_ACCOUNT}
    body = {"protected": b64(json.dumps(header).encode()), "payload": "", "signature": "AA"}
    problem = refused("badSignatureAlgorithm", json.dumps(body).encode(), NEW_ACCOUNT, nonces)
    assert "ES256" in problem.detail  # says what the key can sign with


def test_p384_key_with_es256_alg_is_bad_signature_algorithm(nonces: NonceStore) -> None:
    header = {"alg": "ES256", "jwk": public(EC384), "nonce": nonces.new(), "url": NEW_ACCOUNT}
    body = {"protected": b64(json.dumps(header).encode()), "payload": "", "signature": "AA"}
    refused("badSignatureAlgorithm", json.dumps(body).encode(), NEW_ACCOUNT, nonces)


def test_rsa_1024_account_key_is_bad_public_key(nonces: NonceStore) -> None:
    body = certbot_sign(b"{}", RSA1024, jose.RS256, nonces.new(), NEW_ACCOUNT)
    refused("badPublicKey", body, NEW_ACCOUNT, nonces)


def test_jwk_with_private_members_is_malformed(nonces: NonceStore) -> None:
    header = {
        "alg": "ES256",
        "jwk": EC256.to_partial_json(),
        "nonce": nonces.new(),
        "url": NEW_ACCOUNT,
    }
    key = jwcrypto_jwk.JWK(**EC256.to_partial_json())
    problem = refused("malformed", jwcrypto_sign(b"{}", key, header), NEW_ACCOUNT, nonces)
    assert "private" in problem.detail


# --- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [EC256, EC384, RSA2048], ids=["P-256", "P-384", "RSA"])
def test_thumbprint_agrees_with_josepy_and_jwcrypto(key: jose.JWK) -> None:
    jwk = public(key)
    assert thumbprint(jwk) == b64(key.thumbprint())
    assert thumbprint(jwk) == jwcrypto_jwk.JWK(**jwk).thumbprint()
    assert thumbprint({**jwk, "use": "sig", "kid": "x"}) == thumbprint(jwk)


def test_thumbprint_matches_rfc7638_example() -> None:
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
        "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YG"
        "jQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bF"
        "TWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_key_authorization_is_token_dot_thumbprint() -> None:
    jwk = public(EC256)
    assert key_authorization("tok", jwk) == "tok." + b64(EC256.thumbprint())


def test_check_public_key_accepts_what_trustchain_allows() -> None:
    for key in (EC256, EC384, RSA2048):
        check_public_key(public(key))
    check_public_key(json.loads(ED25519.export_public()))


@pytest.mark.parametrize(
    "jwk",
    [
        public(RSA1024),
        {**public(RSA2048), "e": b64(b"\x03")},
        {**public(RSA2048), "e": b64((65538).to_bytes(3, "big"))},
        {**public(EC256), "crv": "P-521"},
        {**public(EC256), "y": public(EC256)["x"]},  # not on the curve
        {"kty": "OKP", "crv": "Ed448", "x": b64(b"\x01" * 57)},
        {"kty": "oct-public", "x": "AA"},
    ],
    ids=["rsa-1024", "e=3", "even-e", "p-521", "off-curve", "ed448", "kty"],
)
def test_check_public_key_refuses_weak_or_other_keys(jwk: dict[str, Any]) -> None:
    with pytest.raises(AcmeProblem) as caught:
        check_public_key(jwk)
    assert caught.value.type == "badPublicKey"


# --- robustness: any damage to a body is a problem document, never a crash ------------------


class EveryNonceFresh(NonceStore):
    """Lets damaged copies of one request reach the checks after the nonce."""

    def use(self, nonce: str) -> bool:
        return True


def test_every_single_bit_flip_or_truncation_of_a_request_is_refused_cleanly() -> None:
    nonces = EveryNonceFresh(capacity=1)
    body = certbot_sign(b'{"a": [1]}', EC256, jose.ES256, b64(b"n" * 16), NEW_ORDER, ACCOUNT)
    account_key = accounts(**{"1": public(EC256)})
    damaged = [body[:i] for i in range(len(body))]
    damaged += [body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :] for i in range(len(body))]
    outcomes = set()
    for candidate in damaged:
        try:
            check_request(candidate, NEW_ORDER, nonces, account_key, jwk_allowed=False)
            outcomes.add("accepted")
        except AcmeProblem as problem:
            outcomes.add(problem.type)
    # a flip in JSON whitespace or in a base64url character's unused bits could pass;
    # the signature and canonical base64url make every other change a refusal
    assert outcomes <= {"accepted", "malformed", "badSignatureAlgorithm", "unauthorized",
                        "badNonce", "accountDoesNotExist"}  # fmt: skip
    assert "malformed" in outcomes
