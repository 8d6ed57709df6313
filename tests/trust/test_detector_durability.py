"""What the detector keeps on disk beyond decisions, through the real actors (validators,
the detector under a supervisor, the stake authority's key in SoftHSM): a space
challenge given before a restart of the detector is answered after it, and used up
once; a proof's fingerprint outlives a restart, so a rebound proof is still caught.

The trees are ``consensus.Consensus``: a FakeClock each, small real proofs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from trustchain.actors.detector import (
    GetTrustStatus,
    RegisterAsset,
    RegistrationStatus,
    SpaceChallenge,
    ValidateAssetTrust,
)
from trustchain.actors.trust import space
from trustchain.actors.trust.errors import ProofReplayed, SpaceProofInvalid
from trustchain.actors.trust.store import TrustStore
from trustchain.supervisors import RestartChild

from .byzantine import BEHAVIOURS
from .consensus import ASSET_ID, ASSET_KEY, Consensus, approved, refused


@pytest.fixture
def trees() -> Iterator[list[Consensus]]:
    made: list[Consensus] = []
    yield made
    for tree in made:
        tree.stop()


def restart_detector(tree: Consensus) -> None:
    """A real restart: the detector's supervisor stops it and starts a new one, which
    reads its state from the store as a cold start would."""
    before = tree.registry.lookup(tree.detector).restarts
    tree.registry.ask(f"trust-{tree.uid}", RestartChild(tree.detector))
    assert tree.registry.lookup(tree.detector).restarts == before + 1
    assert tree.registry.lookup(tree.detector).health()["state"] == "running"


def answer(tree: Consensus, plot: space.Plot, got: dict[str, Any]) -> dict[str, Any]:
    return space.answer_challenge(plot, bytes.fromhex(got["challenge"]), got["k"]).to_json()


def test_a_challenge_given_before_a_restart_of_the_detector_is_answered_after_it(
    trees, hsm, tmp_path: Path, plot
) -> None:
    tree = Consensus(hsm, tmp_path, 4)
    trees.append(tree)
    stake = tree.grant()
    got = tree.ask(SpaceChallenge(ASSET_ID, plot.root.hex(), plot.n))
    restart_detector(tree)
    registered = tree.send(RegisterAsset(ASSET_ID, stake, answer(tree, plot, got))).unwrap()
    assert registered["registered"] is True and registered["epoch"] == got["epoch"]
    assert tree.ask(RegistrationStatus(ASSET_ID))["registered"]

    # Used up by the decided registration, for good: after another restart too.
    restart_detector(tree)
    again = refused(tree.send(RegisterAsset(ASSET_ID, stake, answer(tree, plot, got))),
                    SpaceProofInvalid)  # fmt: skip
    assert "no space challenge" in again.message


def test_a_challenge_survives_a_cold_start_of_the_whole_subtree(
    trees, hsm, tmp_path: Path, plot
) -> None:
    tree = Consensus(hsm, tmp_path, 4)
    trees.append(tree)
    stake = tree.grant()
    got = tree.ask(SpaceChallenge(ASSET_ID, plot.root.hex(), plot.n))
    tree.stop()
    trees.remove(tree)
    store = TrustStore(tree.config.database)  # what the new detector will find
    try:
        kept = store.get_challenge(ASSET_KEY, got["epoch"])
        assert kept is not None and kept.challenge.hex() == got["challenge"]
    finally:
        store.close()
    again = Consensus(hsm, tmp_path, 4, uid=tree.uid, clock=tree.clock)
    trees.append(again)
    assert again.send(RegisterAsset(ASSET_ID, stake, answer(tree, plot, got))).unwrap()[
        "registered"
    ]


def test_a_rebound_proof_is_caught_after_a_restart_of_the_detector(
    trees, hsm, tmp_path: Path, plot
) -> None:
    # More than f validators approve whatever they are asked: only the replay guard
    # stands between a proof made for one request and its reuse for another.
    liars = dict.fromkeys((1, 2, 3), BEHAVIOURS["always_accept"])
    tree = Consensus(hsm, tmp_path, 4, liars)
    trees.append(tree)
    assert tree.register(plot).unwrap()["registered"]
    genuine = tree.prove(b"the first request")
    approved(tree.decide(b"the first request", genuine))
    restart_detector(tree)

    # Another request carrying the first one's VDF output and proof (the time proof
    # is bound to the first digest): the liars approve it, the guard still knows it.
    other = tree.prove(b"another request")
    rebound = dataclasses.replace(other, vdf_output=genuine.vdf_output,
                                  vdf_proof=genuine.vdf_proof)  # fmt: skip
    error = refused(tree.decide(b"another request", rebound), ProofReplayed)
    assert error.details["seen"] == "rebound" and error.details["asset"] == ASSET_ID
    assert tree.ask(GetTrustStatus())["alerts"]["proof_rebound"] == 1
    assert tree.ask(ValidateAssetTrust(ASSET_ID))["factors"]["rebound"] == 1.0
    approved(tree.decide(b"a third request"))  # fresh proofs go on being approved
