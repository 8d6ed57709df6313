"""Faults of the CA store: a database or CRL directory that cannot be written.

A full disk or an I/O error is a fault of the environment, not a bug: the requests
that needed the store get ``ca_store_unavailable`` (certificates logged but not
recorded are not handed out), the fault (``ca_store``) shows in status and
``/ready``, and a durable probe write plus a CRL refresh is retried with backoff
until it succeeds; then the fault is cleared.
"""

from __future__ import annotations

from dataclasses import dataclass

import outcome

from trustchain.actors.ca import CaStoreUnavailable
from trustchain.actors.issuer.base import STORE_FAULTS
from trustchain.actors.issuer.crls import CRLPublishing
from trustchain.supervisors import Message, handles

STORE = "ca_store"  # the resource name shown in status and /ready


@dataclass(frozen=True)
class _RetryStore(Message):
    """Time to try opening the CA store again after a failure."""


class StoreFaults(CRLPublishing):
    def _store_failed(self, exc: BaseException, what: str) -> CaStoreUnavailable:
        """Show the fault, schedule a probe (once), and say what happened."""
        self.report_fault_and_probe(STORE, exc, _RetryStore())
        return CaStoreUnavailable(
            f"the CA's database or CRL directory cannot be written "
            f"({type(exc).__name__}: {exc}); {what}; try again shortly",
            retry_after_s=1,
        )

    def _store_works(self) -> None:
        if self.fault(STORE) is not None:
            self.clear_fault(STORE)

    def _crl_failed(self, error: BaseException, what: str) -> outcome.Outcome:
        """What a caller gets when a CRL could not be made: a store fault is
        ca_store_unavailable (and probed); an HSM or signature error as it came."""
        if isinstance(error, STORE_FAULTS):
            return outcome.Error(self._store_failed(error, what))
        return outcome.Error(error)

    @handles(_RetryStore)
    def retry_store(self, msg: _RetryStore) -> None:
        self.probe_due(STORE)
        if self.fault(STORE) is None:
            return
        assert self.store is not None
        now = self.clock.now()
        try:
            self.store.probe(now)  # a durable write to the database ...
        except STORE_FAULTS as exc:
            self._store_failed(exc, "probe")
            return

        def refreshed(results: list[outcome.Outcome]) -> None:
            for result in results:
                if isinstance(result, outcome.Error) and isinstance(result.error, STORE_FAULTS):
                    self._store_failed(result.error, "probe")
                    return
            # (an HSM that could not sign is its own fault, shown by the HSM actor)
            self._store_works()

        # ... and to the CRL directory (CRLs missed meanwhile)
        self._publish_crls(self.hierarchy.live_labels(now), now, refreshed)
