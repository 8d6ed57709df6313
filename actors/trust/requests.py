"""What a validator checks, and what an asset proves: a certificate request's proofs
(work, time, the asset's signature) and a registration's (stake, space).

A validator never raises on a bad proof: ``check_request`` and ``check_registration``
return the reasons to reject (each ``"<error code>: <why>"``, empty when every proof
holds), which go into its signed vote. The asset's side (``prove_request``) is what
the CLI and TrustChain's own renewal run: the work and the VDF cost real time by
design, so it returns how long each took.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from . import fields, formats, space, stake, vdf, work
from .errors import (
    AssetSignatureInvalid,
    NotRegistered,
    RegistrationStale,
    SpaceProofInvalid,
    TrustError,
)
from .store import Registration

SIGNATURE_BYTES = 64  # Ed25519
MAX_REASONS = 16  # a vote carries at most this many (votes.MAX_REASONS)


@dataclass(frozen=True)
class ConsensusParams:
    """The proofs' parameters, from ``[trust]`` in the config."""

    work_bits: int = 16
    vdf_t: int = 2**16
    modulus: int = vdf.RSA_2048
    min_stake: int = 100
    space: space.SpaceParams = field(default_factory=space.SpaceParams)
    space_blocks: int = 256  # n: the plot an asset commits to
    space_challenges: int = 16  # k: blocks opened per challenge
    epoch_s: int = 86_400

    def epoch(self, now_s: float) -> int:
        return formats.epoch_of(now_s, self.epoch_s)

    def to_json(self) -> dict[str, Any]:
        """What an asset needs to prove (``get_trust_params``); the modulus as decimal."""
        return {
            "work_bits": self.work_bits, "vdf_t": self.vdf_t, "modulus": str(self.modulus),
            "min_stake": self.min_stake, "space_cost": self.space.cost,
            "space_block_size": self.space.block_size, "space_min_blocks": self.space.min_blocks,
            "space_blocks": self.space_blocks, "space_challenges": self.space_challenges,
            "epoch_s": self.epoch_s,
        }  # fmt: skip

    @classmethod
    def from_json(cls, obj: object) -> ConsensusParams:
        names = ("work_bits", "vdf_t", "modulus", "min_stake", "space_cost", "space_block_size",
                 "space_min_blocks", "space_blocks", "space_challenges", "epoch_s")  # fmt: skip
        got = fields.fields(obj, "the consensus's parameters", names, TrustError)
        modulus = got["modulus"]
        if not isinstance(modulus, str) or not modulus.isdigit() or len(modulus) > 2_000:
            raise TrustError("the modulus is a decimal integer")
        sizes = {name: fields.uint(got[name], name, 0, 2**63 - 1, TrustError)
                 for name in names if name != "modulus"}  # fmt: skip
        try:
            plots = space.SpaceParams(
                sizes["space_cost"], sizes["space_block_size"], sizes["space_min_blocks"]
            )
        except ValueError as exc:
            raise TrustError(f"the space parameters do not hold: {exc}") from None
        return cls(
            work_bits=sizes["work_bits"], vdf_t=sizes["vdf_t"], modulus=int(modulus),
            min_stake=sizes["min_stake"], space=plots,
            space_blocks=sizes["space_blocks"], space_challenges=sizes["space_challenges"],
            epoch_s=sizes["epoch_s"],
        )  # fmt: skip


def consensus_params(
    *,
    work_bits: int,
    vdf_t: int,
    vdf_modulus: str,
    min_stake: int,
    space_cost: int,
    space_blocks: int,
    space_challenges: int,
    epoch_s: int,
) -> ConsensusParams:
    """From ``[trust]`` (``TrustConfig``'s fields): an empty modulus is RSA-2048."""
    return ConsensusParams(
        work_bits=work_bits, vdf_t=vdf_t,
        modulus=int(vdf_modulus) if vdf_modulus else vdf.RSA_2048, min_stake=min_stake,
        space=space.SpaceParams(cost=space_cost, min_blocks=space_blocks),
        space_blocks=space_blocks, space_challenges=space_challenges, epoch_s=epoch_s,
    )  # fmt: skip


