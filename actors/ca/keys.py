"""Key types, CA signature algorithms, and a private key that signs elsewhere.

The CA's keys live in an HSM, so nothing here holds private key material:

* ``key_type_of`` names a public key the way config and policy do
  ("ec-p256", "rsa-3072", "ed25519", ...).
* ``SignatureAlgorithm`` is the closed set a CA key signs with, each with its
  DER AlgorithmIdentifier: ecdsa-with-SHA256/SHA384 with parameters absent
  (RFC 5758 §3.2) and sha256WithRSAEncryption with NULL parameters
  (RFC 4055 §5); the CA/Browser Forum BRs §7.1.3.2 allow exactly these bytes.
* ``remote_signing_key`` wraps a public key and a ``Signer`` callable into an
  ``EllipticCurvePrivateKey`` / ``RSAPrivateKey`` that cryptography's builders
  accept; its ``sign()`` forwards the bytes to the callable (the HSM actor).

A ``Signer`` gets the data to sign (not a digest) and a hash name ("sha256",
"sha384"), and returns a DER ECDSA-Sig-Value (RFC 5480 §2.2; use
``ecdsa_der_from_raw`` for PKCS#11's raw r||s) or a PKCS#1 v1.5 signature.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    rsa,
    utils,
)
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.utils import Buffer
from cryptography.x509.oid import SignatureAlgorithmOID

Signer = Callable[[bytes, str], bytes]
CAPublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_CURVE_NAMES = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}


def key_type_of(public_key: PublicKeyTypes) -> str:
    """The policy name of a key: "ec-p256", "rsa-2048", "ed25519", ..."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        name = public_key.curve.name
        return "ec-" + _CURVE_NAMES.get(name, name)
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa-{public_key.key_size}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "ed448"
    if isinstance(public_key, dsa.DSAPublicKey):
        return f"dsa-{public_key.key_size}"
    return type(public_key).__name__.lower()


class SignatureAlgorithm(enum.Enum):
    """What a CA key signs certificates and CRLs with."""

    ECDSA_SHA256 = "ecdsa-with-SHA256"
    ECDSA_SHA384 = "ecdsa-with-SHA384"
    RSA_PKCS1_SHA256 = "sha256WithRSAEncryption"

    @property
    def algorithm_identifier(self) -> bytes:
        """The DER AlgorithmIdentifier SEQUENCE."""
        return _ALGORITHM_IDENTIFIERS[self]

    @property
    def hash_name(self) -> str:
        return "sha384" if self is SignatureAlgorithm.ECDSA_SHA384 else "sha256"

    @property
    def hash(self) -> hashes.SHA256 | hashes.SHA384:
        return hashes.SHA384() if self is SignatureAlgorithm.ECDSA_SHA384 else hashes.SHA256()

    @property
    def oid(self) -> Any:
        return _OIDS[self]


_ALGORITHM_IDENTIFIERS = {
    SignatureAlgorithm.ECDSA_SHA256: bytes.fromhex("300a06082a8648ce3d040302"),
    SignatureAlgorithm.ECDSA_SHA384: bytes.fromhex("300a06082a8648ce3d040303"),
    SignatureAlgorithm.RSA_PKCS1_SHA256: bytes.fromhex("300d06092a864886f70d01010b0500"),
}
_OIDS = {
    SignatureAlgorithm.ECDSA_SHA256: SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    SignatureAlgorithm.ECDSA_SHA384: SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    SignatureAlgorithm.RSA_PKCS1_SHA256: SignatureAlgorithmOID.RSA_WITH_SHA256,
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
}


def signature_algorithm_for(public_key: PublicKeyTypes) -> SignatureAlgorithm:
    """The algorithm a CA key of this type signs with; ValueError if unsupported."""
    kind = key_type_of(public_key)
    if kind == "ec-p256":
        return SignatureAlgorithm.ECDSA_SHA256
    if kind == "ec-p384":
        return SignatureAlgorithm.ECDSA_SHA384
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= 2048:
        return SignatureAlgorithm.RSA_PKCS1_SHA256
    raise ValueError(f"a CA key must be ec-p256, ec-p384 or rsa >= 2048, not {kind}")


def verify_signature(
    public_key: CAPublicKey, algorithm: SignatureAlgorithm, signature: bytes, data: bytes
) -> bool:
    """True if ``signature`` over ``data`` verifies under ``public_key``."""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algorithm.hash))
        else:
            public_key.verify(signature, data, PKCS1v15(), algorithm.hash)
    except (InvalidSignature, ValueError):
        return False
    return True


def ecdsa_der_from_raw(raw: bytes) -> bytes:
    """PKCS#11 CKM_ECDSA's r||s (equal halves) as a DER ECDSA-Sig-Value."""
    if not raw or len(raw) % 2:
        raise ValueError("a raw ECDSA signature is r||s with equal halves")
    half = len(raw) // 2
    r = int.from_bytes(raw[:half], "big")
    s = int.from_bytes(raw[half:], "big")
    return utils.encode_dss_signature(r, s)


def _no_private_material(*_: object) -> NoReturn:
    raise TypeError("this key is held elsewhere (an HSM); it can only sign")


def _hash_name(algorithm: object) -> str:
    if isinstance(algorithm, hashes.SHA256 | hashes.SHA384):
        return algorithm.name
    raise TypeError(f"remote keys sign with SHA-256 or SHA-384, not {algorithm!r}")


class RemoteECKey(ec.EllipticCurvePrivateKey):
    """An EC private key whose ``sign`` calls a ``Signer`` (ECDSA only)."""

    def __init__(self, public_key: ec.EllipticCurvePublicKey, sign: Signer) -> None:
        self._public_key = public_key
        self._sign = sign

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("remote EC keys sign with ECDSA only")
        return self._sign(bytes(data), _hash_name(signature_algorithm.algorithm))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        _no_private_material()

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _no_private_material()

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _no_private_material()

    def __copy__(self) -> RemoteECKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> RemoteECKey:
        return self


class RemoteRSAKey(rsa.RSAPrivateKey):
    """An RSA private key whose ``sign`` calls a ``Signer`` (PKCS#1 v1.5 only)."""

    def __init__(self, public_key: rsa.RSAPublicKey, sign: Signer) -> None:
        self._public_key = public_key
        self._sign = sign

    def sign(
        self,
        data: bytes,
        padding: AsymmetricPadding,
        algorithm: utils.Prehashed | hashes.HashAlgorithm | utils.NoDigestInfo,
    ) -> bytes:
        if padding.name != "EMSA-PKCS1-v1_5":
            raise TypeError("remote RSA keys sign with PKCS#1 v1.5 only")
        return self._sign(bytes(data), _hash_name(algorithm))

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        _no_private_material()

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _no_private_material()

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _no_private_material()

    def __copy__(self) -> RemoteRSAKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> RemoteRSAKey:
        return self


def remote_signing_key(public_key: CAPublicKey, sign: Signer) -> RemoteECKey | RemoteRSAKey:
    """A private-key object for cryptography's builders that signs through ``sign``."""
    signature_algorithm_for(public_key)  # refuse key types a CA must not use
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return RemoteECKey(public_key, sign)
    return RemoteRSAKey(public_key, sign)


def local_signer(private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> Signer:
    """A ``Signer`` over an in-memory key: for tests and a software-key dev mode."""

    def sign(data: bytes, hash_name: str) -> bytes:
        algorithm = _HASHES[hash_name]()
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            return private_key.sign(data, ec.ECDSA(algorithm))
        return private_key.sign(data, PKCS1v15(), algorithm)

    return sign
