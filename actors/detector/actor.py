"""ByzantineDetectorActor: decides with the validators' signed votes, keeps their trust
scores and the evidence of their misbehaviour, and the assets' registrations and trust.

Theory of operation (DESIGN.md, "Four-proof consensus"). N validators tolerate
f = (N - 1) // 3 Byzantine ones; a verdict needs ``votes.quorum(N, f)`` matching
signed votes (2f+1 when N = 3f+1), so two quorums share an honest validator and no two
contradictory decisions can both be backed by signatures.

* Start (never waiting): the store (``trust.database``), the stake authority's key in
  the HSM (``EnsureKey``), then every validator's key (``get_validator_key``), each a
  request; ready once all are known. A validator not running yet is asked again with
  backoff; meanwhile the detector is ``starting`` and later siblings wait.
* A decision (``decide``, the issuer's; ``register_asset``): the question goes to the
  validators but the quarantined ones -- also to those below ``min_trust_score``, whose
  votes do not count but are scored, so that a validator can earn its way back (the
  issue: "scores recover slowly with good behaviour"). With ``trust.quorum_first``
  (the default) it goes first to a quorum of the counted ones, a different quorum each
  round (``base._first_asked``), and to the others only when those cannot decide alone
  (one dissents or gives no vote) or have not all answered within as long again as
  the round's first vote took (``base.STRAGGLER_MIN_S`` at least): all being well, a
  question costs the quorum's checks, not N (a quarter less CPU at N = 4), and a
  faulty validator costs a dissent's or a straggler's wait. Safety is the quorum's
  whoever was asked; a validator asked less often is scored less often, and the
  rounds rotate so that each is asked in most. A digest some validator has voted on
  already (the same request again: where an equivocator shows) goes to everyone.
  Votes are taken as they come
  (continuations); the caller is answered as soon as the votes so far make a quorum:
  the ``Decision`` (its votes are the evidence) when it approves, ``not_approved``
  with the reasons f+1 of the quorum agree on when it rejects. ``quorum_not_reached``
  as soon as no quorum can be made any more (the votes split, validators failed), or
  when ``trust.decision_timeout_s`` passes first (the detector's clock: tests drive
  it). Nothing is decided wrongly for want of votes: a refusal decides nothing.
* Every vote that comes in, before or after the answer (a slow validator's), goes to
  the vote log: two different validly signed votes of one validator on one digest,
  in one round or in two rounds on the same digest, are equivocation: the evidence
  (both votes) is stored with the validator's quarantine, in one transaction, and its
  votes never count again. Votes are scored against the outcome when decided and as
  they come late (for ``LATE_VOTES_FOR`` deadlines): against it loses trust, with it
  recovers a little (``scores.ValidatorScores``).
* The decision is stored with the score changes it caused; the asset's history gets a
  success or the failures f+1 rejecting validators agree on (``rounds.asset_factors``);
  an approved request's VDF output goes through the replay guard (the same proof
  again: ``replayed``; with another digest or asset: ``rebound``), and a digest the
  store holds a decision on was decided before: either way the caller gets
  ``proof_replayed``, not the decision (its proofs are used up). The round is still
  run: the same request decided twice is where an equivocating validator shows. The
  replay guard keeps its fingerprints in the store, written in the transaction of the
  decision that approved the proof, so a restart forgets neither.
* Every detection is an alert: a WARNING log line whose ``event`` is ``trust.<kind>``
  (``base.ALERT_KINDS``), a counter in ``get_trust_status`` (which ``/metrics`` can
  show), and the last alert.
* A fault of the store (a full disk, an I/O error, a read-only file) is a fault of the
  environment, not a bug (``faults.py``): the request that needed it gets
  ``trust_store_unavailable`` at once with nothing changed (a decision and all it
  causes are one transaction: ``TrustStore.batch``), the fault ``trust_store`` shows
  in status and ``/ready``, and a backed-off probe (or the next write that succeeds)
  clears it once the disk takes writes again, with no restart.

Durable (SQLite, ``trust.database``; survives restarts): registrations, validator
scores and quarantines, equivocation evidence, decisions, asset histories, pending
space challenges and the replay guard's fingerprints (current and previous epoch).
In memory: rounds in flight, the vote log (current and previous epoch) and the alert
counters.

Registration (stakes, challenges, ``register_asset``) is ``registration.py``; ACME
challenges and the issuer's gate for ACME orders (domain control corroborated by the
quorum) are ``challenges.py``; rounds, scoring, evidence and alerts are ``base.py``;
the group commit ``grouping.py``; the store's faults ``faults.py``; the bookkeeping
itself is sans-IO, in ``trustchain.actors.trust.rounds``.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization

from trustchain.actors.detector.base import (
    ALERT_KINDS,
    PROOF_REBOUND,
    PROOF_REPLAYED,
    UPSTREAM_DISAGREED,
)
from trustchain.actors.detector.challenges import ChallengePart
from trustchain.actors.detector.messages import (
    Decide,
    Evidence,
    GetTrustParams,
    GetTrustStatus,
    TrustScores,
    UpstreamDisagreed,
    ValidateAssetTrust,
)
from trustchain.actors.detector.registration import asset_key_of
from trustchain.actors.trust import vdf
from trustchain.actors.trust.errors import NotRegistered, ProofReplayed, RegistrationStale
from trustchain.actors.trust.requests import RequestProofs
from trustchain.actors.trust.rounds import asset_factors
from trustchain.actors.trust.scores import REBOUND, REPLAYED, asset_trust, proof_fingerprint
from trustchain.actors.trust.votes import Decision
from trustchain.actors.validator.messages import CheckRequest
from trustchain.supervisors import TrustChainError, handles


class ByzantineDetectorActor(ChallengePart):
    # Decisions --------------------------------------------------------------------------

    @handles(Decide)
    def decide(self, msg: Decide) -> None:
        proofs = msg.proofs
        digest = proofs.digest(msg.csr_der)
        try:
            with self.storing("nothing was decided", writes=False) as store:
                registration = store.get_registration(proofs.asset_key, proofs.epoch)
        except NotRegistered:
            registration = None  # each validator finds that out and says so in its vote
        question = CheckRequest(msg.csr_der, proofs, registration, self.authority_spki)

        def conclude(decision: Decision, first: bool) -> Decision:
            return self._conclude_request(proofs, decision, first)

        self.open_round(digest, question, conclude)

    def _conclude_request(self, proofs: RequestProofs, decision: Decision, first: bool) -> Decision:
        """The asset's history (a success, agreed failures, a replay), then the answer: the
        decision if it approves a request never approved before; else the refusal."""
        factors = asset_factors(decision, self.f)
        seen = "new"
        if decision.outcome == "approve":
            seen = self._seen(proofs, decision.digest)
            if seen == "new" and not first:
                seen = "replayed"  # approved before (the store says so, across restarts)
            if seen != "new":  # not a success: the same proofs again
                factors = [REPLAYED if seen == "replayed" else REBOUND]
        self.record_asset(proofs.asset, factors)
        self.alert_failures(proofs.asset, decision)
        what = f"request {decision.digest.hex()[:16]}..."
        if decision.outcome != "approve":
            raise self.not_approved(decision, what)
        if seen != "new":
            kind = PROOF_REPLAYED if seen == "replayed" else PROOF_REBOUND
            text = (f"asset {proofs.asset} presented proofs already used ({seen}) for {what}: "
                    "refused; make a new request (a new CSR) with fresh proofs")  # fmt: skip
            self.alert(kind, text, asset=proofs.asset)
            raise ProofReplayed(text, seen=seen, asset=proofs.asset)
        return decision

    def _seen(self, proofs: RequestProofs, digest: bytes) -> str:
        output = vdf.encode_group_element(proofs.vdf_output, self.params.modulus)
        fingerprint = proof_fingerprint("time", output)
        try:
            return self.replays.check(fingerprint, digest, proofs.asset, proofs.epoch)
        except RegistrationStale:
            return "new"  # older than the epochs the guard keeps: the validators judged it

    # What an asset needs, and what anyone may ask -----------------------------------------

    @handles(GetTrustParams)
    def get_trust_params(self, msg: GetTrustParams) -> dict[str, Any]:
        """What an asset needs to prove (``params``: ``ConsensusParams.to_json``), the
        epoch now, the stake authority's public key (PEM) and the quorum."""
        assert self.authority_key is not None
        pem = self.authority_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "params": self.params.to_json(),
            "epoch": self.epoch_now(),
            "authority_key": pem.decode("ascii"),
            "validators": len(self.validator_names),
            "f": self.f,
            "quorum": self.quorum,
        }

    @handles(ValidateAssetTrust)
    def validate_asset_trust(self, msg: ValidateAssetTrust) -> dict[str, Any]:
        asset_key_of(msg.asset)  # a well-formed id, or invalid_request
        with self.storing(writes=False) as store:
            history = store.get_asset_history(msg.asset)
        trust = asset_trust(history, self.clock.time())
        return {"asset": msg.asset, "score": trust.score, "factors": trust.factors}

    @handles(TrustScores)
    def trust_scores(self, msg: TrustScores) -> list[dict[str, Any]]:
        ignored = self.ignored()
        validators = sorted({*self.keys, *(s.validator for s in self.scores.all())})
        return [{**self.scores.get(v).to_json(), "ignored": v in ignored} for v in validators]

    @handles(Evidence)
    def evidence(self, msg: Evidence) -> list[dict[str, Any]]:
        with self.storing(writes=False) as store:
            return [e.to_json() for e in store.equivocations()]

    @handles(UpstreamDisagreed)
    def upstream_disagreed(self, msg: UpstreamDisagreed) -> int:
        """The resolver's report of an upstream that answered otherwise than the quorum:
        a fault of that upstream, counted on disk and alerted."""
        with self.storing("the report was not kept") as store:
            count = store.add_upstream_fault(msg.upstream, msg.question, self.clock.time())
        self.alert(UPSTREAM_DISAGREED,
                   f"upstream {msg.upstream[:200]} answered {msg.question[:200]} with "
                   f"{msg.theirs[:200]}; the quorum of upstreams said {msg.accepted[:200]} "
                   f"({count} disagreements so far)", upstream=msg.upstream[:200])  # fmt: skip
        return count

    @handles(GetTrustStatus)
    def get_trust_status(self, msg: GetTrustStatus) -> dict[str, Any]:
        total = sum(self.alerts.values())
        return {
            "status": "alert" if total else "ok",
            "validators": len(self.validator_names),
            "f": self.f,
            "quorum": self.quorum,
            "ignored": sorted(self.ignored()),
            "quarantined": sorted(self.quarantined()),
            "decisions": dict(self.outcomes),
            "rounds_open": self.rounds_open(),  # each: digest, asked, answered
            "commits": dict(self.commits),  # group commits and the decisions they held
            "upstream_faults": self._upstream_faults(),
            "alerts": {kind: self.alerts[kind] for kind in ALERT_KINDS},
            "alerts_total": total,
            "last_alert": self.last_alert,
        }

    def _upstream_faults(self) -> dict[str, Any]:
        try:
            with self.storing(writes=False) as store:
                return store.upstream_faults()
        except TrustChainError:  # the store's fault is shown already; status still answers
            return {}
