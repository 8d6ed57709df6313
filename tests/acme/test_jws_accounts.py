"""actors/acme/jws.py's account checks against what the ``acme`` library makes (as
certbot signs): External Account Binding (RFC 8555 §7.3.4) and key rollover (§7.3.5).
The keys, signers and the ``nonces`` fixture are ``test_jws.py``'s."""

from __future__ import annotations

import json
from typing import Any

import josepy as jose
import pytest
from acme import jws as acme_jws
from acme import messages
from jwcrypto import jwk as jwcrypto_jwk

from trustchain.actors.acme.jws import SignedRequest, check_eab, check_key_change, check_request
from trustchain.actors.acme.nonces import NonceStore
from trustchain.actors.acme.problems import AcmeProblem

from .test_jws import (
    ACCOUNT,
    BASE,
    EC256,
    EC256_OTHER,
    EC384,
    KEY_CHANGE,
    NEW_ACCOUNT,
    NEW_ORDER,
    accounts,
    b64,
    certbot_sign,
    jwcrypto_sign,
    nonces,
    public,
)

__all__ = ["nonces"]  # the fixture, used by name


# --- external account binding (§7.3.4) ---------------------------------------------------

EAB_KEYS = {
    "kid-1": b64(b"\x5a" * 64),  # long enough for HS512 (RFC 7518 §3.2)
    "kid-2": b64(b"\x17" * 64),
    "short": b64(b"\x42" * 32),  # HS256 only
}


def eab(kid: str, hmac_key: str, url: str = NEW_ACCOUNT, alg: str = "HS256") -> dict[str, Any]:
    """The binding as certbot's acme library makes it."""
    directory = messages.Directory({"newAccount": url})
    return messages.ExternalAccountBinding.from_data(
        EC256.public_key(), kid, hmac_key, directory, alg
    )


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_eab_made_by_certbot_is_accepted(alg: str) -> None:
    binding = eab("kid-1", EAB_KEYS["kid-1"], alg=alg)
    assert check_eab(binding, public(EC256), NEW_ACCOUNT, EAB_KEYS) == "kid-1"


def eab_refused(type_: str, binding: Any, jwk: dict[str, Any] | None = None) -> None:
    with pytest.raises(AcmeProblem) as caught:
        check_eab(binding, jwk or public(EC256), NEW_ACCOUNT, EAB_KEYS)
    assert caught.value.type == type_, caught.value.detail


def test_eab_with_a_key_too_short_for_its_hash_is_refused_saying_use_hs256() -> None:
    assert (
        check_eab(eab("short", EAB_KEYS["short"]), public(EC256), NEW_ACCOUNT, EAB_KEYS) == "short"
    )
    with pytest.raises(AcmeProblem, match="HS256") as caught:
        check_eab(
            eab("short", EAB_KEYS["short"], alg="HS512"), public(EC256), NEW_ACCOUNT, EAB_KEYS
        )
    assert caught.value.type == "malformed"


def test_eab_with_wrong_mac_is_unauthorized() -> None:
    eab_refused("unauthorized", eab("kid-1", EAB_KEYS["kid-2"]))


def test_eab_with_wrong_url_is_unauthorized() -> None:
    eab_refused("unauthorized", eab("kid-1", EAB_KEYS["kid-1"], url=NEW_ORDER))


def test_eab_with_unknown_kid_is_unauthorized() -> None:
    eab_refused("unauthorized", eab("kid-9", EAB_KEYS["kid-1"]))


def test_eab_binding_another_key_is_unauthorized() -> None:
    eab_refused("unauthorized", eab("kid-1", EAB_KEYS["kid-1"]), public(EC256_OTHER))


def test_eab_that_is_not_a_jws_or_has_a_nonce_is_malformed() -> None:
    eab_refused("malformed", "a string")
    key = jwcrypto_jwk.JWK(kty="oct", k=EAB_KEYS["kid-1"])
    header = {"alg": "HS256", "kid": "kid-1", "url": NEW_ACCOUNT, "nonce": b64(b"n" * 16)}
    eab_refused(
        "malformed", json.loads(jwcrypto_sign(json.dumps(public(EC256)).encode(), key, header))
    )


# --- key rollover (§7.3.5) ---------------------------------------------------------------


