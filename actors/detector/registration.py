"""The detector's registration part: stakes granted in the HSM, space challenges, and
assets registered by the validators' vote (once per epoch).

1. ``grant_stake`` (the operator's act): a stake record signed by the stake authority's
   key in the HSM (``SignData``, a request), answered with the signed record's JSON.
2. ``space_challenge``: the asset commits to its plot (commitment, n) and gets a fresh
   32-octet challenge, kept per (asset, epoch) with that commitment in the trust store
   (written durably before the challenge is answered, so that a restart of the
   detector in between loses nothing): committed before the challenge is drawn, as
   ``space.py`` requires. Challenges of past epochs are dropped, and at most
   ``MAX_CHALLENGES`` are kept (the oldest given dropped first).
3. ``register_asset``: the signed stake and the space proof answering the challenge,
   read strictly; the proof must open the plot committed to. The validators vote on
   ``requests.registration_digest`` (each checks stake and space itself); with a quorum
   approving, the registration is stored for the epoch. A decided registration uses
   its challenge up (its openings are public now), in the decision's transaction; a
   refusal for want of a quorum keeps it for a retry.

A validator keeps its vote on a registration digest (asset, epoch, stake, commitment,
n): after a refusal, the asset registers again with another stake record or plot.
A registration carries no signature of the asset (anyone holding its stake record and
plot can register it): a refused one raises an alert but is not held against the
asset's trust; an approved one counts as a success.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import outcome
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.detector.base import DetectorBase
from trustchain.actors.detector.messages import (
    AssetRecords,
    GrantStake,
    PublishAssetRecord,
    RegisterAsset,
    RegistrationStatus,
    SpaceChallenge,
)
from trustchain.actors.hsm.messages import SignData
from trustchain.actors.trust import fields, formats
from trustchain.actors.trust.errors import (
    AssetRecordInvalid,
    NotRegistered,
    SpaceProofInvalid,
    StakeInvalid,
)
from trustchain.actors.trust.records import check_record
from trustchain.actors.trust.requests import registration_digest
from trustchain.actors.trust.rounds import asset_factors
from trustchain.actors.trust.scores import REBOUND, REPLAYED, ReplayGuard, asset_trust
from trustchain.actors.trust.space import HASH_BYTES, SpaceProof
from trustchain.actors.trust.stake import SignedStake, new_stake_record
from trustchain.actors.trust.store import PendingChallenge, Registration
from trustchain.actors.trust.votes import Decision
from trustchain.actors.validator.messages import CheckRegistration
from trustchain.supervisors import InvalidRequest, handles

CHALLENGE_BYTES = 32
MAX_CHALLENGES = 65_536  # pending challenges kept; past it the oldest is dropped
QUARANTINE_AT = 0.5  # replayed + rebound proofs in an asset's history: out of the zone
_ASSET_ID = re.compile(f"[0-9a-f]{{{2 * formats.ASSET_KEY_BYTES}}}")


def asset_key_of(asset: str) -> bytes:
    """An asset's raw key from its id (lower-case hex of 32 octets)."""
    if not _ASSET_ID.fullmatch(asset):
        raise InvalidRequest(
            f"an asset is named by the lower-case hex of its 32-octet Ed25519 key, not {asset!r}"
        )
    return bytes.fromhex(asset)


