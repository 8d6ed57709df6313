"""ACME's request authentication: JWS over JSON (RFC 8555 §6.2-6.5, §7.3.4, §7.3.5).

Theory of operation: every ACME POST is a flattened JWS (RFC 7515 §7.2.2).
``check_request`` takes the raw body and refuses it, with the RFC 8555 §6.7 problem a
client understands, at the first of these that fails, in this order:

1. the body is one JSON object with exactly ``protected``, ``payload``, ``signature``
   (no unprotected ``header``: §6.2), each canonical base64url;
2. the protected header is a JSON object;
3. ``alg`` is one of ``ALGORITHMS`` (never ``none`` nor a MAC: §6.2) -> badSignatureAlgorithm;
4. ``nonce`` is one this server issued and nobody used; it is consumed -> badNonce;
5. ``url`` is the URL the request was sent to (§6.4) -> unauthorized;
6. exactly one of ``jwk`` and ``kid``, the one the resource needs (§6.2) -> malformed;
7. the key: the embedded ``jwk`` (public members only, a key ``check_public_key``
   accepts) or the account's key that ``account_key(kid)`` returns;
8. the key suits ``alg`` (ES256 = P-256, ES384 = P-384, RS256 = RSA, EdDSA = Ed25519);
9. the signature verifies (jwcrypto's algorithms over the exact bytes sent).

Invariants: a ``SignedRequest`` exists only for a request that passed all of the above;
its ``payload`` is the signed bytes. JSON from clients is parsed as untrusted input: no
NaN or Infinity, no duplicate member names, bounded nesting. Nothing here keeps state
but the ``NonceStore`` it is handed, reads a clock, or does IO.

What it does not do: look accounts up (``account_key`` does, and raises
accountDoesNotExist / unauthorized itself), decide whether a key is already some
account's (the store's ``conflict``), or hand out nonces.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jwcrypto.jwa import JWA  # type: ignore[import-untyped]
from jwcrypto.jwk import JWK  # type: ignore[import-untyped]

from trustchain.actors.acme.nonces import NonceStore
from trustchain.actors.acme.problems import AcmeProblem

ALGORITHMS = ("ES256", "ES384", "RS256", "EdDSA")
EAB_ALGORITHMS = ("HS256", "HS384", "HS512")

MAX_JSON_DEPTH = 16  # ACME's deepest object (a newOrder, an EAB inside newAccount) is ~5

# What each algorithm needs of the key: (kty, crv), and ECDSA's raw r||s signature length.
_KEY_FOR_ALG: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "RS256": ("RSA", None),
    "EdDSA": ("OKP", "Ed25519"),
}
_SIGNATURE_LENGTH = {"ES256": 64, "ES384": 96, "EdDSA": 64}

# RFC 7638 §3.2: the required members, the only ones a thumbprint hashes.
_REQUIRED_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_EC_COORDINATE_BYTES = {"P-256": 32, "P-384": 48}
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
MIN_RSA_EXPONENT = 65537


# --- encodings ---------------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: Any, what: str) -> bytes:
    """Strict base64url (RFC 7515 §2): no padding, no other characters, canonical.

    A non-canonical encoding (stray bits in the last character) would let two strings
    name the same bytes, so it is refused like any other malformed one.
    """
    if not isinstance(text, str):
        raise AcmeProblem("malformed", f"{what} must be a base64url string")
    try:
        raw = text.encode("ascii")
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise AcmeProblem("malformed", f"{what} is not base64url (RFC 7515 §2)") from None
    if b64url_encode(data) != text:
        raise AcmeProblem(
            "malformed", f"{what} is not canonical base64url without padding (RFC 7515 §2)"
        )
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member names")
    return obj


def _depth(value: Any) -> int:
    """The nesting depth of parsed JSON, iteratively (no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def loads_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Untrusted JSON that must be one object: UTF-8, no NaN/Infinity, no duplicate
    names, at most ``MAX_JSON_DEPTH`` deep; anything else is ``malformed``."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise AcmeProblem("malformed", f"{what} is nested too deep") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise AcmeProblem("malformed", f"{what} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise AcmeProblem("malformed", f"{what} must be a JSON object")
    if _depth(value) > MAX_JSON_DEPTH:
        raise AcmeProblem("malformed", f"{what} is nested deeper than {MAX_JSON_DEPTH}")
    return value


# --- the signed request ------------------------------------------------------------------


@dataclass(frozen=True)
class SignedRequest:
    """A request whose JWS passed ``check_request``: what it says and who signed it."""

    protected: dict[str, Any]
    payload: bytes
    alg: str
    nonce: str
    url: str
    kid: str | None  # the account URL, for requests by an account
    jwk: dict[str, Any] | None  # the embedded key (newAccount, revokeCert by cert key)

    def post_as_get(self) -> bool:
        """A POST-as-GET (RFC 8555 §6.3): the payload is the empty string."""
        return self.payload == b""

    def json(self) -> dict[str, Any]:
        """The payload as a JSON object (``malformed`` if it is anything else)."""
        if self.post_as_get():
            raise AcmeProblem(
                "malformed", "this resource needs a JSON object payload, not POST-as-GET"
            )
        return loads_object(self.payload, "the JWS payload")


@dataclass(frozen=True)
class _FlattenedJws:
    protected_b64: str
    payload_b64: str
    header: dict[str, Any]
    payload: bytes
    signature: bytes

    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode("ascii")


def _parse_flattened(jws: Any, what: str) -> _FlattenedJws:
    """A flattened JWS JSON serialization (RFC 7515 §7.2.2) with a protected header only."""
    if not isinstance(jws, dict):
        raise AcmeProblem("malformed", f"{what} must be a JWS in flattened JSON serialization")
    if "header" in jws:
        raise AcmeProblem(
            "malformed", f"{what} has an unprotected header; ACME allows the protected one only"
        )
    if "signatures" in jws:
        raise AcmeProblem(
            "malformed", f"{what} must be flattened JSON with one signature, not general JSON"
        )
    if set(jws) != {"protected", "payload", "signature"}:
        raise AcmeProblem(
            "malformed",
            f"{what} must have exactly the members protected, payload and signature "
            f"(got {sorted(jws)})",
        )
    header = loads_object(
        b64url_decode(jws["protected"], f"{what}'s protected"), f"{what}'s protected header"
    )
    payload = b64url_decode(jws["payload"], f"{what}'s payload")
    signature = b64url_decode(jws["signature"], f"{what}'s signature")
    return _FlattenedJws(jws["protected"], jws["payload"], header, payload, signature)


def _check_alg(header: dict[str, Any], what: str) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"{what} is signed with {alg!r}; this server accepts {', '.join(ALGORITHMS)}",
            extra={"algorithms": list(ALGORITHMS)},
        )
    if "b64" in header or "crit" in header:
        raise AcmeProblem("malformed", f"{what} uses 'b64' or 'crit', which ACME does not allow")
    return alg


