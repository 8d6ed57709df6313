"""The CA hierarchy in the issuer: made or reloaded at start-up, rotated, reported.

At first start the CA hierarchy is created inside the HSM: a root key and a
self-signed root, an intermediate key and certificate signed by the root, and
a first CRL; later starts reload it from the database (crash-only: a restart
and a cold boot take the same path). Start-up waits on nobody either: each key
(``EnsureKey``), signature (``SignData``) and finally ``AcceptRoots`` to the log
is a request, and the issuer is ready in the last continuation.
A rotation makes a new intermediate in steps like issuance: ``Hierarchy``
returns the TBS, the HSM signs it (``request``), and the continuation records
it, publishes its first CRL and answers the caller (``defer``). Time is
``self.clock``'s.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import outcome
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from trustchain.actors.ca import (
    CACertificateRecord,
    CAStore,
    Hierarchy,
    NewCACertificate,
    pem,
)
from trustchain.actors.ca.hierarchy import MAX_CREATION_STEPS
from trustchain.actors.ca.keys import CAPublicKey
from trustchain.actors.ctlog.messages import AcceptRoots
from trustchain.actors.durable import replace_file
from trustchain.actors.hsm.messages import EnsureKey, SignData
from trustchain.actors.issuer.base import STORE_FAULTS
from trustchain.actors.issuer.faults import StoreFaults
from trustchain.actors.issuer.messages import GetCAStatus, RefreshCRLs, RotateIntermediate
from trustchain.supervisors import TrustChainError, handles


class HierarchyLifecycle(StoreFaults):
    # Start-up ---------------------------------------------------------------------

    def setup(self) -> None:
        self.config.database.parent.mkdir(parents=True, exist_ok=True)
        self.config.crl_dir.mkdir(parents=True, exist_ok=True)
        self.store = CAStore(self.config.database)
        self.hierarchy = Hierarchy(self.config, self.store, self.policy.permitted_ipv6_networks)
        self.starting()  # each step below is a request; an error in any fails the start
        self._create_missing(self.clock.now(), MAX_CREATION_STEPS)

    def _create_missing(self, now: datetime, steps_left: int) -> None:
        """Start-up, step 1: each missing CA (root, then intermediate): its key
        (``EnsureKey``), its signature (``SignData``), recorded; then load."""
        label = self.hierarchy.key_to_create(now) if steps_left else None
        if label is None:
            self.hierarchy.load(now)
            self._publish_at_start(now)
            return

        def have_key(result: outcome.Outcome) -> None:
            new = self.hierarchy.new_missing(now, label, _ca_key(result.unwrap().public_key_der))
            sign = SignData(new.signer, new.tbs.der, new.tbs.hash_name)
            self.request(self.hsm, sign, lambda signed: made(new, signed))

        def made(new: NewCACertificate, result: outcome.Outcome) -> None:
            self.hierarchy.add_ca_certificate(new, result.unwrap())
            self._create_missing(now, steps_left - 1)

        self.request(self.hsm, EnsureKey(label, self.config.key_type), have_key)

    def _publish_at_start(self, now: datetime) -> None:
        """Start-up, step 2: ``root.pem`` and every live CA's CRL, then the roots to
        the log (``AcceptRoots``), then ready."""
        # The trust anchor where users look for it (curl --cacert var/ca/root.pem).
        replace_file(
            self.hierarchy.root_pem_path, pem(self.hierarchy.root.certificate).encode("ascii")
        )

        def published(results: list[outcome.Outcome]) -> None:
            for result in results:
                result.unwrap()
            if self.ctlog is None:
                running()
                return
            roots = AcceptRoots(self.hierarchy.roots_der())
            self.request(self.ctlog, roots, lambda accepted: running(accepted.unwrap()))

        def running(_accepted: Any = None) -> None:
            self.every(self.config.crl_refresh_s, RefreshCRLs())
            self.ready()

        self._publish_crls(self.hierarchy.live_labels(now), now, published)

    def cleanup(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    # Status and rotation ----------------------------------------------------------

    @handles(GetCAStatus)
    def get_ca_status(self, msg: GetCAStatus) -> list[dict[str, Any]]:
        return self.hierarchy.status(self.clock.now())

    @handles(RotateIntermediate)
    def rotate_intermediate(self, msg: RotateIntermediate) -> None:
        """A new intermediate: its key (HSM), the root's signature (HSM), its first
        CRL (HSM), each a request; answered when it issues."""
        now = self.clock.now()
        label = self.hierarchy.next_intermediate_label()
        reply = self.defer()

        def have_key(result: outcome.Outcome) -> None:
            if isinstance(result, outcome.Error):
                reply(outcome.Error(result.error))
                return
            new = self.hierarchy.new_intermediate(
                now, label, _ca_key(result.unwrap().public_key_der)
            )
            self.request(self.hsm, SignData(new.signer, new.tbs.der, new.tbs.hash_name),
                         lambda result: signed(new, result))  # fmt: skip

        def signed(new: NewCACertificate, result: outcome.Outcome) -> None:
            if isinstance(result, outcome.Error):
                reply(outcome.Error(result.error))
                return
            try:
                record = self.hierarchy.add_ca_certificate(new, result.unwrap())
            except STORE_FAULTS as exc:
                reply(outcome.Error(self._store_failed(exc, "no intermediate was made")))
                return
            except TrustChainError as exc:
                reply(outcome.Error(exc))
                return
            self._publish_crls([record.key_label], now,
                               lambda results: published(record, results[0]))  # fmt: skip

        def published(record: CACertificateRecord, result: outcome.Outcome) -> None:
            self.hierarchy.load(now)  # it issues from now on, its CRL out or not (refreshed later)
            if isinstance(result, outcome.Error):
                reply(self._crl_failed(result.error, "the intermediate is made; its CRL is "
                                       "published once the disk takes writes"))  # fmt: skip
                return
            self._store_works()
            reply(outcome.Value({"key_label": record.key_label,
                                 "not_after": record.not_after.isoformat(),
                                 "certificate": pem(record.certificate)}))  # fmt: skip

        self.request(self.hsm, EnsureKey(label, self.config.key_type), have_key)


def _ca_key(public_key_der: bytes) -> CAPublicKey:
    key = serialization.load_der_public_key(public_key_der)
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey), "the HSM makes EC or RSA"
    return key
