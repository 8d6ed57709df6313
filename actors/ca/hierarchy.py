"""The CA hierarchy and its CRLs: what exists, what is current, what to publish.

One offline-style root and one or more intermediates, their keys in the HSM,
their certificates in the store. ``Hierarchy`` creates what is missing at
first start (root, then intermediate), rotates the intermediate on request
(and at start when the current one is of a form some verifiers refuse),
chooses the intermediate that issues (the newest valid one: it must outlive
the leaf), and makes a CRL per live CA.

Sans-IO, like ``certs`` for leaves: it never signs and writes no file. Each
signed object takes two calls: the first returns what must be signed (a
``NewCACertificate`` or ``NewCRL``, holding a ``ToBeSigned`` and the label of
the key that signs it), the second takes the signature back, checks it
against the issuer's key and records the result (``add_ca_certificate``,
``add_crl``). The actor sends the TBS to the HSM without waiting and writes
the CRL files and ``root.pem``; the only I/O here is the ``CAStore`` it is
handed. Creation at first start takes steps too: ``key_to_create`` names the
key the next missing CA needs, ``new_missing`` returns its TBS.
``create_missing`` drives them synchronously through two callables, for tests
and tools that may wait.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.config import CaConfig

from .certs import (
    ToBeSigned,
    assemble,
    ca_name,
    ca_public_key,
    intermediate_tbs,
    new_serial,
    root_tbs,
)
from .crl import assemble_crl, crl_tbs
from .errors import IssuerNotValid
from .keys import CAPublicKey
from .store import CACertificateRecord, CAStore, Role

MAX_CREATION_STEPS = 2  # a root, then an intermediate
PublicKeyOf = Callable[[str], CAPublicKey]
SignWith = Callable[[str, bytes, str], bytes]


def has_directory_name_constraint(cert: x509.Certificate) -> bool:
    """Whether ``cert`` constrains directoryNames, as intermediates made before
    2026-11 did. Go's crypto/x509 refuses every chain through such a CA ("unhandled
    critical extension"), so ``ensure`` replaces one with a new intermediate at start:
    an upgrade needs no manual rotation, and leaves issued under the old one stay valid.
    """
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return False
    subtrees = [*(constraints.permitted_subtrees or ()), *(constraints.excluded_subtrees or ())]
    return any(isinstance(g, x509.DirectoryName) for g in subtrees)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass(frozen=True)
class NewCACertificate:
    """A root or intermediate certificate waiting for its signature."""

    role: Role
    key_label: str  # the new CA's own key
    tbs: ToBeSigned
    signer: str  # the key that signs it: its own (root) or the root's (intermediate)
    issuer_public_key: CAPublicKey


@dataclass(frozen=True)
class NewCRL:
    """A CRL waiting for its issuer's signature (its CRL number already taken)."""

    key_label: str  # the issuing CA, whose key signs it
    tbs: ToBeSigned
    crl_number: int
    issuer_public_key: CAPublicKey

    @property
    def signer(self) -> str:
        return self.key_label


