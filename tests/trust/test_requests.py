"""A validator's checks of a request and of a registration, and the asset's proving:
valid proofs give no reasons; each broken proof gives its own reason code."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trustchain.actors.trust import requests, space, stake
from trustchain.actors.trust.errors import TrustError
from trustchain.actors.trust.store import Registration

PARAMS = requests.ConsensusParams(
    work_bits=8, vdf_t=256, min_stake=10, space=space.SpaceParams(cost=16, min_blocks=16),
    space_blocks=32, space_challenges=4, epoch_s=86_400,
)  # fmt: skip
NOW = 1_800_000_000.0
EPOCH = PARAMS.epoch(NOW)
AUTHORITY = ec.generate_private_key(ec.SECP256R1())
ASSET = ed25519.Ed25519PrivateKey.generate()
ASSET_KEY = requests.asset_key_of(ASSET)
CSR = b"a CSR's DER"


def signed_stake(amount: int = 100, asset_key: bytes = ASSET_KEY) -> stake.SignedStake:
    record = stake.new_stake_record(asset_key, amount, int(NOW), days=30)
    return stake.SignedStake(record, AUTHORITY.sign(record.tbs(), ec.ECDSA(hashes.SHA256())))


def registration(epoch: int = EPOCH, amount: int = 100) -> Registration:
    return Registration(ASSET_KEY, epoch, signed_stake(amount).to_json(), b"\x00" * 32, NOW)


def codes(reasons: list[str]) -> list[str]:
    return [r.split(":", 1)[0] for r in reasons]


def check(proofs: requests.RequestProofs, reg: Registration | None = None, csr: bytes = CSR):
    reg = registration() if reg is None else reg
    return requests.check_request(csr, proofs, reg, AUTHORITY.public_key(), PARAMS, NOW)


@pytest.fixture(scope="module")
def proofs() -> requests.RequestProofs:
    made, took = requests.prove_request(CSR, ASSET, EPOCH, PARAMS)
    assert set(took) == {"work_s", "time_s"}
    return made


def test_valid_proofs_give_no_reason(proofs) -> None:
    assert check(proofs) == []
    again = requests.RequestProofs.from_json(proofs.to_json(PARAMS.modulus), PARAMS.modulus)
    assert again == proofs


def test_each_broken_proof_gives_its_reason(proofs) -> None:
    other_csr = codes(check(proofs, csr=b"another CSR"))  # the work may hold by chance (2^-8)
    assert {"asset_signature_invalid", "time_proof_invalid"} <= set(other_csr)
    bad_sig = dataclasses.replace(proofs, signature=bytes(64))
    assert codes(check(bad_sig)) == ["asset_signature_invalid"]
    bad_vdf = dataclasses.replace(proofs, vdf_output=proofs.vdf_proof)
    assert codes(check(bad_vdf)) == ["time_proof_invalid"]
    assert codes(check(proofs, registration(amount=1))) == ["stake_invalid"]
    assert codes(check(proofs, registration(epoch=EPOCH - 1))) == ["registration_stale"]
    none = requests.check_request(CSR, proofs, None, AUTHORITY.public_key(), PARAMS, NOW)
    assert codes(none) == ["not_registered"]
    later = requests.check_request(
        CSR, proofs, registration(), AUTHORITY.public_key(), PARAMS, NOW + PARAMS.epoch_s
    )
    assert "registration_stale" in codes(later)


def test_json_proofs_are_read_strictly(proofs) -> None:
    good = proofs.to_json(PARAMS.modulus)
    for broken in ({**good, "epoch": -1}, {**good, "asset": "zz"}, {**good, "extra": 1}, [], None,
                   {**good, "vdf_output": "00" * 256}):  # fmt: skip
        with pytest.raises(TrustError):
            requests.RequestProofs.from_json(broken, PARAMS.modulus)


def test_a_registration_is_checked_for_stake_space_and_epoch() -> None:
    plotted = space.plot(ASSET_KEY, PARAMS.space_blocks, PARAMS.space)
    challenge = b"a validator's fresh challenge!!!"
    proof = space.answer_challenge(plotted, challenge, PARAMS.space_challenges)
    ok = requests.check_registration(ASSET_KEY, EPOCH, signed_stake(), proof, challenge,
                                     AUTHORITY.public_key(), PARAMS, NOW)  # fmt: skip
    assert ok == []
    wrong = requests.check_registration(ASSET_KEY, EPOCH + 1, signed_stake(1), proof, b"other" * 7,
                                        AUTHORITY.public_key(), PARAMS, NOW)  # fmt: skip
    assert codes(wrong) == ["registration_stale", "stake_invalid", "space_proof_invalid"]
    digest = requests.registration_digest(ASSET_KEY, EPOCH, signed_stake(), proof.commitment, 32)
    assert len(digest) == 32


def test_the_params_travel_as_json_and_bad_ones_are_refused() -> None:
    assert requests.ConsensusParams.from_json(PARAMS.to_json()) == PARAMS
    for broken in ({**PARAMS.to_json(), "space_cost": 3}, {**PARAMS.to_json(), "modulus": "x"},
                   {**PARAMS.to_json(), "vdf_t": -1}, {}):  # fmt: skip
        with pytest.raises(TrustError):
            requests.ConsensusParams.from_json(broken)
    made = requests.consensus_params(work_bits=8, vdf_t=256, vdf_modulus="", min_stake=1,
                                     space_cost=16, space_blocks=64, space_challenges=4,
                                     epoch_s=60)  # fmt: skip
    assert made.modulus == requests.vdf.RSA_2048 and made.space.min_blocks == 64