def _key_suits_alg(jwk: dict[str, Any], alg: str, what: str) -> None:
    kty, crv = _KEY_FOR_ALG[alg]
    if jwk.get("kty") != kty or (crv is not None and jwk.get("crv") != crv):
        suitable = [
            a
            for a, (t, c) in _KEY_FOR_ALG.items()
            if t == jwk.get("kty") and (c is None or c == jwk.get("crv"))
        ]
        raise AcmeProblem(
            "badSignatureAlgorithm",
            f"{what}: alg {alg} needs a {kty}{' ' + crv if crv else ''} key, not "
            f"{jwk.get('kty')}{' ' + str(jwk['crv']) if 'crv' in jwk else ''}"
            + (f" (this key signs with {', '.join(suitable)})" if suitable else ""),
            extra={"algorithms": list(ALGORITHMS)},
        )


def _verify(jws: _FlattenedJws, alg: str, jwk: dict[str, Any], what: str) -> None:
    """Verify with jwcrypto's algorithm over the exact bytes the client signed."""
    expected = _SIGNATURE_LENGTH.get(alg)
    if expected is not None and len(jws.signature) != expected:
        raise AcmeProblem("malformed", f"{what}: JWS signature invalid (wrong length for {alg})")
    try:
        JWA.signing_alg(alg).verify(_jwcrypto_key(jwk), jws.signing_input(), jws.signature)
    except Exception:
        # jwcrypto and cryptography raise several types for a bad signature or key
        raise AcmeProblem("malformed", f"{what}: JWS signature invalid") from None


