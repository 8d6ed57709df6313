"""A PKCS#11 token holding TrustChain's keys, through python-pkcs11.

What it does: open a module (SoftHSMv2 by default, any PKCS#11 module in
production), find the token by label, log in, create key pairs that never
leave it (CKA_EXTRACTABLE false, CKA_SENSITIVE true), give out public keys
as SubjectPublicKeyInfo, and sign.

Signing: SoftHSM 2.6 offers raw CKM_ECDSA only, so ECDSA hashes in Python
and DER-encodes the token's r||s (X9.62 / RFC 3279 ``Ecdsa-Sig-Value``, with
cryptography's encoder: python-pkcs11's asn1crypto one cost 18 us a call); RSA
uses CKM_SHA{256,384}_RSA_PKCS (PKCS#1 v1.5, RFC 8017 §8.2).

Not thread-safe, on purpose: python-pkcs11 initialises the module without
CKF_OS_LOCKING_OK and SoftHSM then crashes under concurrent calls (see
DESIGN.md). One ``Token`` is used by one thread: the HSMActor's, through a
``RemoteToken`` (``actors/hsm/remote.py``) that runs it in a process of its own.

Failures a user can cause (missing module or token, wrong PIN, unknown key
label) are typed ``HsmError``s (``errors``). A session or device that goes away raises
python-pkcs11's own errors; the HSMActor tells that apart from a bug by
reopening the token (see ``actors/hsm/actor.py``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import (
    encode_ec_public_key,
    encode_named_curve_parameters,
)

from trustchain.actors.ca.errors import SignatureInvalid
from trustchain.actors.hsm.errors import (
    HsmLoginFailed,
    HsmModuleNotFound,
    HsmPinMissing,
    HsmTokenNotFound,
    InvalidPublicKey,
    KeyExists,
    UnknownKey,
    UnsupportedHash,
    UnsupportedKeyType,
)
from trustchain.config import CA_KEY_TYPES

# The token's parameters for each of config's CA_KEY_TYPES (tests/ca/test_key_types.py
# checks the two agree): family, then curve name or modulus bits.
KEY_PARAMETERS: dict[str, tuple[str, Any]] = {
    "ec-p256": ("ec", "secp256r1"),
    "ec-p384": ("ec", "secp384r1"),
    "rsa-2048": ("rsa", 2048),
    "rsa-3072": ("rsa", 3072),
    "rsa-4096": ("rsa", 4096),
}
HASHES = {"sha256": Mechanism.SHA256_RSA_PKCS, "sha384": Mechanism.SHA384_RSA_PKCS}
SOFTHSM_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",  # Debian, Ubuntu
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",  # Fedora
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",  # macOS, Apple silicon
    "/usr/local/lib/softhsm/libsofthsm2.so",  # macOS, Intel
)


def _verifies(public_key: Any, signature: bytes, data: bytes, hash_name: str) -> bool:
    algorithm = hashes.SHA384() if hash_name == "sha384" else hashes.SHA256()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class KeyInfo:
    label: str
    key_type: str
    public_key_der: bytes  # SubjectPublicKeyInfo

    @property
    def public_key_pem(self) -> str:
        key = serialization.load_der_public_key(self.public_key_der)
        pem = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode("ascii")

    def to_json(self) -> dict[str, str]:
        return {"label": self.label, "key_type": self.key_type, "public_key": self.public_key_pem}


def find_module(module: str) -> str:
    """Resolve ``"softhsm2"`` to where SoftHSMv2 is installed; check a path exists."""
    candidates = SOFTHSM_PATHS if module == "softhsm2" else (module,)
    for path in candidates:
        if os.path.exists(path):
            return path
    looked = ", ".join(candidates)
    raise HsmModuleNotFound(
        f"PKCS#11 module not found (looked at {looked}); install SoftHSMv2 "
        "(`make run` does, or `apt-get install softhsm2` / `brew install softhsm`) "
        "or set hsm.module to your module's path"
    )


def read_pin(pin_env: str, pin_file: Path) -> str:
    """The user PIN: from the environment variable if set, else from the PIN file."""
    pin = os.environ.get(pin_env)
    if pin:
        return pin
    try:
        return pin_file.read_text().strip()
    except FileNotFoundError:
        raise HsmPinMissing(
            f"no HSM PIN: set ${pin_env} or write it to {pin_file} (mode 0600; `make run` does)"
        ) from None


class Token:
    """One logged-in read-write session on one token."""

    def __init__(self, lib: Any, session: Any, module: str, label: str) -> None:
        self._lib = lib
        self._session = session
        self.module = module
        self.label = label
        self._private: dict[str, Any] = {}  # label -> private key handle (lookups cost a search)

    @property
    def session(self) -> Any:
        """The open session; a closed token raises SessionClosed, as a pulled one would."""
        if self._session is None:
            raise pkcs11.exceptions.SessionClosed(f"the session on token {self.label!r} is closed")
        return self._session

    @classmethod
    def open(
        cls, module: str, token_label: str, pin: str, softhsm2_conf: str | None = None
    ) -> Token:
        path = find_module(module)
        if softhsm2_conf:
            os.environ["SOFTHSM2_CONF"] = str(Path(softhsm2_conf).resolve())
        try:
            lib = pkcs11.lib(path)
        except pkcs11.PKCS11Error as exc:
            why = f"{type(exc).__name__} {exc}".strip()
            hint = (
                f" (is SoftHSM's token directory there? see {softhsm2_conf})"
                if softhsm2_conf
                else ""
            )
            raise HsmModuleNotFound(
                f"cannot initialise PKCS#11 module {path}: {why}{hint}"
            ) from None
        try:
            token = lib.get_token(token_label=token_label)
        except pkcs11.NoSuchToken:
            labels = sorted({s.get_token().label for s in lib.get_slots(token_present=True)})
            raise HsmTokenNotFound(
                f"no token labelled {token_label!r} in {path} (tokens there: "
                f"{', '.join(map(repr, labels)) or 'none'}); `make run` creates one for SoftHSM"
            ) from None
        try:
            session = token.open(user_pin=pin, rw=True)
        except (pkcs11.PinIncorrect, pkcs11.PinLenRange, pkcs11.PinInvalid):
            raise HsmLoginFailed(f"the PIN for token {token_label!r} was refused") from None
        except pkcs11.PinLocked:
            raise HsmLoginFailed(f"the PIN of token {token_label!r} is locked") from None
        return cls(lib, session, path, token_label)

    def close(self) -> None:
        """Close the session and finalise the module so the next open starts clean.

        Never raises: a token that went away cannot close its session either."""
        try:
            if self._session is not None:
                self._session.close()
        except pkcs11.PKCS11Error:
            pass
        finally:
            self._session = None
            self._private.clear()
            try:
                self._lib.finalize()
            except pkcs11.PKCS11Error:
                pass

    # Keys ---------------------------------------------------------------------------

    def generate_key(self, label: str, key_type: str) -> KeyInfo:
        if key_type not in CA_KEY_TYPES:
            raise UnsupportedKeyType(
                f"key type {key_type!r} is not supported; use one of {', '.join(CA_KEY_TYPES)}"
            )
        if self._find(label, ObjectClass.PRIVATE_KEY) is not None:
            raise KeyExists(f"a key labelled {label!r} already exists in the token")
        family, param = KEY_PARAMETERS[key_type]
        key_id = hashlib.sha256(label.encode()).digest()[:16]
        private = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: True}
        if family == "ec":
            params = self.session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(param)}, local=True
            )
            params.generate_keypair(store=True, label=label, id=key_id, private_template=private)
        else:
            self.session.generate_keypair(
                KeyType.RSA, param, store=True, label=label, id=key_id, private_template=private
            )
        return self.key_info(label)

    def ensure_key(self, label: str, key_type: str) -> KeyInfo:
        """The key labelled ``label``, generated first if the token lacks it."""
        if self._find(label, ObjectClass.PRIVATE_KEY) is None:
            return self.generate_key(label, key_type)
        return self.key_info(label)

    def key_info(self, label: str) -> KeyInfo:
        public = self._get(label, ObjectClass.PUBLIC_KEY)
        if public.key_type == KeyType.EC:
            spki = encode_ec_public_key(public)
            key = serialization.load_der_public_key(spki)
            key_type = {256: "ec-p256", 384: "ec-p384"}.get(key.key_size, "ec")  # type: ignore[union-attr]
        else:
            n = int.from_bytes(public[Attribute.MODULUS], "big")
            e = int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big")
            rsa_key = rsa.RSAPublicNumbers(e, n).public_key()
            spki = rsa_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            key_type = f"rsa-{rsa_key.key_size}"
        return KeyInfo(label, key_type, spki)

    def private_key_attributes(self, label: str) -> dict[str, bool]:
        private = self._get(label, ObjectClass.PRIVATE_KEY)
        return {
            "extractable": bool(private[Attribute.EXTRACTABLE]),
            "sensitive": bool(private[Attribute.SENSITIVE]),
            "never_extractable": bool(private[Attribute.NEVER_EXTRACTABLE]),
        }

    def list_keys(self) -> list[KeyInfo]:
        labels = {
            k.label for k in self.session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
        }
        return [self.key_info(label) for label in sorted(labels)]

    # Signing ------------------------------------------------------------------------

    def sign(self, label: str, data: bytes, hash_name: str = "sha256") -> bytes:
        """Sign ``data``: DER ECDSA-Sig-Value for EC keys, PKCS#1 v1.5 for RSA."""
        if hash_name not in HASHES:
            raise UnsupportedHash(f"hash {hash_name!r} is not supported; use sha256 or sha384")
        private = self._private.get(label)
        if private is None:
            private = self._private[label] = self._get(label, ObjectClass.PRIVATE_KEY)
        if private.key_type == KeyType.EC:
            digest = hashlib.new(hash_name, data).digest()
            raw = private.sign(digest, mechanism=Mechanism.ECDSA)  # r || s, each half the length
            half = len(raw) // 2
            r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
            return encode_dss_signature(r, s)
        return bytes(private.sign(data, mechanism=HASHES[hash_name]))

    def sign_many(
        self, label: str, items: list[bytes], hash_name: str = "sha256", verify_with: bytes = b""
    ) -> list[bytes]:
        """``sign`` each item with one key (one request to a ``RemoteToken``); with
        ``verify_with`` (SPKI, DER), check every signature with that key first
        (``SignatureInvalid``: a fault, or ``label`` is not the key the caller meant)."""
        public_key = None
        if verify_with:
            try:
                public_key = serialization.load_der_public_key(verify_with)
            except (ValueError, UnsupportedAlgorithm):
                raise InvalidPublicKey(
                    "verify_with is not a DER SubjectPublicKeyInfo of a supported key"
                ) from None
        signatures = [self.sign(label, item, hash_name) for item in items]
        if public_key is not None:
            for item, signature in zip(items, signatures, strict=True):
                if not _verifies(public_key, signature, item, hash_name):
                    raise SignatureInvalid(
                        f"a signature by key {label!r} does not verify with the expected "
                        "public key; nothing of the batch was returned"
                    )
        return signatures

    # Lookup -------------------------------------------------------------------------

    def _find(self, label: str, object_class: ObjectClass) -> Any:
        try:
            return self.session.get_key(object_class=object_class, label=label)
        except pkcs11.NoSuchKey:
            return None

    def _get(self, label: str, object_class: ObjectClass) -> Any:
        key = self._find(label, object_class)
        if key is None:
            raise UnknownKey(f"no key labelled {label!r} in token {self.label!r}")
        return key
