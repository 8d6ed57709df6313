"""Publishing CRLs: make, sign (in the HSM) and write the CRL of each CA.

CRLs are regenerated on every revocation, every ``ca.crl_refresh_s``, at start-up,
after a rotation and when a store fault clears (``revocation.py``, ``hierarchy.py``,
``faults.py`` ask for them). Each goes in steps like issuance: ``Hierarchy`` returns
the TBS (its CRL number taken, a database write), the HSM signs it (``request``), and
the continuation checks and keeps it and writes its files; the caller gets one
outcome per CA and answers its own caller (``defer``). Nothing here waits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime

import outcome
from cryptography import x509

from trustchain.actors.ca import NewCRL
from trustchain.actors.durable import replace_file
from trustchain.actors.hsm.messages import SignData
from trustchain.actors.issuer.base import STORE_FAULTS, IssuerBase
from trustchain.supervisors import TrustChainError


class CRLPublishing(IssuerBase):
    def _publish_crls(
        self, labels: list[str], now: datetime, then: Callable[[list[outcome.Outcome]], None]
    ) -> None:
        """Make, sign (one HSM request each, no waiting) and write the CRL of each
        CA in ``labels``; ``then`` gets one outcome per label, in order, when all
        are done (the CRL, or the store fault or HSM error that stopped it)."""
        results: list[outcome.Outcome | None] = [None] * len(labels)

        def done(index: int, result: outcome.Outcome) -> None:
            results[index] = result
            if all(r is not None for r in results):
                then([r for r in results if r is not None])

        if not labels:
            then([])
        for index, label in enumerate(labels):
            try:
                new = self.hierarchy.new_crl(label, now)  # takes a CRL number: a database write
            except STORE_FAULTS as exc:
                done(index, outcome.Error(exc))
                continue
            self._sign_crl(new, functools.partial(done, index))

    def _sign_crl(self, new: NewCRL, then: Callable[[outcome.Outcome], None]) -> None:
        def signed(result: outcome.Outcome) -> None:
            then(self._crl_signed_outcome(new, result))

        self.request(self.hsm, SignData(new.signer, new.tbs.der, new.tbs.hash_name), signed)

    def _crl_signed_outcome(self, new: NewCRL, result: outcome.Outcome) -> outcome.Outcome:
        if isinstance(result, outcome.Error):
            return outcome.Error(result.error)
        try:
            return outcome.Value(self._crl_signed(new, result.unwrap()))
        except (*STORE_FAULTS, TrustChainError) as exc:
            return outcome.Error(exc)

    def _crl_signed(self, new: NewCRL, signature: bytes) -> x509.CertificateRevocationList:
        """Check and keep the signed CRL, and write its files (unless a newer one is out)."""
        crl = self.hierarchy.add_crl(new, signature)
        if crl is not None:
            for path, content in self.hierarchy.crl_files(new.key_label).items():
                replace_file(path, content)
        return self.hierarchy.crls[new.key_label]