def _jwcrypto_key(jwk: dict[str, Any]) -> Any:
    return JWK(**{k: jwk[k] for k in _REQUIRED_MEMBERS[jwk["kty"]]})


def check_request(
    body: bytes,
    url: str,
    nonces: NonceStore,
    account_key: Callable[[str], dict[str, Any]],
    *,
    jwk_allowed: bool,
) -> SignedRequest:
    """Authenticate one ACME POST (RFC 8555 §6.2-6.5); see the module's theory."""
    jws = _parse_flattened(loads_object(body, "the request body"), "the request")
    header = jws.header
    alg = _check_alg(header, "the request")

    nonce = header.get("nonce")
    if nonce is None:
        raise AcmeProblem("badNonce", "the JWS has no 'nonce'; take one from newNonce")
    b64url_decode(nonce, "the JWS's 'nonce'")  # §6.5.1: malformed if not base64url
    if not nonces.use(nonce):
        raise AcmeProblem(
            "badNonce", "the nonce is unknown, used or expired; retry with the Replay-Nonce given"
        )

    if header.get("url") != url:
        raise AcmeProblem(
            "unauthorized", f"the JWS's 'url' is {header.get('url')!r}, but it was sent to {url}"
        )

    has_jwk, has_kid = "jwk" in header, "kid" in header
    if has_jwk == has_kid:
        raise AcmeProblem("malformed", "the JWS must have exactly one of 'jwk' and 'kid'")
    if has_jwk and not jwk_allowed:
        raise AcmeProblem(
            "malformed", "this resource needs 'kid' (the account URL), not an embedded 'jwk'"
        )
    if has_kid and jwk_allowed:
        raise AcmeProblem("malformed", "this resource needs the key in 'jwk', not a 'kid'")

    kid: str | None = None
    jwk: dict[str, Any] | None = None
    if has_jwk:
        jwk = header["jwk"]
        _check_public_members(jwk, "the JWS's 'jwk'")
        key = jwk
    else:
        kid = header["kid"]
        if not isinstance(kid, str) or not kid:
            raise AcmeProblem("malformed", "the JWS's 'kid' must be the account URL")
        key = account_key(kid)
    _key_suits_alg(key, alg, "the request")
    if has_jwk:
        check_public_key(key)
    _verify(jws, alg, key, "the request")
    return SignedRequest(
        protected=header, payload=jws.payload, alg=alg, nonce=nonce, url=url, kid=kid, jwk=jwk
    )


# --- keys --------------------------------------------------------------------------------


def _check_public_members(jwk: Any, what: str) -> None:
    if not isinstance(jwk, dict):
        raise AcmeProblem("malformed", f"{what} must be a JSON object (a JWK)")
    private = sorted(_PRIVATE_MEMBERS & set(jwk))
    if private:
        raise AcmeProblem(
            "malformed", f"{what} holds private key members {private}; send the public key only"
        )
    kty = jwk.get("kty")
    if kty not in _REQUIRED_MEMBERS:
        raise AcmeProblem("badPublicKey", f"{what} has kty {kty!r}; use EC, RSA or OKP")
    missing = [m for m in _REQUIRED_MEMBERS[kty] if not isinstance(jwk.get(m), str)]
    if missing:
        raise AcmeProblem("malformed", f"{what} ({kty}) lacks the string members {missing}")