class Hierarchy:
    def __init__(
        self,
        config: CaConfig,
        store: CAStore,
        permitted_ipv6_networks: Sequence[ipaddress.IPv6Network] = (),
    ) -> None:
        self.config, self.store = config, store
        self._ipv6 = permitted_ipv6_networks
        self.crls: dict[str, x509.CertificateRevocationList] = {}
        self.by_label: dict[str, CACertificateRecord] = {}
        self.chain_pem: dict[str, str] = {}

    def missing(self, now: datetime) -> Literal["root", "intermediate"] | None:
        """What must be created before the CA can issue at ``now``: a root, an
        intermediate (none valid, or only one of a form some verifiers refuse; see
        ``has_directory_name_constraint``), or nothing."""
        if not self.store.list_ca_certificates("root"):
            return "root"
        current = self.store.current_intermediate(now)
        if current is None or has_directory_name_constraint(current.certificate):
            return "intermediate"
        return None

    def load(self, now: datetime) -> None:
        """Read every CA certificate from the store and choose the current intermediate."""
        records = self.store.list_ca_certificates()
        self.by_label = {r.key_label: r for r in records}
        current = self.store.current_intermediate(now)
        assert current is not None, "an intermediate is created before load()"
        self.current = current
        self.chain_pem = {r.key_label: pem(r.certificate) for r in records}

    @property
    def root(self) -> CACertificateRecord:
        return self.store.list_ca_certificates("root")[-1]

    @property
    def root_pem_path(self) -> Path:
        """Where the actor puts the trust anchor for users (curl --cacert var/ca/root.pem)."""
        return self.config.database.parent / "root.pem"

    def next_intermediate_label(self) -> str:
        """The key label of a rotation's new intermediate (``<intermediate_key>-<n>``)."""
        count = len(self.store.list_ca_certificates("intermediate"))
        return f"{self.config.intermediate_key}-{count + 1}"

    def issuer_for(self, now: datetime, validity: timedelta) -> CACertificateRecord:
        """The intermediate that signs a leaf valid from ``now`` for ``validity``."""
        if self.current.not_after < now + validity:
            raise IssuerNotValid(
                f"the issuing CA {self.current.key_label!r} expires before this certificate "
                "would; rotate it: `trustchain ca rotate-intermediate`"
            )
        return self.current

    def roots_der(self) -> list[bytes]:
        return [r.certificate.public_bytes(serialization.Encoding.DER)
                for r in self.store.list_ca_certificates("root")]  # fmt: skip

    def status(self, now: datetime) -> list[dict[str, Any]]:
        return [
            {
                "role": r.role,
                "key_label": r.key_label,
                "subject": r.certificate.subject.rfc4514_string(),
                "not_before": r.certificate.not_valid_before_utc.isoformat(),
                "not_after": r.not_after.isoformat(),
                "current": r.role == "root" or r.key_label == self.current.key_label,
                "fingerprint": r.fingerprint,
                "certificate": pem(r.certificate),
            }
            for r in self.store.list_ca_certificates()
            if r.not_after >= now
        ]

    def crl_url(self, label: str) -> str:
        return f"{self.config.base_url}/crl/{label}.crl"

    def ca_issuers_url(self, label: str) -> str:
        return f"{self.config.base_url}/ca/{label}.cer"

    # CRLs -------------------------------------------------------------------------

    def live_labels(self, now: datetime) -> list[str]:
        """Every CA that has not expired: the root (which the intermediates' CRL
        distribution point names) and each intermediate; each needs a fresh CRL."""
        return [r.key_label for r in self.by_label.values() if r.not_after >= now]

    def new_crl(self, label: str, now: datetime) -> NewCRL:
        """The next CRL of CA ``label`` (from the store's revocations), to be signed
        with ``label``'s key and handed back to ``add_crl``."""
        issuer = self.by_label[label]
        number = self.store.next_crl_number(label)
        tbs = crl_tbs(
            issuer_cert=issuer.certificate,
            entries=self.store.revoked_entries(label, expired_before=now),
            crl_number=number,
            now=now,
            validity=timedelta(seconds=self.config.crl_validity_s),
        )
        return NewCRL(label, tbs, number, ca_public_key(issuer.certificate))

    def add_crl(self, new: NewCRL, signature: bytes) -> x509.CertificateRevocationList | None:
        """The signed CRL (checked against the issuer's key; ``SignatureInvalid`` if
        not); it becomes ``crls[label]`` unless a CRL with a higher number already is,
        in which case None is returned: nothing to publish."""
        crl = assemble_crl(new.tbs.der, new.tbs.algorithm, signature,
                           issuer_public_key=new.issuer_public_key)  # fmt: skip
        held = self.crls.get(new.key_label)
        if held is not None and _crl_number(held) >= new.crl_number:
            return None  # signatures came back out of order: never publish an older CRL
        self.crls[new.key_label] = crl
        return crl

    def crl_number(self, label: str) -> int:
        return _crl_number(self.crls[label])

    def crl_files(self, label: str) -> dict[Path, bytes]:
        """The files that publish CA ``label``'s current CRL (DER and PEM), for the actor."""
        crl, directory = self.crls[label], self.config.crl_dir
        return {
            directory / f"{label}.crl": crl.public_bytes(serialization.Encoding.DER),
            directory / f"{label}.pem": crl.public_bytes(serialization.Encoding.PEM),
        }

    # Creation ---------------------------------------------------------------------

    def new_root(self, now: datetime, public_key: CAPublicKey) -> NewCACertificate:
        """A self-signed root over ``public_key`` (the root key, made in the HSM)."""
        config, label = self.config, self.config.root_key
        subject = ca_name(config.root_common_name, config.organization, config.country)
        tbs = root_tbs(subject=subject, public_key=public_key, serial=new_serial(), now=now,
                       validity=timedelta(days=config.root_validity_days))  # fmt: skip
        return NewCACertificate("root", label, tbs, label, public_key)

    def new_intermediate(
        self, now: datetime, label: str, public_key: CAPublicKey
    ) -> NewCACertificate:
        """An intermediate for key ``label`` (``public_key``), to be signed by the root."""
        config = self.config
        root = self.root
        constrained = config.name_constraints
        tbs = intermediate_tbs(
            subject=ca_name(config.intermediate_common_name, config.organization, config.country),
            public_key=public_key,
            issuer_cert=root.certificate,
            serial=new_serial(),
            now=now,
            validity=timedelta(days=config.intermediate_validity_days),
            permitted_zones=config.permitted_zones if constrained else None,
            permitted_ipv6_networks=self._ipv6 if constrained and config.allow_ipv6_sans else (),
            crl_url=self.crl_url(root.key_label),
            ca_issuers_url=self.ca_issuers_url(root.key_label),
        )
        return NewCACertificate(
            "intermediate", label, tbs, root.key_label, ca_public_key(root.certificate)
        )

    def key_to_create(self, now: datetime) -> str | None:
        """The label of the key the next missing CA needs (root first, then the
        intermediate), or None when nothing is missing. Make (or find) that key, then
        ``new_missing``."""
        missing = self.missing(now)
        if missing == "root":
            return self.config.root_key
        if missing == "intermediate":
            if self.store.current_intermediate(now) is None:
                return self.config.intermediate_key  # first start (or every one expired)
            return self.next_intermediate_label()  # one verifiers refuse: kept, and replaced
        return None

    def new_missing(self, now: datetime, label: str, public_key: CAPublicKey) -> NewCACertificate:
        """The certificate ``key_to_create`` asked a key for, to be signed."""
        if self.missing(now) == "root":
            return self.new_root(now, public_key)
        return self.new_intermediate(now, label, public_key)

    def add_ca_certificate(self, new: NewCACertificate, signature: bytes) -> CACertificateRecord:
        """Record the signed CA certificate (checked against its issuer's key). An
        intermediate issues only after ``load()``."""
        cert = assemble(new.tbs.der, new.tbs.algorithm, signature,
                        issuer_public_key=new.issuer_public_key)  # fmt: skip
        record = self.store.add_ca_certificate(new.role, new.key_label, cert)
        self.by_label[record.key_label] = record  # so that its first CRL can be made
        return record


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def create_missing(
    hierarchy: Hierarchy, now: datetime, public_key: PublicKeyOf, sign: SignWith
) -> None:
    """Create what ``missing`` names, then ``load``: a synchronous driver of the
    steps (``key_to_create``, ``new_missing``, ``add_ca_certificate``), for tests and
    tools that may wait. ``public_key(label)`` makes the key when missing;
    ``sign(label, data, hash_name)``. An actor drives the same steps in continuations."""
    for _ in range(MAX_CREATION_STEPS):
        label = hierarchy.key_to_create(now)
        if label is None:
            break
        new = hierarchy.new_missing(now, label, public_key(label))
        hierarchy.add_ca_certificate(new, sign(new.signer, new.tbs.der, new.tbs.hash_name))
    hierarchy.load(now)
