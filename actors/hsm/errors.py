"""Typed errors of the HSM: what a caller of the token or the HSMActor can be told.

Every class is an ``HsmError`` (a ``TrustChainError``, carried back as a typed
reply with a stable snake_case ``code``). This module imports nothing but the
error base, so that a peer can catch ``HsmError`` without loading python-pkcs11
(``token``) or the actor runtime.
"""

from __future__ import annotations

from trustchain.supervisors.errors import TrustChainError


class HsmError(TrustChainError):
    """Base of every HSM error (also: the token refused a request)."""

    code = "hsm_error"


class HsmUnavailable(HsmError):
    """The token or its module stopped answering (removed, device error); retried with
    backoff, and requests are refused until it is back."""

    code = "hsm_unavailable"


class HsmModuleNotFound(HsmError):
    """The PKCS#11 module (or softhsm2-util) is not installed where it was looked for."""

    code = "hsm_module_not_found"


class HsmTokenNotFound(HsmError):
    """The module holds no token with the configured label."""

    code = "hsm_token_not_found"


class HsmPinMissing(HsmError):
    """No PIN in the configured environment variable or PIN file."""

    code = "hsm_pin_missing"


class HsmLoginFailed(HsmError):
    """The token refused the PIN, or the PIN is locked."""

    code = "hsm_login_failed"


class UnknownKey(HsmError):
    """No key with that label in the token."""

    code = "unknown_key"


class KeyExists(HsmError):
    """A key with that label is already in the token."""

    code = "key_exists"


class UnsupportedKeyType(HsmError):
    """A key type outside ``config.CA_KEY_TYPES``."""

    code = "unsupported_key_type"


class UnsupportedHash(HsmError):
    """A hash other than sha256 or sha384."""

    code = "unsupported_hash"


class InvalidPublicKey(HsmError):
    """A public key to verify with is not a DER SubjectPublicKeyInfo of a supported key."""

    code = "invalid_public_key"
