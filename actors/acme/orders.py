"""Orders (RFC 8555 §7.4): newOrder, reading an order, finalize, the issuer's answer,
and downloading the certificate.

newOrder, in this order of refusals:
- ``identifiers`` through ``identifiers.check_identifiers`` (the CA's zones, wildcards
  and IPv6 as ``[ca]`` allows, at most ``ca.max_sans``);
- ``notBefore``/``notAfter`` are refused (``malformed``): a certificate's lifetime is
  its profile's;
- ``profile`` one of ``acme.profiles`` (``invalidProfile``), else ``default_profile``;
- ``replaces`` (RFC 9773 §5) the certID of a certificate of this account, not already
  replaced by another live order (``conflict``);
- rate limits over ``acme.rate_window_s``: ``max_orders_per_account`` new orders,
  ``max_certificates_per_name`` certificates per identifier; past either,
  ``rateLimited`` (429) with Retry-After saying when the oldest counted leaves the
  window.
An identifier gets the account's valid authorization for it when one was validated
less than ``acme.authorization_reuse_s`` ago (§7.1.3), else a new pending one with a
challenge of each type ``acme.challenge_types`` allows for it (ip: no dns-01; a
wildcard: dns-01 only). Everything is written in one transaction before the answer.

finalize: the order must be ``ready`` (``orderNotReady``); the CSR's names must be the
order's identifiers exactly (``badCSR``); a profile of ``acme.consensus_profiles`` needs
the asset's four-proof consensus proofs for the CSR in ``trustchainProofs``
(``unauthorized`` without them), and any other profile refuses them (``malformed``).
The order goes to ``processing`` (its CSR and proofs kept) and an ``Issue`` effect asks
the issuer for the profile's lifetime, on behalf of the account (the issuer's gate asks
the detector for the corroborated control, and with proofs for the consensus's
decision as well).
The issuer's refusal becomes the order's error by its code (``ISSUER_PROBLEMS``); a
fault of the issuer or its peers is retried with backoff (``MAX_ATTEMPTS``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustchain.actors.acme.base import TRANSIENT, Call, CoreBase, Handled, new_id
from trustchain.actors.acme.effects import Effect, Issue, Later
from trustchain.actors.acme.identifiers import (
    cert_id,
    check_identifiers,
    csr_identifiers,
)
from trustchain.actors.acme.jws import b64url_decode
from trustchain.actors.acme.problems import AcmeProblem
from trustchain.actors.acme.records import (
    INVALID,
    PENDING,
    PROCESSING,
    READY,
    VALID,
    Account,
    Authorization,
    Certificate,
    Challenge,
    Identifier,
    Order,
)
from trustchain.actors.acme.resources import (
    PEM_CHAIN,
    answer,
    json_answer,
    order_json,
    retry_after,
)
from trustchain.actors.issuer.messages import IssueCertificate
from trustchain.supervisors.errors import TrustChainError

# The issuer's refusals (actors/ca/errors.py, actors/trust/errors.py) as ACME problems;
# any other code is serverInternal.
ISSUER_PROBLEMS = {
    "malformed_csr": "badCSR", "csr_too_large": "badCSR", "bad_csr_signature": "badCSR",
    "duplicate_name": "badCSR", "no_names": "badCSR", "too_many_names": "badCSR",
    "key_not_allowed": "badPublicKey",
    "name_not_permitted": "rejectedIdentifier", "invalid_name": "rejectedIdentifier",
    "not_approved": "unauthorized", "proofs_required": "unauthorized",
    "quorum_not_reached": "unauthorized", "proof_replayed": "unauthorized",
    "trust_error": "malformed", "time_proof_invalid": "malformed",
}  # fmt: skip
PROCESSING_RETRY_S = 2  # Retry-After while an order is processing
# finalize's member for a consensus profile's proofs (acme.consensus_profiles): an
# extension of RFC 8555 §7.4's payload, which other clients never send
PROOFS_FIELD = "trustchainProofs"
MAX_PROOF_FIELDS = 16  # IssueCertificate.proofs' bound


def challenge_types_for(allowed: list[str], identifier: Identifier) -> list[str]:
    """The challenge types an identifier can be validated with (RFC 8555 §8, RFC 8738)."""
    kind, value = identifier
    if kind == "ip":
        return [t for t in allowed if t != "dns-01"]
    if value.startswith("*."):
        return [t for t in allowed if t == "dns-01"]
    return list(allowed)


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class OrdersPart(CoreBase):
    def new_order(self, call: Call) -> Handled:
        request, account = self.signed_by_account(call)
        payload = request.json()
        identifiers = check_identifiers(
            payload.get("identifiers"), self.ca.permitted_zones,
            allow_wildcards=self.ca.allow_wildcards, allow_ipv6=self.ca.allow_ipv6_sans,
            max_identifiers=self.ca.max_sans,
        )  # fmt: skip
        for field in ("notBefore", "notAfter"):
            if field in payload:
                raise AcmeProblem(
                    "malformed",
                    f"{field} is not supported: a certificate's lifetime is its profile's "
                    f"({self._profiles_text()}); leave {field} out",
                )
        profile = self._profile(payload.get("profile"))
        replaces = self._replaces(payload.get("replaces"), account)
        self._rate_limits(account, identifiers, call.now)
        order_id, expires = new_id(), call.now + self.config.order_lifetime_s
        authz_ids: list[str] = []
        new: list[tuple[Authorization, list[Challenge]]] = []
        for identifier in identifiers:
            reused = self._reusable(account, identifier, call.now)
            if reused is not None:
                authz_ids.append(reused.id)
                continue
            authz, challenges = self._new_authz(account, identifier, call.now, expires)
            new.append((authz, challenges))
            authz_ids.append(authz.id)
        status = READY if not new else PENDING
        order = Order(order_id, account.id, status, tuple(identifiers), tuple(authz_ids),
                      profile, call.now, expires, replaces=replaces)  # fmt: skip
        with self.store.batch():
            for authz, challenges in new:
                self.store.put_authorization(authz)
                for challenge in challenges:
                    self.store.put_challenge(challenge)
            self.store.put_order(order)
        headers = [["Location", call.urls.order(order.id)]]
        return json_answer(201, order_json(order, call.urls), headers), []

    def _profiles_text(self) -> str:
        return ", ".join(f"{name}: {s} s" for name, s in sorted(self.config.profiles.items()))

    def _profile(self, profile: Any) -> str:
        if profile is None:
            return self.config.default_profile
        if not isinstance(profile, str) or profile not in self.config.profiles:
            raise AcmeProblem("invalidProfile", f"no profile {profile!r}; this server has "
                              f"{self._profiles_text()}")  # fmt: skip
        return profile

    def _replaces(self, replaces: Any, account: Account) -> str | None:
        if replaces is None:
            return None
        if not isinstance(replaces, str):
            raise AcmeProblem("malformed", "'replaces' is a certificate id (RFC 9773)")
        certificate = self.certificate_by_ari_id(replaces)
        if certificate is None or certificate.account != account.id:
            raise AcmeProblem("malformed", f"'replaces' names no certificate of this account "
                              f"({replaces})")  # fmt: skip
        other = self.store.order_replacing(certificate.cert_id)
        if other is not None:
            raise AcmeProblem("conflict", f"certificate {replaces} is already being replaced "
                              "by another order")  # fmt: skip
        return certificate.cert_id

    def _rate_limits(self, account: Account, identifiers: list[Identifier], now: float) -> None:
        window = self.config.rate_window_s
        since = now - window
        created = self.store.orders_created_since(account.id, since)
        most = self.config.max_orders_per_account
        if len(created) >= most:
            self._limited(created[len(created) - most] + window - now,
                          f"this account made {len(created)} orders in the last {window} s "
                          f"(at most {most})")  # fmt: skip
        most = self.config.max_certificates_per_name
        for _, value in identifiers:
            issued = self.store.certificates_named_since(value, since)
            if len(issued) >= most:
                self._limited(issued[len(issued) - most] + window - now,
                              f"{len(issued)} certificates for {value} in the last {window} s "
                              f"(at most {most})")  # fmt: skip

    @staticmethod
    def _limited(after_s: float, why: str) -> None:
        seconds = max(1, math.ceil(after_s))
        raise AcmeProblem("rateLimited", f"{why}; retry after {seconds} s",
                          headers=[("Retry-After", str(seconds))])  # fmt: skip

    def _reusable(
        self, account: Account, identifier: Identifier, now: float
    ) -> Authorization | None:
        if self.config.authorization_reuse_s <= 0:
            return None
        kind, value = identifier
        wildcard = value.startswith("*.")
        base = (kind, value[2:] if wildcard else value)
        since = now - self.config.authorization_reuse_s
        return self.store.reusable_authorization(account.id, base, wildcard, since, now)

    def _new_authz(
        self, account: Account, identifier: Identifier, now: float, expires: float
    ) -> tuple[Authorization, list[Challenge]]:
        kind, value = identifier
        types = challenge_types_for(self.config.challenge_types, identifier)
        if not types:
            raise AcmeProblem("rejectedIdentifier", f"{value}: none of this server's challenge "
                              f"types ({', '.join(self.config.challenge_types)}) can validate "
                              "it (a wildcard needs dns-01; an IP address http-01 or "
                              "tls-alpn-01)")  # fmt: skip
        wildcard = value.startswith("*.")
        base = (kind, value[2:] if wildcard else value)
        authz = Authorization(new_id(), account.id, base, wildcard, PENDING, now, expires)
        challenges = [Challenge(new_id(), authz.id, t, new_id() + new_id(), PENDING)
                      for t in types]  # fmt: skip
        return authz, challenges

    # Reading an order ---------------------------------------------------------------------

    def order(self, call: Call, order_id: str) -> Handled:
        request, account = self.signed_by_account(call)
        order = self._order_of(account, order_id)
        self.post_as_get(request, "an order")
        order = self.current_order(order, call.now)
        return json_answer(200, order_json(order, call.urls),
                           retry_after(order.status, PROCESSING_RETRY_S)), []  # fmt: skip

    def _order_of(self, account: Account, order_id: str) -> Order:
        order = self.store.order(order_id)
        if order is None:
            raise AcmeProblem("malformed", f"no order {order_id}", status=404)
        self.owned(account, order.account, "this order")
        return order

    # Finalize (§7.4) ----------------------------------------------------------------------

    def finalize(self, call: Call, order_id: str) -> Handled:
        request, account = self.signed_by_account(call)
        order = self.current_order(self._order_of(account, order_id), call.now)
        payload = request.json()
        if order.status != READY:
            raise AcmeProblem("orderNotReady", f"the order is {order.status}; it can be "
                              "finalized once ready (every authorization valid)")  # fmt: skip
        csr_der = b64url_decode(payload.get("csr"), "'csr'")
        csr, names = csr_identifiers(csr_der)
        wanted = sorted(order.identifiers)
        if names != wanted:
            missing = sorted(set(wanted) - set(names))
            extra = sorted(set(names) - set(wanted))
            raise AcmeProblem("badCSR", "the CSR's names must be the order's identifiers "
                              f"exactly (missing: {_names(missing)}; not in the order: "
                              f"{_names(extra)})")  # fmt: skip
        proofs = self._consensus_proofs(order, payload)
        csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
        order = replace(order, status=PROCESSING, csr=csr_pem, proofs=proofs)
        self.store.put_order(order)
        headers = [["Location", call.urls.order(order.id)],
                   *retry_after(PROCESSING, PROCESSING_RETRY_S)]  # fmt: skip
        return json_answer(200, order_json(order, call.urls), headers), [self.issue_effect(order)]

    def _consensus_proofs(self, order: Order, payload: dict[str, Any]) -> dict[str, Any] | None:
        """A consensus profile's finalize carries the asset's proofs for the CSR
        (``PROOFS_FIELD``, the JSON ``trustchain trust prove`` prints); any other's does
        not. The issuer checks them (the validators vote on them); here only their shape."""
        proofs = payload.get(PROOFS_FIELD)
        if order.profile not in self.config.consensus_profiles:
            if proofs is not None:
                raise AcmeProblem("malformed", f"{PROOFS_FIELD} is for the profiles that need "
                                  "the four-proof consensus "
                                  f"({', '.join(self.config.consensus_profiles) or 'none here'}),"
                                  f" not {order.profile!r}; leave it out")  # fmt: skip
            return None
        if proofs is None:
            raise AcmeProblem("unauthorized", f"profile {order.profile!r} needs the four-proof "
                              "consensus's approval as well as domain control: finalize with "
                              f"{PROOFS_FIELD}, the asset's proofs for this CSR (`trustchain "
                              "trust prove --csr FILE` prints them)")  # fmt: skip
        if not isinstance(proofs, dict) or not 0 < len(proofs) <= MAX_PROOF_FIELDS:
            raise AcmeProblem("malformed", f"{PROOFS_FIELD} is a JSON object: the asset's "
                              "proofs as `trustchain trust prove` prints them")  # fmt: skip
        return proofs

    def issue_effect(self, order: Order) -> Issue:
        assert order.csr is not None
        # request_id: issued again after a restart, the issuer answers with the
        # certificate it issued for this order before, if any (never a second one)
        message = IssueCertificate(order.csr, validity_s=self.config.profiles[order.profile],
                                   acme_account=order.account, proofs=order.proofs,
                                   request_id=f"acme-order-{order.id}")  # fmt: skip
        return Issue(order.id, message)

    def issued(self, order_id: str, result: dict[str, Any] | TrustChainError,
               now: float) -> list[Effect]:  # fmt: skip
        """The issuer's answer for an order: its certificate, or why not."""
        order = self.store.order(order_id)
        if order is None or order.status != PROCESSING:
            return []  # answered twice (a retry raced a restart): the first answer holds
        if isinstance(result, TrustChainError):
            if result.code in TRANSIENT:
                delay = self.retry_delay(f"order {order_id}")
                if delay is not None:
                    return [Later(delay, self.issue_effect(order))]
            type_ = ISSUER_PROBLEMS.get(result.code, "serverInternal")
            problem = AcmeProblem(type_, f"the CA refused to issue: {result.message}")
            self.store.put_order(replace(order, status=INVALID, error=problem.to_json()))
            return []
        self.attempts.pop(f"order {order_id}", None)
        leaf = x509.load_pem_x509_certificate(result["certificate"].encode("ascii"))
        chain = result["certificate"].rstrip("\n") + "\n" + result["chain"].rstrip("\n") + "\n"
        certificate = Certificate(
            new_id(), result["serial"].lower(), cert_id(leaf), order.account, order.id, chain,
            tuple(result.get("names") or (v for _, v in order.identifiers)), now,
            _timestamp(result["not_before"]), _timestamp(result["not_after"]),
        )  # fmt: skip
        with self.store.batch():
            self.store.put_certificate(certificate)
            self.store.put_order(replace(order, status=VALID, certificate=certificate.id))
        return []

    # Certificates (§7.4.2) ----------------------------------------------------------------

    def certificate(self, call: Call, certificate_id: str) -> Handled:
        request, account = self.signed_by_account(call)
        certificate = self.store.certificate(certificate_id)
        if certificate is None:
            raise AcmeProblem("malformed", f"no certificate {certificate_id}", status=404)
        self.owned(account, certificate.account, "this certificate")
        self.post_as_get(request, "a certificate")
        return answer(200, certificate.chain.encode("ascii"), PEM_CHAIN), []


def _names(identifiers: list[Identifier]) -> str:
    return ", ".join(v for _, v in identifiers) or "none"
