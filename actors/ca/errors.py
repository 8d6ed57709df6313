"""The CA's typed errors: what a requester or operator can cause, and must fix.

Every class has a stable snake_case ``code`` that the edges put on the wire.
``PolicyViolation`` subclasses carry ``rule`` (the ``IssuancePolicy`` field or
the standard that refused the request) in ``details`` and at the start of the
message, so a refusal always says which rule said no.
"""

from __future__ import annotations

from typing import Any

from trustchain.supervisors.errors import TrustChainError


class PolicyViolation(TrustChainError):
    """The certificate request breaks the issuance policy; nothing was issued."""

    code = "policy_violation"

    def __init__(self, rule: str, message: str, **details: Any) -> None:
        super().__init__(f"{rule}: {message}", rule=rule, **details)
        self.rule = rule


class MalformedCSR(PolicyViolation):
    code = "malformed_csr"


class CSRTooLarge(PolicyViolation):
    code = "csr_too_large"


class BadCSRSignature(PolicyViolation):
    """The CSR's self-signature does not verify: no proof of possession."""

    code = "bad_csr_signature"


class KeyNotAllowed(PolicyViolation):
    code = "key_not_allowed"


class NameNotPermitted(PolicyViolation):
    """A well-formed name the policy does not allow (zone, wildcard, IP family)."""

    code = "name_not_permitted"


class InvalidName(PolicyViolation):
    """A name that is not a valid DNS host name (RFC 1123 §2.1, RFC 5890 A-labels)."""

    code = "invalid_name"


class DuplicateName(PolicyViolation):
    code = "duplicate_name"


class NoNames(PolicyViolation):
    code = "no_names"


class TooManyNames(PolicyViolation):
    code = "too_many_names"


class ValidityOutOfBounds(PolicyViolation):
    code = "validity_out_of_bounds"


class IssuerNotValid(TrustChainError):
    """The issuing CA certificate does not cover the validity asked for: roll it over."""

    code = "issuer_not_valid"


class SignatureInvalid(TrustChainError):
    """The signature returned by the signer does not verify (wrong key or a fault)."""

    code = "signature_invalid"


class UnknownRevocationReason(TrustChainError):
    code = "unknown_revocation_reason"


class UnknownSerial(TrustChainError):
    code = "unknown_serial"


class AlreadyRevoked(TrustChainError):
    code = "already_revoked"


class RequestIdReused(TrustChainError):
    """A request id names an issuance for another key: a new request needs a new id."""

    code = "request_id_reused"


class DuplicateSerial(TrustChainError):
    """A serial number was issued twice; draw a new serial and build again."""

    code = "duplicate_serial"


class CaStoreUnavailable(TrustChainError):
    """The CA's database or CRL directory cannot be written (a full disk, an I/O
    error); retried with backoff, shown in status and /ready."""

    code = "ca_store_unavailable"
