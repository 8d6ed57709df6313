"""Revocation (RFC 8555 §7.6) and renewal information (ARI, RFC 9773).

revokeCert names a certificate this server issued (its DER, which must be the one
stored) and is signed either by an account (``kid``) -- the one that ordered it, or
one holding valid authorizations for every name in it -- or by the certificate's own
key (``jwk``, e.g. after a key compromise). ``reason`` is an RFC 5280 CRLReason code;
the issuer takes the names in ``REASONS`` (``actors/ca/crl.py``: the BRs' subset), any
other is ``badRevocationReason``. A revoked certificate is ``alreadyRevoked``. The
answer waits for the issuer (its new CRL written): ``Revoke`` carries the pending
request, and ``revoked`` gives the answer.

renewalInfo (GET ``renewal-info/<certID>``): the suggested window is 2/3 to 5/6 of
the certificate's lifetime (so a 24-hour certificate renews between hours 16 and
20); for a revoked certificate it is in the past (renew now). Retry-After says when to
ask again (a twelfth of the lifetime, 1 minute to 6 hours).

Not done: ARI's ``explanationURL``; revocation of certificates not ordered over ACME.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jwcrypto.jwk import JWK  # type: ignore[import-untyped]

from trustchain.actors.acme.base import Call, CoreBase, Handled
from trustchain.actors.acme.effects import Answer, PendingRevocation, Revoke
from trustchain.actors.acme.jws import b64url_decode, thumbprint
from trustchain.actors.acme.problems import AcmeProblem
from trustchain.actors.acme.records import Account, Certificate, rfc3339
from trustchain.actors.acme.resources import answer, json_answer, problem_answer
from trustchain.actors.issuer.messages import RevokeCertificate
from trustchain.supervisors.errors import TrustChainError

# RFC 5280 §5.3.1 CRLReason codes -> the issuer's reason names (actors/ca/crl.py REASONS)
REASONS = {
    0: "unspecified",
    1: "key_compromise",
    3: "affiliation_changed",
    4: "superseded",
    5: "cessation_of_operation",
    9: "privilege_withdrawn",
}
MIN_ARI_RETRY_S, MAX_ARI_RETRY_S = 60, 6 * 3_600


class RevocationPart(CoreBase):
    def revoke_cert(self, call: Call) -> Handled:
        by_key = self.embeds_jwk(call)
        request, account = self.signed(call, jwk=by_key)
        payload = request.json()
        der = b64url_decode(payload.get("certificate"), "'certificate'")
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError:
            raise AcmeProblem("malformed", "'certificate' is not a DER certificate") from None
        certificate = self.store.certificate_by_serial(format(leaf.serial_number, "x"))
        if certificate is None or _leaf_der(certificate) != der:
            raise AcmeProblem("malformed", "this server issued no such certificate", status=404)
        reason_code = payload.get("reason", 0)
        if isinstance(reason_code, bool) or reason_code not in REASONS:
            raise AcmeProblem(
                "badRevocationReason",
                f"reason {reason_code!r} is not accepted; use one of "
                + ", ".join(f"{code} ({name})" for code, name in REASONS.items()),
            )
        if by_key:
            assert request.jwk is not None
            if thumbprint(request.jwk) != _key_thumbprint(leaf):
                raise AcmeProblem("unauthorized", "the JWS is not signed by the certificate's key")
        else:
            assert account is not None
            self._may_revoke(account, certificate, call.now)
        if certificate.revoked is not None:
            raise AcmeProblem("alreadyRevoked", f"the certificate was revoked at "
                              f"{rfc3339(certificate.revoked)}")  # fmt: skip
        reason = REASONS[reason_code]
        pending = PendingRevocation(call.request, certificate.id, reason)
        return None, [Revoke(pending, RevokeCertificate(certificate.serial, reason))]

    def _may_revoke(self, account: Account, certificate: Certificate, now: float) -> None:
        if certificate.account == account.id:
            return
        for name in certificate.names:
            kind = "ip" if ":" in name else "dns"
            wildcard = name.startswith("*.")
            base = (kind, name[2:] if wildcard else name)
            if self.store.reusable_authorization(account.id, base, wildcard, 0.0, now) is None:
                raise AcmeProblem("unauthorized", "only the account that ordered the "
                                  "certificate, one with valid authorizations for all its "
                                  "names, or the certificate's key may revoke it")  # fmt: skip

    def revoked(self, pending: PendingRevocation, result: dict[str, Any] | TrustChainError,
                now: float) -> Answer:  # fmt: skip
        """The issuer's answer to a revocation: the client's answer."""
        certificate = self.store.certificate(pending.certificate_id)
        assert certificate is not None
        if isinstance(result, TrustChainError) and result.code != "already_revoked":
            if result.code == "unknown_revocation_reason":
                problem = AcmeProblem("badRevocationReason", result.message)
            elif result.code == "unknown_serial":
                problem = AcmeProblem("malformed", result.message, status=404)
            else:
                problem = AcmeProblem("serverInternal", f"the revocation did not complete "
                                      f"({result.message}); try again", status=503,
                                      headers=[("Retry-After", "1")])  # fmt: skip
            return self.finish(pending.request, problem_answer(problem))
        if certificate.revoked is None:
            self.store.put_certificate(replace(certificate, revoked=now, reason=pending.reason))
        if isinstance(result, TrustChainError):
            problem = AcmeProblem("alreadyRevoked", result.message)
            return self.finish(pending.request, problem_answer(problem))
        return self.finish(pending.request, answer(200))

    # ARI (RFC 9773) ------------------------------------------------------------------------

    def renewal_info(self, call: Call, cert_id: str) -> Handled:
        certificate = self.certificate_by_ari_id(cert_id)
        if certificate is None:
            raise AcmeProblem("malformed", f"no certificate {cert_id}", status=404)
        lifetime = certificate.not_after - certificate.not_before
        if certificate.revoked is not None:
            end = min(certificate.revoked, call.now)
            start = end - 3_600
        else:
            start = certificate.not_before + lifetime * 2 / 3
            end = certificate.not_before + lifetime * 5 / 6
        retry = int(max(MIN_ARI_RETRY_S, min(MAX_ARI_RETRY_S, math.ceil(lifetime / 12))))
        body = {"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}
        return json_answer(200, body, [["Retry-After", str(retry)]]), []


def _leaf_der(certificate: Certificate) -> bytes:
    leaf = x509.load_pem_x509_certificate(certificate.chain.encode("ascii"))
    return leaf.public_bytes(serialization.Encoding.DER)


def _key_thumbprint(leaf: x509.Certificate) -> str:
    try:
        key = JWK.from_pyca(leaf.public_key()).export_public(as_dict=True)
    except Exception:  # a key type JWK cannot carry cannot have signed a JWS either
        return ""
    return thumbprint(key)
