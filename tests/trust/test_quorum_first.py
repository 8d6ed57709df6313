"""Quorum first (``trust.quorum_first``, the default): the detector asks a quorum of the
validators, a different one each round, and the others only when those cannot decide
alone (a dissent, a failure) or are slow. With up to f Byzantine validators of every
kind the decisions are still the honest ones, a silent or slow validator asked first
costs a straggler's wait (not the deadline), and a quiet round costs N - quorum checks
less than asking everyone.

The trees are ``consensus.Consensus`` with a FakeClock: ``drive`` moves it
on by the straggler's wait while a round is open, never as far as the deadline.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import outcome
import pytest

from trustchain.actors.detector import (
    Decide,
    Evidence,
    RegisterAsset,
    SpaceChallenge,
    TrustScores,
)
from trustchain.actors.detector.base import STRAGGLER_MIN_S
from trustchain.actors.trust import space
from trustchain.actors.trust.errors import ProofReplayed
from trustchain.actors.trust.votes import Equivocation, check_decision, check_equivocation, quorum
from trustchain.supervisors import Registry

from .byzantine import BEHAVIOURS, HonestValidator
from .conftest import ASSET_ID
from .consensus import (
    DEADLINE_S,
    Consensus,
    approved,
    bad_nonce,
    codes,
    consensus,
    wait_until,
)


def quorum_first(
    trees: list[Consensus], hsm: Registry, path: Path, n: int,
    byzantine: dict[int, type[HonestValidator]] | None = None,
) -> Consensus:  # fmt: skip
    return consensus(trees, hsm, path, n, byzantine, quorum_first=True)


def drive(tree: Consensus, message: Any, advance: bool = True) -> tuple[outcome.Outcome, float]:
    """Send ``message`` to the detector and wait for its answer, moving the fake clock on
    (if ``advance``) by ``STRAGGLER_MIN_S`` at a time once its round has an answer; the
    answer, and how far the clock moved (the wait the round cost, on the detector's
    clock)."""
    answer = tree.tell(message)
    moved, start = 0.0, time.monotonic()
    while not answer.done.wait(0.005):
        assert time.monotonic() - start < 30, "no answer"
        rounds = tree.status()["rounds_open"]
        if advance and rounds and rounds[0]["answered"] >= 1 and moved < DEADLINE_S / 2:
            tree.clock.advance(STRAGGLER_MIN_S)
            moved += STRAGGLER_MIN_S
    return answer.got[0], moved


def register(tree: Consensus, plot: space.Plot, advance: bool = False) -> outcome.Outcome:
    """Register the asset, moving the clock (``drive``) only if ``advance``: a moved clock
    can have a straggler's wait pass while honest validators are still checking, and
    the reserve then asked too."""
    stake = tree.grant()
    got = tree.ask(SpaceChallenge(ASSET_ID, plot.root.hex(), plot.n))
    proof = space.answer_challenge(plot, bytes.fromhex(got["challenge"]), got["k"])
    return drive(tree, RegisterAsset(ASSET_ID, stake, proof.to_json()), advance)[0]


def test_honest_validators_are_asked_a_quorum_at_a_time_each_in_turn(
    trees: list[Consensus], hsm: Registry, tmp_path: Path, plot: space.Plot
) -> None:
    tree = quorum_first(trees, hsm, tmp_path, 4)
    assert register(tree, plot).unwrap()["registered"] is True
    voters: Counter[str] = Counter()
    for i in range(8):
        decision = approved(tree.decide(f"csr-{i}".encode()))  # no clock moved: no waiting
        assert len(decision.votes) == quorum(4, 1) == 3
        voters.update(v.validator for v in decision.votes)
    assert voters == dict.fromkeys(tree.names, 6)  # 24 checks, not 32
    assert tree.status()["rounds_open"] == []


def test_a_request_decided_again_is_put_to_every_validator(
    trees: list[Consensus], hsm: Registry, tmp_path: Path, plot: space.Plot
) -> None:
    """Where an equivocator shows (it signs another vote on a digest it voted on), so
    each validator asked the first time is asked again: everyone is."""
    tree = quorum_first(trees, hsm, tmp_path, 4)
    assert register(tree, plot).unwrap()["registered"] is True

    def scored() -> int:
        return sum(s["agreed"] + s["dissented"] for s in tree.ask(TrustScores()))

    assert scored() == 3  # the registration's quorum
    proofs = tree.prove(b"csr-again")
    assert len(approved(tree.decide(b"csr-again", proofs)).votes) == 3
    assert scored() == 6
    assert isinstance(tree.decide(b"csr-again", proofs).error, ProofReplayed)
    wait_until(lambda: scored() == 10, "the four votes of the second round scored")


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.parametrize("n", [4, 7])
def test_with_up_to_f_byzantine_validators_quorum_first_decides_as_the_honest_would(
    trees: list[Consensus], hsm: Registry, tmp_path: Path, plot: space.Plot, n: int,
    behaviour: str,
) -> None:  # fmt: skip
    f = (n - 1) // 3
    tree = quorum_first(trees, hsm, tmp_path, n, dict.fromkeys(range(1, f + 1),
                                                              BEHAVIOURS[behaviour]))  # fmt: skip
    # A validator that answers, however wrongly, is outvoted at once (its dissent asks the
    # reserve): the clock moves only for those that do not answer.
    advance = behaviour in ("silent", "slow")
    assert register(tree, plot, advance).unwrap()["registered"] is True
    keys = tree.validator_keys()
    waits, proofs = [], []
    for i in range(n):  # each validator is among the first asked in most of these
        csr = f"csr-{i}".encode()
        proofs.append(tree.prove(csr))
        answer, moved = drive(tree, Decide(csr, proofs[i]), advance)
        decision = approved(answer)
        check_decision(decision, keys, f)
        assert len(decision.votes) >= quorum(n, f)
        waits.append(moved)
    assert max(waits) < DEADLINE_S / 2  # a straggler's wait at worst, never the deadline
    other = tree.prove(b"csr-forged")
    forged = dataclasses.replace(other, work_nonce=bad_nonce(other, b"csr-forged", 8))
    assert codes(drive(tree, Decide(b"csr-forged", forged), advance)[0]) == ["work_invalid"]
    if behaviour == "always_reject":  # asked first in some rounds, outvoted, scored
        scores = {s["validator"]: s for s in tree.ask(TrustScores())}
        assert all(scores[name]["dissented"] >= 1 for name in tree.names[:f])
    if behaviour == "equivocating":  # each request again: everyone is asked, and caught
        for i in range(n):
            csr = f"csr-{i}".encode()
            assert isinstance(drive(tree, Decide(csr, proofs[i]), advance)[0].error,
                              ProofReplayed)  # fmt: skip

        # (a second vote may come after the answer: the round goes on for late votes, so an
        # equivocator not yet quarantined when the next request goes out may be asked it
        # and caught on it too: one piece of evidence per digest it equivocated on)
        def caught() -> list[str]:
            return sorted({Equivocation.from_json(e).validator for e in tree.ask(Evidence())})

        wait_until(lambda: caught() == tree.names[:f], "each equivocator caught")
        evidence = [Equivocation.from_json(e) for e in tree.ask(Evidence())]
        assert len({(e.validator, e.digest) for e in evidence}) == len(evidence) <= f * n
        for e in evidence:
            check_equivocation(e, keys[e.validator])