def public_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    """The key's required members only (RFC 7638 §3.2): what to store and compare."""
    _check_public_members(jwk, "the key")
    return {m: jwk[m] for m in _REQUIRED_MEMBERS[jwk["kty"]]}


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint: base64url(SHA-256(required members, sorted, no spaces))."""
    canonical = json.dumps(public_jwk(jwk), sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def key_authorization(token: str, jwk: dict[str, Any]) -> str:
    """A challenge's key authorization (RFC 8555 §8.1): token "." thumbprint."""
    return f"{token}.{thumbprint(jwk)}"


def check_public_key(jwk: dict[str, Any]) -> None:
    """``badPublicKey`` unless the key is one TrustChain accepts for an account:
    RSA of 2048-8192 bits with an odd exponent of at least 65537, EC P-256 or P-384 with
    a point on the curve, or Ed25519."""
    _check_public_members(jwk, "the key")
    kty = jwk["kty"]
    if kty == "RSA":
        n = int.from_bytes(b64url_decode(jwk["n"], "the RSA key's 'n'"), "big")
        e = int.from_bytes(b64url_decode(jwk["e"], "the RSA key's 'e'"), "big")
        if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
            raise AcmeProblem(
                "badPublicKey",
                f"the RSA key has {n.bit_length()} bits; use {MIN_RSA_BITS} to {MAX_RSA_BITS}",
            )
        if n % 2 == 0:
            raise AcmeProblem("badPublicKey", "the RSA key's modulus is even")
        if e % 2 == 0 or e < MIN_RSA_EXPONENT or e.bit_length() > 256:
            raise AcmeProblem(
                "badPublicKey", f"the RSA key's exponent {e} is not an odd number from 65537 on"
            )
    elif kty == "EC":
        size = _EC_COORDINATE_BYTES.get(jwk["crv"])
        if size is None:
            raise AcmeProblem("badPublicKey", f"EC curve {jwk['crv']!r}; use P-256 or P-384")
        for member in ("x", "y"):
            if len(b64url_decode(jwk[member], f"the EC key's '{member}'")) != size:
                raise AcmeProblem(
                    "badPublicKey", f"the EC key's '{member}' must be {size} bytes (RFC 7518)"
                )
    else:  # OKP
        if jwk["crv"] != "Ed25519":
            raise AcmeProblem("badPublicKey", f"OKP curve {jwk['crv']!r}; use Ed25519")
        if len(b64url_decode(jwk["x"], "the Ed25519 key's 'x'")) != 32:
            raise AcmeProblem("badPublicKey", "the Ed25519 key's 'x' must be 32 bytes")
    try:
        _jwcrypto_key(jwk).get_op_key("verify")  # cryptography checks the EC point
    except Exception:
        raise AcmeProblem("badPublicKey", "the key is not a valid public key") from None