def key_change_request(
    nonces: NonceStore,
    old: jose.JWK,
    new: jose.JWK,
    old_key: dict[str, Any],
    signer: jose.JWK | None = None,
) -> SignedRequest:
    """The outer request signed by the old key around an inner JWS by the new key, made
    with the acme library's JWS (no nonce) the way lego and certbot sign."""
    inner_payload = json.dumps({"account": ACCOUNT, "oldKey": old_key}).encode()
    inner = acme_jws.JWS.sign(inner_payload, key=new, alg=jose.ES256, nonce=None, url=KEY_CHANGE)
    if signer is not None:  # the header names the new key, the signature is signer's
        forged = acme_jws.JWS.sign(
            inner_payload, key=signer, alg=jose.ES256, nonce=None, url=KEY_CHANGE
        )
        inner_json = inner.to_partial_json()
        inner_json["signature"] = forged.to_partial_json()["signature"]
        inner_bytes = json.dumps(inner_json).encode()
    else:
        inner_bytes = inner.json_dumps().encode()
    body = certbot_sign(inner_bytes, old, jose.ES256, nonces.new(), KEY_CHANGE, ACCOUNT)
    return check_request(
        body, KEY_CHANGE, nonces, accounts(**{"1": public(old)}), jwk_allowed=False
    )


def test_key_change_returns_the_new_key(nonces: NonceStore) -> None:
    outer = key_change_request(nonces, EC256, EC256_OTHER, public(EC256))
    assert check_key_change(outer, ACCOUNT, public(EC256)) == public(EC256_OTHER)


def test_key_change_with_wrong_old_key_is_unauthorized(nonces: NonceStore) -> None:
    outer = key_change_request(nonces, EC256, EC256_OTHER, public(EC384))
    with pytest.raises(AcmeProblem) as caught:
        check_key_change(outer, ACCOUNT, public(EC256))
    assert caught.value.type == "unauthorized"


def test_key_change_for_another_account_is_unauthorized(nonces: NonceStore) -> None:
    outer = key_change_request(nonces, EC256, EC256_OTHER, public(EC256))
    with pytest.raises(AcmeProblem) as caught:
        check_key_change(outer, f"{BASE}/acct/2", public(EC256))
    assert caught.value.type == "unauthorized"


def test_key_change_inner_signed_by_the_old_key_is_refused(nonces: NonceStore) -> None:
    # the inner names the new key but the old key signed it: the new key never agreed
    outer = key_change_request(nonces, EC256, EC256_OTHER, public(EC256), signer=EC256)
    with pytest.raises(AcmeProblem, match="signature invalid") as caught:
        check_key_change(outer, ACCOUNT, public(EC256))
    assert caught.value.type == "malformed"
    # the inner is the old key throughout: no new key at all
    outer = key_change_request(nonces, EC256, EC256, public(EC256))
    with pytest.raises(AcmeProblem) as caught:
        check_key_change(outer, ACCOUNT, public(EC256))
    assert caught.value.type == "malformed"


def test_key_change_inner_with_nonce_or_other_url_is_malformed(nonces: NonceStore) -> None:
    payload = json.dumps({"account": ACCOUNT, "oldKey": public(EC256)}).encode()
    for nonce, url in ((nonces.new(), KEY_CHANGE), (None, NEW_ORDER)):
        inner = certbot_sign(payload, EC256_OTHER, jose.ES256, nonce, url)
        body = certbot_sign(inner, EC256, jose.ES256, nonces.new(), KEY_CHANGE, ACCOUNT)
        outer = check_request(
            body, KEY_CHANGE, nonces, accounts(**{"1": public(EC256)}), jwk_allowed=False
        )
        with pytest.raises(AcmeProblem) as caught:
            check_key_change(outer, ACCOUNT, public(EC256))
        assert caught.value.type == "malformed"


@pytest.mark.parametrize(
    "value",
    [None, 5, [], {"protected": 5, "payload": "", "signature": ""},
     {"protected": b64(b'{"alg": "HS256", "kid": 7, "url": "u"}'), "payload": "", "signature": ""}],
)  # fmt: skip
def test_eab_of_any_shape_is_refused_cleanly(value: Any) -> None:
    with pytest.raises(AcmeProblem):
        check_eab(value, public(EC256), NEW_ACCOUNT, EAB_KEYS)