@dataclass(frozen=True)
class RequestProofs:
    """What a certificate request carries besides its CSR (see ``formats``)."""

    asset_key: bytes
    epoch: int
    work_nonce: int
    vdf_output: int
    vdf_proof: int
    vdf_prime_index: int  # which candidate is the proof's prime (``vdf.py``, "The prime")
    signature: bytes  # Ed25519 by the asset over ASSET_SIGNATURE || digest

    def digest(self, csr_der: bytes) -> bytes:
        return formats.request_digest(csr_der, self.asset_key, self.epoch)

    @property
    def asset(self) -> str:
        return formats.asset_id(self.asset_key)

    def to_json(self, modulus: int) -> dict[str, Any]:
        return {
            "asset": self.asset_key.hex(),
            "epoch": self.epoch,
            "work_nonce": self.work_nonce,
            "vdf_output": vdf.encode_group_element(self.vdf_output, modulus).hex(),
            "vdf_proof": vdf.encode_group_element(self.vdf_proof, modulus).hex(),
            "vdf_prime_index": self.vdf_prime_index,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, obj: object, modulus: int) -> RequestProofs:
        """Strict: untrusted JSON from the control socket or HTTP (``TrustError``s)."""
        names = ("asset", "epoch", "work_nonce", "vdf_output", "vdf_proof", "vdf_prime_index",
                 "signature")  # fmt: skip
        got = fields.fields(obj, "a request's proofs", names, TrustError)
        size = vdf.element_bytes(modulus)
        return cls(
            asset_key=fields.hex_bytes(got["asset"], "asset", formats.ASSET_KEY_BYTES, TrustError),
            epoch=fields.uint(got["epoch"], "epoch", 0, 2**63 - 1, TrustError),
            work_nonce=fields.uint(got["work_nonce"], "work_nonce", 0, work.MAX_NONCE, TrustError),
            vdf_output=vdf.decode_group_element(
                fields.hex_bytes(got["vdf_output"], "vdf_output", size, TrustError), modulus
            ),
            vdf_proof=vdf.decode_group_element(
                fields.hex_bytes(got["vdf_proof"], "vdf_proof", size, TrustError), modulus
            ),
            vdf_prime_index=fields.uint(
                got["vdf_prime_index"], "vdf_prime_index", 0, vdf.PRIME_INDEX_LIMIT - 1, TrustError
            ),
            signature=fields.hex_bytes(got["signature"], "signature", SIGNATURE_BYTES, TrustError),
        )


