"""The detector's ACME part: challenges put to the validators, and the issuer's gate for
ACME orders (the multi-perspective corroboration of CA/B Forum BR 3.2.2.9, made
Byzantine-tolerant).

* ``ValidateChallenge`` (the ACME actor's): a round like a request's (``open_round``):
  every validator but the quarantined gets ``CheckChallenge`` and checks the challenge
  itself (its own lookup through TrustChain's resolver, its own HTTP fetch, TXT lookup
  or TLS-ALPN handshake) and signs a vote over ``challenge_digest``. With 2f+1
  approvals the account's control of the identifier is recorded with the decision as
  evidence (``trust.domain_control``), in the decision's own transaction (the group
  commit), and the ACME actor gets the record; with 2f+1 rejections it gets
  ``not_approved`` with the reasons f+1 of them agree on (each reason begins with the
  RFC 8555 error type, e.g. ``connection:``); too few agreeing in time:
  ``quorum_not_reached``. Its deadline is the check's own timeout plus
  ``trust.decision_timeout_s``. Votes are scored like any other: a validator that
  reports success where the quorum found failure, or the reverse, loses trust.
* ``ConfirmDomainControl`` (the issuer's, for an order's certificate): the live record
  for every name, or ``not_approved`` naming the names without one.
"""

from __future__ import annotations

from typing import Any

from trustchain.actors.detector.messages import ConfirmDomainControl, ValidateChallenge
from trustchain.actors.detector.registration import RegistrationPart
from trustchain.actors.trust.domain_control import DomainControlRecord, identifiers_of
from trustchain.actors.trust.errors import NotApproved
from trustchain.actors.trust.votes import Decision
from trustchain.actors.validator.messages import CheckChallenge
from trustchain.supervisors import handles


class ChallengePart(RegistrationPart):
    @handles(ValidateChallenge)
    def validate_challenge(self, msg: ValidateChallenge) -> None:
        question = CheckChallenge(
            msg.kind, msg.identifier_type, msg.identifier, msg.token, msg.key_authorization,
            port=msg.port, timeout_s=msg.timeout_s,
        )  # fmt: skip
        what = f"the {msg.kind} challenge for {msg.identifier_type} {msg.identifier}"

        def conclude(decision: Decision, first: bool) -> dict[str, Any]:
            if decision.outcome != "approve":
                raise self.not_approved(decision, what)
            now = self.clock.time()
            record = DomainControlRecord(
                msg.account, msg.identifier_type, msg.identifier, msg.kind, decision, now,
                now + msg.valid_for_s,
            )  # fmt: skip
            self._store().add_domain_control(record)
            return record.to_json()

        timeout_s = msg.timeout_s + self.config.decision_timeout_s
        self.open_round(question.digest(), question, conclude, timeout_s)

    @handles(ConfirmDomainControl)
    def confirm_domain_control(self, msg: ConfirmDomainControl) -> list[dict[str, Any]]:
        now = self.clock.time()
        evidence, missing = [], []
        with self.storing("nothing was confirmed", writes=False) as store:
            for wanted in identifiers_of(msg.names):
                record = store.find_domain_control(msg.account, wanted, now)
                if record is None:
                    how = " through dns-01" if wanted.dns01_only else ""
                    missing.append(f"{wanted.name} ({wanted.identifier_type} "
                                   f"{wanted.identifier}{how})")  # fmt: skip
                else:
                    evidence.append({"name": wanted.name, **record.to_json()})
        if missing:
            raise NotApproved(
                f"account {msg.account} has no domain control corroborated by the validators "
                f"for {', '.join(missing)}: validate an authorization for each (ACME) first",
                reasons=["domain_control_missing"],
                names=[m.split(" ", 1)[0] for m in missing],
            )
        return evidence
