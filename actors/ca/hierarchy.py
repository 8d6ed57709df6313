"""The CA hierarchy and its CRLs: what exists, what is current, what to publish.

One offline-style root and one or more intermediates, their keys in the HSM,
their certificates in the store. ``Hierarchy`` creates what is missing at
first start (root, then intermediate), rotates the intermediate on request
(and at start when the current one is of a form some verifiers refuse),
chooses the intermediate that issues (the newest valid one: it must outlive
the leaf), and signs and writes a CRL per live intermediate. It reaches the
HSM only through the two callables it is given (``public_key(label)``, which
creates the key when missing, and ``sign(label, data, hash_name)``), so it
knows nothing of actors.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.actors.durable import replace_file
from trustchain.config import CaConfig

from .certs import assemble, ca_name, ca_public_key, intermediate_tbs, new_serial, root_tbs
from .crl import assemble_crl, crl_tbs
from .errors import IssuerNotValid
from .keys import CAPublicKey
from .store import CACertificateRecord, CAStore

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


class Hierarchy:
    def __init__(
        self,
        config: CaConfig,
        store: CAStore,
        public_key: PublicKeyOf,
        sign: SignWith,
        permitted_ipv6_networks: Sequence[ipaddress.IPv6Network] = (),
    ) -> None:
        self.config, self.store = config, store
        self._public_key, self._sign = public_key, sign
        self._ipv6 = permitted_ipv6_networks
        self.crls: dict[str, x509.CertificateRevocationList] = {}

    def ensure(self, now: datetime) -> None:
        """Create the root and a first intermediate if missing, then load everything."""
        if not self.store.list_ca_certificates("root"):
            self._create_root(now)
        current = self.store.current_intermediate(now)
        if current is None:
            self._create_intermediate(now, self.config.intermediate_key)
        elif has_directory_name_constraint(current.certificate):
            self._create_intermediate(now, self._next_intermediate_label())  # see below
        self._load(now)
        # The trust anchor where users look for it (curl --cacert var/ca/root.pem).
        root = self.store.list_ca_certificates("root")[-1].certificate
        replace_file(self.root_pem_path, pem(root).encode("ascii"))

    @property
    def root_pem_path(self) -> Path:
        return self.config.database.parent / "root.pem"

    def rotate(self, now: datetime) -> CACertificateRecord:
        record = self._create_intermediate(now, self._next_intermediate_label())
        self._load(now)
        self.publish_crl(record.key_label, now)
        return record

    def _next_intermediate_label(self) -> str:
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

    def refresh_crls(self, now: datetime) -> list[str]:
        """Re-sign the CRL of every CA that has not expired: the root's (which the
        intermediates' CRL distribution point names) and each intermediate's."""
        labels = [r.key_label for r in self.by_label.values() if r.not_after >= now]
        for label in labels:
            self.publish_crl(label, now)
        return labels

    def publish_crl(self, label: str, now: datetime) -> x509.CertificateRevocationList:
        """Sign a fresh CRL for one intermediate and write it (DER and PEM) atomically."""
        issuer = self.by_label[label]
        tbs = crl_tbs(
            issuer_cert=issuer.certificate,
            entries=self.store.revoked_entries(label, expired_before=now),
            crl_number=self.store.next_crl_number(label),
            now=now,
            validity=timedelta(seconds=self.config.crl_validity_s),
        )
        signature = self._sign(label, tbs.der, tbs.hash_name)
        crl = assemble_crl(
            tbs.der, tbs.algorithm, signature, issuer_public_key=ca_public_key(issuer.certificate)
        )
        self.crls[label] = crl
        directory = self.config.crl_dir
        replace_file(directory / f"{label}.crl", crl.public_bytes(serialization.Encoding.DER))
        replace_file(directory / f"{label}.pem", crl.public_bytes(serialization.Encoding.PEM))
        return crl

    def crl_number(self, label: str) -> int:
        crl = self.crls[label]
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    # Creation ---------------------------------------------------------------------

    def _create_root(self, now: datetime) -> None:
        config, label = self.config, self.config.root_key
        subject = ca_name(config.root_common_name, config.organization, config.country)
        public_key = self._public_key(label)
        tbs = root_tbs(subject=subject, public_key=public_key, serial=new_serial(), now=now,
                       validity=timedelta(days=config.root_validity_days))  # fmt: skip
        signature = self._sign(label, tbs.der, tbs.hash_name)
        cert = assemble(tbs.der, tbs.algorithm, signature, issuer_public_key=public_key)
        self.store.add_ca_certificate("root", label, cert)

    def _create_intermediate(self, now: datetime, label: str) -> CACertificateRecord:
        config = self.config
        root = self.store.list_ca_certificates("root")[-1]
        constrained = config.name_constraints
        tbs = intermediate_tbs(
            subject=ca_name(config.intermediate_common_name, config.organization, config.country),
            public_key=self._public_key(label),
            issuer_cert=root.certificate,
            serial=new_serial(),
            now=now,
            validity=timedelta(days=config.intermediate_validity_days),
            permitted_zones=config.permitted_zones if constrained else None,
            permitted_ipv6_networks=self._ipv6 if constrained and config.allow_ipv6_sans else (),
            crl_url=self.crl_url(root.key_label),
            ca_issuers_url=self.ca_issuers_url(root.key_label),
        )
        signature = self._sign(root.key_label, tbs.der, tbs.hash_name)
        cert = assemble(tbs.der, tbs.algorithm, signature,
                        issuer_public_key=ca_public_key(root.certificate))  # fmt: skip
        return self.store.add_ca_certificate("intermediate", label, cert)

    def _load(self, now: datetime) -> None:
        records = self.store.list_ca_certificates()
        self.by_label = {r.key_label: r for r in records}
        current = self.store.current_intermediate(now)
        assert current is not None, "ensure() creates an intermediate first"
        self.current = current
        self.chain_pem = {r.key_label: pem(r.certificate) for r in records}
