"""Authorizations and challenges (RFC 8555 §7.5, §8): reading them, deactivating an
authorization, answering a challenge, and the validators' verdict.

- A client answers a challenge with a POST of ``{}`` (§7.5.1): a pending challenge of a
  pending authorization goes to ``processing`` at once (written before the answer) and
  a ``Validate`` effect puts it to the validators (the detector's quorum, 2f+1 of
  3f+1 each checking from its own perspective); answering again changes nothing. A
  POST-as-GET only reads it. The answer links ``up`` to its authorization.
- The verdict (``validated``): approval makes the challenge and its authorization
  valid (the votes kept as the authorization's evidence, its expiry the detector's
  record's) and readies the orders whose authorizations are now all valid; refusal
  makes them invalid, with the problem whose type the validators' agreed reason
  starts with (``connection: ...`` -> ``connection``), and the orders waiting on it
  invalid too. A fault of the detector (restarting, its store full) is retried with
  backoff; after ``MAX_ATTEMPTS`` the challenge fails as ``serverInternal``.
- A client may deactivate its pending or valid authorization (§7.5.2).

Only one challenge of an authorization is ever processing or valid: once one is
answered, the others are left as they are and cannot be answered any more.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from trustchain.actors.acme.base import TRANSIENT, Call, CoreBase, Handled
from trustchain.actors.acme.effects import Effect, Later, Validate
from trustchain.actors.acme.jws import key_authorization
from trustchain.actors.acme.problems import AcmeProblem
from trustchain.actors.acme.records import (
    DEACTIVATED,
    INVALID,
    PENDING,
    PROCESSING,
    VALID,
    Account,
    Authorization,
    Challenge,
)
from trustchain.actors.acme.resources import authz_json, challenge_json, json_answer, link
from trustchain.actors.detector.messages import ValidateChallenge
from trustchain.supervisors.errors import TrustChainError

MAX_VALID_FOR_S = 400 * 86_400  # ValidateChallenge's bound
# The types a validator's reason may start with that describe a failed check (§6.7).
CHECK_FAILURES = frozenset({
    "caa", "connection", "dns", "incorrectResponse", "rejectedIdentifier", "tls",
    "unauthorized", "unsupportedIdentifier",
})  # fmt: skip


def failure_type(error: TrustChainError) -> str:
    """The ACME error type of the validators' refusal: the first agreed reason that
    starts with one (``details["reasons"]`` holds their codes), else unauthorized."""
    reasons = error.details.get("reasons") or []
    for code in reasons:
        if code in CHECK_FAILURES:
            return str(code)
    return "unauthorized"


class AuthorizationsPart(CoreBase):
    def authz(self, call: Call, authz_id: str) -> Handled:
        request, account = self.signed_by_account(call)
        authz = self._authz_of(account, authz_id)
        payload = self.payload(request)
        authz = self.current_authz(authz, call.now)
        if "status" in payload:
            if payload["status"] != DEACTIVATED or authz.status not in (PENDING, VALID):
                raise AcmeProblem("malformed", f"a {authz.status} authorization cannot be set to "
                                  f"{payload['status']!r}; only pending or valid ones can be "
                                  "deactivated")  # fmt: skip
            authz = replace(authz, status=DEACTIVATED)
            with self.store.batch():
                self.store.put_authorization(authz)
                for order in self.store.orders_with(authz.id):
                    self.current_order(order, call.now)
        challenges = self.store.challenges_of(authz.id)
        if authz.status in (VALID, INVALID):  # final: the challenge that was used (§7.1.4)
            challenges = [c for c in challenges if c.status != PENDING] or challenges
        body = authz_json(authz, challenges, call.urls)
        headers = []
        if any(c.status == PROCESSING for c in challenges):
            headers.append(["Retry-After", "1"])
        return json_answer(200, body, headers), []

    def _authz_of(self, account: Account, authz_id: str) -> Authorization:
        authz = self.store.authorization(authz_id)
        if authz is None:
            raise AcmeProblem("malformed", f"no authorization {authz_id}", status=404)
        self.owned(account, authz.account, "this authorization")
        return authz

    def challenge(self, call: Call, challenge_id: str) -> Handled:
        request, account = self.signed_by_account(call)
        challenge = self.store.challenge(challenge_id)
        if challenge is None:
            raise AcmeProblem("malformed", f"no challenge {challenge_id}", status=404)
        authz = self.current_authz(self._authz_of(account, challenge.authz), call.now)
        effects: list[Effect] = []
        if not request.post_as_get():
            request.json()  # {} (§7.5.1); anything else in it is ignored
            answered = any(c.status in (PROCESSING, VALID)
                           for c in self.store.challenges_of(authz.id))  # fmt: skip
            if challenge.status == PENDING and authz.status == PENDING and not answered:
                challenge = replace(challenge, status=PROCESSING)
                self.store.put_challenge(challenge)
                effects.append(self.validate_effect(challenge, authz, account))
            elif challenge.status == PENDING:
                raise AcmeProblem("malformed", f"the authorization is {authz.status}"
                                  + (" and another of its challenges was answered"
                                     if answered else "")
                                  + ": this challenge can no longer be answered")  # fmt: skip
        headers = [link(call.urls.authz(authz.id), "up")]
        if challenge.status == PROCESSING:
            headers.append(["Retry-After", "1"])
        return json_answer(200, challenge_json(challenge, call.urls), headers), effects

    def validate_effect(self, challenge: Challenge, authz: Authorization,
                        account: Account) -> Validate:  # fmt: skip
        ports = {"http-01": self.config.http01_port, "tls-alpn-01": self.config.tls_alpn01_port}
        valid_for = self.config.authorization_reuse_s + self.config.order_lifetime_s
        message = ValidateChallenge(
            account=account.id, kind=challenge.type, identifier_type=authz.identifier[0],
            identifier=authz.identifier[1], token=challenge.token,
            key_authorization=key_authorization(challenge.token, account.jwk),
            port=ports.get(challenge.type, 53), timeout_s=self.config.challenge_timeout_s,
            valid_for_s=max(1, min(MAX_VALID_FOR_S, valid_for)),
        )  # fmt: skip
        return Validate(challenge.id, message)

    def validated(self, challenge_id: str, result: dict[str, Any] | TrustChainError,
                  now: float) -> list[Effect]:  # fmt: skip
        """The validators' verdict on a challenge (the detector's answer)."""
        challenge = self.store.challenge(challenge_id)
        if challenge is None or challenge.status != PROCESSING:
            return []  # answered twice (a retry raced a restart): the first answer holds
        authz = self.authz_record(challenge.authz)
        key = f"challenge {challenge_id}"
        if isinstance(result, TrustChainError) and result.code in TRANSIENT:
            delay = self.retry_delay(key)
            if delay is not None:
                account = self.store.account(authz.account)
                assert account is not None
                return [Later(delay, self.validate_effect(challenge, authz, account))]
            result = TrustChainError(f"the validators could not be asked: {result.message}")
            problem = AcmeProblem("serverInternal", result.message)
        elif isinstance(result, TrustChainError):
            problem = AcmeProblem(failure_type(result), result.message)
        else:
            problem = None
        self.attempts.pop(key, None)
        if problem is None:
            assert isinstance(result, dict)
            at = float(result.get("validated_at", now))
            challenge = replace(challenge, status=VALID, validated=at, error=None)
            if authz.status == PENDING:  # (not if the client deactivated it meanwhile)
                authz = replace(authz, status=VALID, validated=at, evidence=result,
                                expires=float(result.get("expires", authz.expires)))  # fmt: skip
        else:
            challenge = replace(challenge, status=INVALID, error=problem.to_json())
            authz = replace(authz, status=INVALID) if authz.status == PENDING else authz
        with self.store.batch():
            self.store.put_challenge(challenge)
            self.store.put_authorization(authz)
            for order in self.store.orders_with(authz.id):
                self.current_order(order, now)
        return []