def _same_key(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return hmac.compare_digest(thumbprint(a), thumbprint(b))


# --- external account binding (§7.3.4) ---------------------------------------------------


def check_eab(eab: Any, account_jwk: dict[str, Any], url: str, keys: dict[str, str]) -> str:
    """Check newAccount's ``externalAccountBinding`` (RFC 8555 §7.3.4); return its key id.

    A flattened JWS MACed (HS256/384/512) with the operator's key ``keys[kid]``, whose
    protected header is {alg, kid, url} (no nonce), url the newAccount URL, and whose
    payload is the account's JWK.
    """
    jws = _parse_flattened(eab, "the externalAccountBinding")
    header = jws.header
    alg = header.get("alg")
    if alg not in EAB_ALGORITHMS:
        raise AcmeProblem(
            "malformed",
            f"the externalAccountBinding's alg is {alg!r}; use one of {', '.join(EAB_ALGORITHMS)}",
        )
    if "nonce" in header:
        raise AcmeProblem("malformed", "the externalAccountBinding must not have a 'nonce'")
    if "jwk" in header or "b64" in header or "crit" in header:
        raise AcmeProblem("malformed", "the externalAccountBinding's header is {alg, kid, url}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AcmeProblem("malformed", "the externalAccountBinding needs a 'kid' (the key id)")
    if header.get("url") != url:
        raise AcmeProblem(
            "unauthorized", f"the externalAccountBinding's 'url' must be the newAccount URL {url}"
        )
    secret = keys.get(kid)
    if secret is None:
        raise AcmeProblem("unauthorized", f"no external account key {kid!r}")
    raw_key = b64url_decode(secret, "the EAB key")
    needed = int(alg[2:])  # RFC 7518 §3.2: a key at least as long as the hash
    if len(raw_key) * 8 < needed:
        raise AcmeProblem(
            "malformed",
            f"external account key {kid!r} has {len(raw_key) * 8} bits, too short for {alg} "
            f"(RFC 7518 §3.2); MAC the binding with HS256",
        )
    hmac_key = JWK(kty="oct", k=b64url_encode(raw_key))
    try:
        JWA.signing_alg(alg).verify(hmac_key, jws.signing_input(), jws.signature)
    except Exception:
        raise AcmeProblem(
            "unauthorized", "the externalAccountBinding's MAC is not valid for that key id"
        ) from None
    bound = loads_object(jws.payload, "the externalAccountBinding's payload")
    _check_public_members(bound, "the externalAccountBinding's payload")
    if not _same_key(bound, account_jwk):
        raise AcmeProblem(
            "unauthorized", "the externalAccountBinding binds a key other than the account's"
        )
    return kid


# --- key rollover (§7.3.5) ---------------------------------------------------------------


def check_key_change(
    outer: SignedRequest, account_url: str, old_jwk: dict[str, Any]
) -> dict[str, Any]:
    """Check a keyChange request (RFC 8555 §7.3.5); return the new key's public JWK.

    ``outer`` was signed by the account's current key (``check_request`` with ``kid``);
    its payload is a JWS signed by the new key, carrying it in ``jwk``, with the outer's
    ``url`` and no ``nonce``, over {"account": account_url, "oldKey": current key}.
    """
    inner = _parse_flattened(outer.json(), "the keyChange's inner JWS")
    header = inner.header
    alg = _check_alg(header, "the keyChange's inner JWS")
    if "kid" in header or "jwk" not in header:
        raise AcmeProblem(
            "malformed", "the keyChange's inner JWS must carry the new key in 'jwk', not a 'kid'"
        )
    if "nonce" in header:
        raise AcmeProblem("malformed", "the keyChange's inner JWS must not have a 'nonce'")
    if header.get("url") != outer.url:
        raise AcmeProblem(
            "malformed", "the keyChange's inner JWS must have the same 'url' as the outer one"
        )
    new_jwk = header["jwk"]
    _check_public_members(new_jwk, "the new key")
    _key_suits_alg(new_jwk, alg, "the keyChange's inner JWS")
    check_public_key(new_jwk)
    _verify(inner, alg, new_jwk, "the keyChange's inner JWS")

    payload = loads_object(inner.payload, "the keyChange's inner payload")
    if payload.get("account") != account_url:
        raise AcmeProblem(
            "unauthorized", f"the keyChange's 'account' must be this account, {account_url}"
        )
    old_key = payload.get("oldKey")
    if not isinstance(old_key, dict):
        raise AcmeProblem("malformed", "the keyChange's 'oldKey' must be the account's JWK")
    _check_public_members(old_key, "the keyChange's 'oldKey'")
    if not _same_key(old_key, old_jwk):
        raise AcmeProblem("unauthorized", "the keyChange's 'oldKey' is not the account's key")
    if _same_key(new_jwk, old_jwk):
        raise AcmeProblem("malformed", "the new key is the account's current key")
    return public_jwk(new_jwk)
