"""Chain validation for add-chain and add-pre-chain (RFC 6962 §4.1, §4.2), sans-IO.

A submitted chain is the (pre)certificate, then its issuers. It is accepted
when each certificate is signed by the next and the chain reaches a root this
log accepts, either by containing it or by ending with a certificate that root
signed; what is returned is the chain up to and including that root (whatever
a submitter appended after it is ignored). A precertificate carries the
critical CT poison (§3.1): only add-pre-chain takes one, and it needs its
issuer after it.

Invariants: at most ``MAX_CHAIN`` certificates are parsed; the submitted leaf's
own signature is always verified; only CA-to-CA links that verified are
remembered (by the SHA-256 of both DERs, at most ``MAX_LINKS``), because the
issuer submits the same intermediate with every certificate and one ECDSA
verify costs ~55 µs.

Not done here: validity periods, name constraints, key usages or path building
beyond the order given (RFC 6962 logs do not require them); nothing is read or
written (``roots`` keeps the file of accepted roots).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from .entries import LogEntryInput
from .errors import InvalidChain
from .rfc6962 import POISON_OID, issuer_key_hash

POISON = x509.ObjectIdentifier(POISON_OID)
MAX_CHAIN = 10  # certificates in one submission
MAX_LINKS = 4096  # verified CA-to-CA links remembered


def load_certificate(der: bytes, what: str) -> x509.Certificate:
    """``der`` as a certificate; ``what`` names it in the error (``chain[2]``, ``root``)."""
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise InvalidChain(f"{what} is not a DER X.509 certificate: {exc}") from None


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Does ``issuer``'s key verify ``cert``'s signature (and do the names chain)?"""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


class ChainValidator:
    """The roots a log accepts, and the verdict on a submitted chain."""

    def __init__(self) -> None:
        self.roots: dict[bytes, x509.Certificate] = {}  # SHA-256 of DER -> root
        self._verified_links: set[tuple[bytes, bytes]] = set()  # (child, issuer) DER digests

    def add_root(self, der: bytes) -> x509.Certificate:
        """Accept the root ``der`` (again: no change); raises InvalidChain if it is not DER."""
        cert = load_certificate(der, "root")
        self.roots[hashlib.sha256(der).digest()] = cert
        return cert

    def entry(self, chain_der: Sequence[bytes], precert: bool) -> LogEntryInput:
        """The log entry for a submission that ``check`` accepts."""
        chain = self.check(chain_der, precert)
        issuers = tuple(chain_der[1 : len(chain)])
        if not precert:
            return LogEntryInput.x509(chain_der[0], issuers)
        spki = (
            chain[1]
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return LogEntryInput.precert(chain_der[0], issuer_key_hash(spki), issuers)

    def check(self, chain_der: Sequence[bytes], precert: bool) -> list[x509.Certificate]:
        """Each certificate signed by the next, ending at (or under) an accepted root.

        Returns the chain up to and including the accepted root."""
        if not chain_der:
            raise InvalidChain("the chain is empty")
        if len(chain_der) > MAX_CHAIN:
            raise InvalidChain(f"the chain has more than {MAX_CHAIN} certificates")
        chain = [load_certificate(der, f"chain[{i}]") for i, der in enumerate(chain_der)]
        try:
            poisoned = chain[0].extensions.get_extension_for_oid(POISON).critical
        except x509.ExtensionNotFound:
            poisoned = False
        except (x509.DuplicateExtension, ValueError) as exc:
            raise InvalidChain(f"chain[0]'s extensions cannot be read: {exc}") from None
        if precert and not poisoned:
            raise InvalidChain("add-pre-chain needs a precertificate (critical CT poison)")
        if not precert and poisoned:
            raise InvalidChain("add-chain was given a precertificate; use add-pre-chain")
        accepted = self._to_root(chain, [hashlib.sha256(der).digest() for der in chain_der])
        if precert and len(accepted) < 2:
            raise InvalidChain("a precertificate chain needs the issuing CA after the precert")
        return accepted

    def _to_root(
        self, chain: list[x509.Certificate], digests: list[bytes]
    ) -> list[x509.Certificate]:
        for i, cert in enumerate(chain):
            if digests[i] in self.roots:
                return chain[: i + 1]
            if i + 1 < len(chain):
                if not self._link(i, cert, digests[i], chain[i + 1], digests[i + 1]):
                    raise InvalidChain(f"chain[{i}] is not signed by chain[{i + 1}]")
                continue
            for digest, root in self.roots.items():
                if self._link(i, cert, digests[i], root, digest):
                    return chain
        raise InvalidChain("the chain does not lead to a root this log accepts (see get-roots)")

    def _link(
        self,
        i: int,
        cert: x509.Certificate,
        digest: bytes,
        issuer: x509.Certificate,
        issuer_digest: bytes,
    ) -> bool:
        """Is ``cert`` (``chain[i]``) signed by ``issuer``? Only CA-to-CA links (i > 0)
        are remembered: the submitted leaf's signature is verified every time."""
        if i > 0 and (digest, issuer_digest) in self._verified_links:
            return True
        if not issued_by(cert, issuer):
            return False
        if i > 0 and len(self._verified_links) < MAX_LINKS:
            self._verified_links.add((digest, issuer_digest))
        return True
