"""Revocation, and what the issuer answers about its certificates and CRLs.

A revocation is recorded in the store and answered once the CA's new CRL is signed
and written (``crls.py``); if the disk refuses the CRL, the revocation stays recorded,
the caller hears ``ca_store_unavailable`` and the CRL follows when the store works
again (``faults.py``). ``RefreshCRLs`` (also on a timer, every ``ca.crl_refresh_s``)
re-signs the CRL of every live CA.
"""

from __future__ import annotations

from typing import Any

import outcome
from cryptography.hazmat.primitives import serialization

from trustchain.actors.ca import IssuerNotValid, parse_serial, pem, serial_hex
from trustchain.actors.issuer.base import STORE_FAULTS
from trustchain.actors.issuer.faults import StoreFaults
from trustchain.actors.issuer.messages import (
    GetCertificate,
    GetCRL,
    RefreshCRLs,
    RevokeCertificate,
)
from trustchain.supervisors import handles


class Revocation(StoreFaults):
    @handles(RevokeCertificate)
    def revoke_certificate(self, msg: RevokeCertificate) -> None:
        """Answered once the new CRL is signed and written."""
        assert self.store is not None
        now = self.clock.now()
        try:
            record = self.store.revoke(parse_serial(msg.serial), msg.reason, now)
        except STORE_FAULTS as exc:
            raise self._store_failed(exc, "the revocation was not recorded") from None
        reply = self.defer()

        def published(result: outcome.Outcome) -> None:
            if isinstance(result, outcome.Error):
                reply(self._crl_failed(result.error, "the revocation is recorded; its CRL is "
                                       "published once the disk takes writes"))  # fmt: skip
                return
            self._store_works()
            assert record.revoked_at is not None
            reply(outcome.Value({
                "serial": serial_hex(record.serial),
                "status": record.status,
                "reason": record.reason,
                "revoked_at": record.revoked_at.isoformat(),
                "crl_number": self.hierarchy.crl_number(record.ca_label),
            }))  # fmt: skip

        self._publish_crls([record.ca_label], now, lambda results: published(results[0]))

    @handles(GetCertificate)
    def get_certificate(self, msg: GetCertificate) -> dict[str, Any]:
        assert self.store is not None
        record = self.store.get(parse_serial(msg.serial))
        return {
            "serial": serial_hex(record.serial),
            "names": list(record.names),
            "status": record.status,
            "not_before": record.not_before.isoformat(),
            "not_after": record.not_after.isoformat(),
            "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
            "reason": record.reason,
            "ca": record.ca_label,
            "certificate": pem(record.certificate),
            "decision": record.decision,  # the validators' signed approval, if it needed one
            "final_leaf_index": record.final_leaf_index,  # once the log has the certificate
        }

    @handles(GetCRL)
    def get_crl(self, msg: GetCRL) -> dict[str, Any]:
        label = msg.ca or self.hierarchy.current.key_label
        crl = self.hierarchy.crls.get(label)
        if crl is None:
            raise IssuerNotValid(
                f"no CRL for CA {label!r}; CAs: {', '.join(sorted(self.hierarchy.crls))}"
            )
        return {
            "ca": label,
            "crl": crl.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            "crl_number": self.hierarchy.crl_number(label),
            "this_update": crl.last_update_utc.isoformat(),
            "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
            "revoked": len(crl),
        }

    @handles(RefreshCRLs)
    def refresh_crls(self, msg: RefreshCRLs) -> None:
        """Answered with the labels whose CRLs were re-signed, once all are written."""
        now = self.clock.now()
        labels = self.hierarchy.live_labels(now)
        reply = self.defer()

        def published(results: list[outcome.Outcome]) -> None:
            for result in results:
                if isinstance(result, outcome.Error):
                    reply(self._crl_failed(result.error, "the CRLs were not refreshed"))
                    return
            self._store_works()
            reply(outcome.Value(labels))

        self._publish_crls(labels, now, published)