def asset_key_of(private_key: ed25519.Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes_raw()


def sign_digest(private_key: ed25519.Ed25519PrivateKey, digest: bytes) -> bytes:
    return private_key.sign(formats.ASSET_SIGNATURE + digest)


def prove_request(
    csr_der: bytes,
    private_key: ed25519.Ed25519PrivateKey,
    epoch: int,
    params: ConsensusParams,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[RequestProofs, dict[str, float]]:
    """The asset's side: solve the work, evaluate the VDF, sign; and the seconds each took."""
    asset_key = asset_key_of(private_key)
    digest = formats.request_digest(csr_der, asset_key, epoch)
    took: dict[str, float] = {}
    start = clock()
    nonce = work.solve_work(digest, params.work_bits)
    took["work_s"] = clock() - start
    start = clock()
    output, proof, prime_index = vdf.evaluate(
        vdf.vdf_input(digest, params.modulus), params.vdf_t, params.modulus
    )
    took["time_s"] = clock() - start
    signature = sign_digest(private_key, digest)
    proofs = RequestProofs(asset_key, epoch, nonce, output, proof, prime_index, signature)
    return proofs, took


def _reason(error: TrustError) -> str:
    return f"{error.code}: {error.message}"[:256]


def check_request(
    csr_der: bytes,
    proofs: RequestProofs,
    registration: Registration | None,
    authority_key: ec.EllipticCurvePublicKey | stake.StakeAuthority,
    params: ConsensusParams,
    now_s: float,
) -> list[str]:
    """A validator's own check of one request: why to reject it (empty: approve).

    Every proof is checked even after one fails, so the vote says all that is wrong:
    the request is for the current epoch and its asset is registered for it with a
    stake still valid now; the asset signed the digest; PoWork and PoTime hold for it.
    """
    reasons: list[str] = []
    digest = proofs.digest(csr_der)
    current = params.epoch(now_s)
    if proofs.epoch != current:
        stale = RegistrationStale(f"the request is for epoch {proofs.epoch}, not {current}")
        reasons.append(_reason(stale))
    if registration is None or registration.asset_key != proofs.asset_key:
        reasons.append(_reason(NotRegistered(f"asset {proofs.asset} is not registered")))
    elif registration.epoch != proofs.epoch:
        stale = RegistrationStale(f"asset {proofs.asset} is registered for another epoch")
        reasons.append(_reason(stale))
    else:
        try:
            signed = stake.SignedStake.from_json(registration.stake)
            stake.check_stake(signed, authority_key, proofs.asset_key, int(now_s), params.min_stake)
        except TrustError as exc:
            reasons.append(_reason(exc))
    try:
        key = ed25519.Ed25519PublicKey.from_public_bytes(proofs.asset_key)
        key.verify(proofs.signature, formats.ASSET_SIGNATURE + digest)
    except (InvalidSignature, ValueError):
        bad = AssetSignatureInvalid(
            f"the signature is not asset {proofs.asset}'s over this request"
        )
        reasons.append(_reason(bad))
    for check in (
        lambda: work.check_work(digest, proofs.work_nonce, params.work_bits),
        lambda: vdf.check_time_proof(
            digest,
            proofs.vdf_output,
            proofs.vdf_proof,
            proofs.vdf_prime_index,
            params.vdf_t,
            params.modulus,
        ),
    ):
        try:
            check()
        except TrustError as exc:
            reasons.append(_reason(exc))
    return reasons[:MAX_REASONS]


def registration_digest(
    asset_key: bytes, epoch: int, signed_stake: stake.SignedStake, commitment: bytes, n: int
) -> bytes:
    """What validators vote on when an asset registers for an epoch."""
    return hashlib.sha256(
        formats.REGISTRATION
        + formats.frame(
            asset_key, epoch, signed_stake.record.tbs(), signed_stake.signature, commitment, n
        )
    ).digest()


def check_registration(
    asset_key: bytes,
    epoch: int,
    signed_stake: stake.SignedStake,
    proof: space.SpaceProof,
    challenge: bytes,
    authority_key: ec.EllipticCurvePublicKey | stake.StakeAuthority,
    params: ConsensusParams,
    now_s: float,
) -> list[str]:
    """A validator's own check of a registration: why to reject it (empty: approve)."""
    reasons: list[str] = []
    current = params.epoch(now_s)
    if epoch != current:
        reasons.append(_reason(RegistrationStale(f"epoch {epoch} is not the current {current}")))
    try:
        stake.check_stake(signed_stake, authority_key, asset_key, int(now_s), params.min_stake)
    except TrustError as exc:
        reasons.append(_reason(exc))
    if proof.n < params.space_blocks:
        short = SpaceProofInvalid(f"the plot has {proof.n} blocks, not {params.space_blocks}")
        reasons.append(_reason(short))
    try:
        space.check_space(proof, asset_key, challenge, params.space_challenges, params.space)
    except TrustError as exc:
        reasons.append(_reason(exc))
    return reasons[:MAX_REASONS]
