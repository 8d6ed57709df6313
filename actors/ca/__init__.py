"""The certificate authority's domain layer (sans-IO: no actors, no I/O but SQLite).

policy  -> ``parse_csr``, ``check_request``: a CSR becomes an ``ApprovedRequest``.
certs   -> ``root_tbs``, ``intermediate_tbs``, ``leaf_tbs`` build a ``ToBeSigned``;
           the HSM signs ``.der``; ``assemble`` makes the certificate.
crl     -> ``crl_tbs`` + ``assemble_crl``, or ``build_crl`` through a ``Signer``.
hierarchy -> ``Hierarchy``: root, intermediates and CRLs in two steps each
           (``new_crl`` -> sign -> ``add_crl``); ``create_missing`` drives start-up.
store   -> ``CAStore``: CA certificates, issued serials, revocations, CRL numbers.
keys    -> key types, ``SignatureAlgorithm``, ``remote_signing_key``.
subscriber -> ``new_key``, ``new_csr``: a key of a named type and a CSR for names.
"""

from .certs import (
    BACKDATE,
    SCT_LIST_OID,
    LeafProfile,
    ToBeSigned,
    assemble,
    ca_name,
    ca_public_key,
    intermediate_tbs,
    leaf_tbs,
    new_serial,
    precert_tbs_for_log,
    root_tbs,
    with_poison,
    with_sct_list,
)
from .crl import (
    REASONS,
    RevokedEntry,
    assemble_crl,
    build_crl,
    crl_tbs,
    parse_reason,
)
from .errors import (
    AlreadyRevoked,
    BadCSRSignature,
    CaStoreUnavailable,
    CSRTooLarge,
    DuplicateName,
    DuplicateSerial,
    InvalidName,
    IssuerNotValid,
    KeyNotAllowed,
    MalformedCSR,
    NameNotPermitted,
    NoNames,
    PolicyViolation,
    SignatureInvalid,
    TooManyNames,
    UnknownRevocationReason,
    UnknownSerial,
    ValidityOutOfBounds,
)
from .hierarchy import Hierarchy, NewCACertificate, NewCRL, create_missing, pem
from .keys import (
    SignatureAlgorithm,
    Signer,
    ecdsa_der_from_raw,
    key_type_of,
    local_signer,
    remote_signing_key,
    signature_algorithm_for,
)
from .policy import CSR, ApprovedRequest, IssuancePolicy, check_request, parse_csr
from .store import CACertificateRecord, CAStore, IssuanceRecord, parse_serial, serial_hex
from .subscriber import SubscriberKey, new_csr, new_key

__all__ = [
    "BACKDATE",
    "CSR",
    "REASONS",
    "SCT_LIST_OID",
    "AlreadyRevoked",
    "ApprovedRequest",
    "BadCSRSignature",
    "CACertificateRecord",
    "CAStore",
    "CSRTooLarge",
    "CaStoreUnavailable",
    "DuplicateName",
    "DuplicateSerial",
    "Hierarchy",
    "InvalidName",
    "IssuancePolicy",
    "IssuanceRecord",
    "IssuerNotValid",
    "KeyNotAllowed",
    "LeafProfile",
    "MalformedCSR",
    "NameNotPermitted",
    "NewCACertificate",
    "NewCRL",
    "NoNames",
    "PolicyViolation",
    "RevokedEntry",
    "SignatureAlgorithm",
    "SignatureInvalid",
    "Signer",
    "SubscriberKey",
    "ToBeSigned",
    "TooManyNames",
    "UnknownRevocationReason",
    "UnknownSerial",
    "ValidityOutOfBounds",
    "assemble",
    "assemble_crl",
    "build_crl",
    "ca_name",
    "ca_public_key",
    "check_request",
    "create_missing",
    "crl_tbs",
    "ecdsa_der_from_raw",
    "intermediate_tbs",
    "key_type_of",
    "leaf_tbs",
    "local_signer",
    "new_csr",
    "new_key",
    "new_serial",
    "parse_csr",
    "parse_reason",
    "parse_serial",
    "pem",
    "precert_tbs_for_log",
    "remote_signing_key",
    "root_tbs",
    "serial_hex",
    "signature_algorithm_for",
    "with_poison",
    "with_sct_list",
]