class RegistrationPart(DetectorBase):
    def setup(self) -> None:
        super().setup()
        # The replay guard remembers in the store: across restarts, and in the
        # transaction of the decision that approved the proof.
        self.replays = ReplayGuard(memory=self._store().fingerprints)

    def epoch_now(self) -> int:
        return self.params.epoch(self.clock.time())

    # 1. Stakes ------------------------------------------------------------------------

    @handles(GrantStake)
    def grant_stake(self, msg: GrantStake) -> None:
        record = new_stake_record(asset_key_of(msg.asset), msg.amount, int(self.clock.time()),
                                  msg.days)  # fmt: skip
        reply = self.defer()

        def signed(result: outcome.Outcome) -> None:
            if isinstance(result, outcome.Error):
                reply(result)
                return
            signature = result.unwrap()
            assert self.authority_key is not None
            try:
                self.authority_key.verify(signature, record.tbs(), ec.ECDSA(hashes.SHA256()))
            except InvalidSignature:
                reply(outcome.Error(StakeInvalid(
                    f"the HSM key {self.config.stake_authority_key!r} is not the stake "
                    "authority's key the detector started with; restart the detector"
                )))  # fmt: skip
                return
            reply(outcome.Value(SignedStake(record, signature).to_json()))

        self.request(self.hsm, SignData(self.config.stake_authority_key, record.tbs()), signed)

    # 2. Challenges --------------------------------------------------------------------

    @handles(SpaceChallenge)
    def space_challenge(self, msg: SpaceChallenge) -> dict[str, Any]:
        asset_key = asset_key_of(msg.asset)
        commitment = fields.hex_bytes(msg.commitment, "commitment", HASH_BYTES, SpaceProofInvalid)
        if msg.n < self.params.space_blocks:
            raise SpaceProofInvalid(
                f"a plot of {msg.n} blocks is too small: plot {self.params.space_blocks} blocks "
                "or more (get_trust_params)",
                n=msg.n,
                space_blocks=self.params.space_blocks,
            )
        epoch = self.epoch_now()
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        with self.storing("no challenge was given") as store:  # durable before it is given
            store.put_challenge(PendingChallenge(asset_key, epoch, challenge, commitment, msg.n),
                                MAX_CHALLENGES)  # fmt: skip
        return {
            "asset": msg.asset,
            "epoch": epoch,
            "challenge": challenge.hex(),
            "commitment": commitment.hex(),
            "n": msg.n,
            "k": self.params.space_challenges,
        }

    # 3. Registration ------------------------------------------------------------------

    @handles(RegisterAsset)
    def register_asset(self, msg: RegisterAsset) -> None:
        asset_key = asset_key_of(msg.asset)
        epoch = self.epoch_now()
        with self.storing("nothing was registered", writes=False) as store:
            pending = store.get_challenge(asset_key, epoch)
        if pending is None:
            raise SpaceProofInvalid(
                f"asset {msg.asset} has no space challenge for epoch {epoch}: ask for one "
                "(space_challenge) and answer it",
                asset=msg.asset,
                epoch=epoch,
            )
        signed = SignedStake.from_json(msg.stake)
        proof = SpaceProof.from_json(msg.space_proof)
        if (proof.commitment, proof.n) != (pending.commitment, pending.n):
            raise SpaceProofInvalid(
                "the space proof opens another plot than the one committed to before the "
                f"challenge (commitment {pending.commitment.hex()[:16]}..., n = {pending.n})"
            )
        digest = registration_digest(asset_key, epoch, signed, proof.commitment, proof.n)
        question = CheckRegistration(asset_key, epoch, signed, proof, pending.challenge,
                                     self.authority_spki)  # fmt: skip

        def conclude(decision: Decision, first: bool) -> dict[str, Any]:
            # (in the decision's transaction: base._decided)
            self._store().use_challenge(pending)  # used up, either way (unless replaced)
            factors = asset_factors(decision, self.f)
            self.alert_failures(msg.asset, decision)
            if decision.outcome != "approve":  # anyone may register any asset: not its doing
                raise self.not_approved(decision, f"the registration of asset {msg.asset}")
            registration = Registration(asset_key, epoch, signed.to_json(), proof.commitment,
                                        self.clock.time())  # fmt: skip
            self._store().add_registration(registration)
            self.record_asset(msg.asset, factors)
            return {"asset": msg.asset, "epoch": epoch, "registered": True,
                    "votes": len(decision.votes)}  # fmt: skip

        self.open_round(digest, question, conclude)

    # Where assets are (the resolver's zone) ---------------------------------------------

    @handles(PublishAssetRecord)
    def publish_asset_record(self, msg: PublishAssetRecord) -> dict[str, Any]:
        epoch = self.epoch_now()
        asset_key = asset_key_of(msg.asset)
        with self.storing("nothing was published", writes=False) as store:
            store.get_registration(asset_key, epoch)  # NotRegistered, said as it is
        signature = fields.hex_bytes(msg.signature, "signature", 64, AssetRecordInvalid)
        record = check_record(asset_key, epoch, msg.name, msg.addresses, signature)
        with self.storing("nothing was published") as store:
            store.put_asset_record(record)
        return {"asset": msg.asset, "epoch": epoch, "name": record.name,
                "addresses": list(record.addresses)}  # fmt: skip

    @handles(AssetRecords)
    def asset_records(self, msg: AssetRecords) -> list[dict[str, Any]]:
        now = self.clock.time()
        with self.storing(writes=False) as store:
            records = store.asset_records(self.epoch_now())
            trusts = {r.asset: asset_trust(store.get_asset_history(r.asset), now)
                      for r in records}  # fmt: skip
        out = []
        for record in records:
            trust = trusts[record.asset]
            misused = trust.factors.get(REPLAYED, 0.0) + trust.factors.get(REBOUND, 0.0)
            out.append({"asset": record.asset, "name": record.name,
                        "addresses": list(record.addresses), "score": trust.score,
                        "quarantined": misused >= QUARANTINE_AT})  # fmt: skip
        return out

    @handles(RegistrationStatus)
    def registration_status(self, msg: RegistrationStatus) -> dict[str, Any]:
        epoch = self.epoch_now()
        asset_key = asset_key_of(msg.asset)
        try:
            with self.storing(writes=False) as store:
                registration = store.get_registration(asset_key, epoch)
        except NotRegistered:
            return {"asset": msg.asset, "epoch": epoch, "registered": False}
        return {
            "asset": msg.asset,
            "epoch": epoch,
            "registered": True,
            "registered_at": registration.registered_at_s,
            "until": (epoch + 1) * self.params.epoch_s,
            "stake_expires_at": registration.stake["record"]["expires_at"],
        }
