"""ValidatorActor alone (no HSM: the stake authority is a key in memory): its key file,
its signed votes on requests and registrations, and the same vote when asked again."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from trustchain.actors.trust import requests, space, stake
from trustchain.actors.trust.errors import AlreadyVoted, TrustError
from trustchain.actors.trust.params import consensus_params
from trustchain.actors.trust.store import Registration
from trustchain.actors.trust.votes import Vote, check_vote
from trustchain.actors.validator import (
    CheckRegistration,
    CheckRequest,
    GetValidatorKey,
    ValidatorActor,
)
from trustchain.actors.validator import actor as validator_actor
from trustchain.actors.validator.core import load_or_create_key
from trustchain.config import TrustConfig
from trustchain.supervisors import (
    ActorCrashed,
    ActorUnavailable,
    ChildSpec,
    FakeClock,
    Registry,
    start_root,
)

AUTHORITY = ec.generate_private_key(ec.SECP256R1())
AUTHORITY_SPKI = AUTHORITY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
)
ASSET = ed25519.Ed25519PrivateKey.generate()
ASSET_KEY = requests.asset_key_of(ASSET)
CSR = b"a CSR's DER"


def small_config(directory: Path) -> TrustConfig:
    return TrustConfig(enabled=True, work_bits=8, vdf_t=256, min_stake=10, space_blocks=32,
                       space_cost=16, space_challenges=4, database=directory / "trust.sqlite3",
                       key_dir=directory / "validators")  # fmt: skip


class Tree:
    def __init__(self, directory: Path) -> None:
        self.config = small_config(directory)
        self.params = consensus_params(self.config)
        self.clock = FakeClock()
        self.registry = Registry()
        self.root = start_root(self.registry, "root", [
            ChildSpec("validator-1", lambda ctx: ValidatorActor.start(ctx, self.config,
                                                                      "validator-1")),
        ], clock=self.clock)  # fmt: skip
        self.epoch = self.params.epoch(self.clock.time())

    def public_key(self) -> ed25519.Ed25519PublicKey:
        answer = self.registry.ask("validator-1", GetValidatorKey())
        assert answer["validator"] == "validator-1"
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(answer["public_key"]))

    def signed_stake(self, amount: int = 100) -> stake.SignedStake:
        record = stake.new_stake_record(ASSET_KEY, amount, int(self.clock.time()), days=30)
        return stake.SignedStake(record, AUTHORITY.sign(record.tbs(), ec.ECDSA(hashes.SHA256())))

    def registration(self) -> Registration:
        return Registration(ASSET_KEY, self.epoch, self.signed_stake().to_json(), bytes(32),
                            self.clock.time())  # fmt: skip

    def check(self, proofs: requests.RequestProofs, registration: Registration | None) -> Vote:
        return self.check_csr(CSR, proofs, registration)

    def check_csr(
        self, csr: bytes, proofs: requests.RequestProofs, registration: Registration | None
    ) -> Vote:
        message = CheckRequest(csr, proofs, registration, AUTHORITY_SPKI)
        vote = Vote.from_bytes(self.registry.ask("validator-1", message))
        check_vote(vote, self.public_key())
        return vote


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    made = Tree(tmp_path)
    yield made
    made.root.stop(block=True, timeout=10)


def test_the_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "validator-1.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = load_or_create_key(path)
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    raw = tmp_path / "keys" / "raw.key"
    raw.write_bytes(key.private_bytes_raw())
    os.chmod(raw, 0o600)
    assert load_or_create_key(raw).private_bytes_raw() == key.private_bytes_raw()
    os.chmod(raw, 0o640)
    with pytest.raises(TrustError, match="chmod 600"):
        load_or_create_key(raw)
    junk = tmp_path / "keys" / "junk.key"
    junk.write_bytes(b"not a key")
    os.chmod(junk, 0o600)
    with pytest.raises(TrustError, match="neither"):
        load_or_create_key(junk)


def test_a_restarted_validator_keeps_its_key(tmp_path: Path) -> None:
    first = Tree(tmp_path)
    key = first.public_key().public_bytes_raw()
    first.root.stop(block=True, timeout=10)
    second = Tree(tmp_path)
    try:
        assert second.public_key().public_bytes_raw() == key
    finally:
        second.root.stop(block=True, timeout=10)


def test_valid_proofs_get_a_signed_approval_and_broken_ones_a_reasoned_rejection(tree) -> None:
    proofs, _ = requests.prove_request(CSR, ASSET, tree.epoch, tree.params)
    vote = tree.check(proofs, tree.registration())
    assert (vote.verdict, vote.reasons, vote.digest) == ("approve", (), proofs.digest(CSR))
    other, _ = requests.prove_request(b"another CSR", ASSET, tree.epoch, tree.params)
    forged = dataclasses.replace(other, vdf_output=other.vdf_proof)
    rejected = tree.check_csr(b"another CSR", forged, tree.registration())
    assert rejected.verdict == "reject"
    assert [r.split(":")[0] for r in rejected.reasons] == ["time_proof_invalid"]
    third, _ = requests.prove_request(b"a third CSR", ASSET, tree.epoch, tree.params)
    unregistered = tree.check_csr(b"a third CSR", third, None)
    assert unregistered.reasons[0].startswith("not_registered")


def test_asked_again_a_validator_gives_the_vote_it_gave_or_none(tree) -> None:
    """The same question gets the same vote; other proofs for a digest it approved get
    no vote (``already_voted``), never a second, different one (equivocation)."""
    proofs, _ = requests.prove_request(CSR, ASSET, tree.epoch, tree.params)
    registration = tree.registration()
    first = tree.check(proofs, registration)
    assert tree.check(proofs, registration) == first
    forged = dataclasses.replace(proofs, vdf_output=proofs.vdf_proof)
    with pytest.raises(AlreadyVoted):
        tree.check(forged, registration)
    with pytest.raises(AlreadyVoted):
        tree.check(proofs, None)  # the world moved on: the registration is gone
    resigned = tree.registration()  # its stake signed afresh: another question, same verdict
    assert resigned.stake != registration.stake
    assert tree.check(proofs, resigned) == first


def test_a_registration_gets_a_vote_over_its_digest(tree) -> None:
    plot = space.plot(ASSET_KEY, tree.params.space_blocks, tree.params.space)
    challenge = os.urandom(32)
    proof = space.answer_challenge(plot, challenge, tree.params.space_challenges)
    signed = tree.signed_stake()
    message = CheckRegistration(ASSET_KEY, tree.epoch, signed, proof, challenge, AUTHORITY_SPKI)
    vote = Vote.from_bytes(tree.registry.ask("validator-1", message))
    digest = requests.registration_digest(ASSET_KEY, tree.epoch, signed, proof.commitment, proof.n)
    assert (vote.verdict, vote.digest) == ("approve", digest)
    small = tree.signed_stake(amount=1)
    message = CheckRegistration(ASSET_KEY, tree.epoch, small, proof, challenge, AUTHORITY_SPKI)
    vote = Vote.from_bytes(tree.registry.ask("validator-1", message))
    assert vote.verdict == "reject" and vote.reasons[0].startswith("stake_invalid")


def test_a_restarted_validator_repeats_its_votes_and_signs_no_other(tmp_path: Path) -> None:
    """Its votes are on disk: after a restart the same question gets the same vote, and
    the world having moved on (no registration now) gets already_voted, not a new vote."""
    first = Tree(tmp_path)
    proofs, _ = requests.prove_request(CSR, ASSET, first.epoch, first.params)
    registration = first.registration()
    vote = first.check(proofs, registration)
    first.root.stop(block=True, timeout=10)
    second = Tree(tmp_path)
    try:
        assert second.check(proofs, registration) == vote
        with pytest.raises(AlreadyVoted):
            second.check(proofs, None)
    finally:
        second.root.stop(block=True, timeout=10)


def test_a_hung_process_is_replaced_at_the_next_question_and_questions_in_flight_answered(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Questions go to the validator's process without waiting (pipelined); one it has
    not answered in time when the next comes means it hangs: the actor crashes, every
    question in flight gets an answer (actor_unavailable), and its supervisor restarts it
    with a new process, which votes again."""
    monkeypatch.setattr(validator_actor, "CALL_TIMEOUT_S", 0.2)
    proofs, _ = requests.prove_request(CSR, ASSET, tree.epoch, tree.params)
    registration = tree.registration()
    vote = tree.check(proofs, registration)  # a working process first
    pid = tree.registry.cell("validator-1").ref.proxy().pid.get()  # type: ignore[union-attr]
    os.kill(pid, signal.SIGSTOP)  # hung: alive, never answering
    try:
        message = CheckRequest(CSR, proofs, registration, AUTHORITY_SPKI)
        stuck: list[Any] = []
        tree.registry.tell("validator-1", message, stuck.append)
        time.sleep(0.5)  # past CALL_TIMEOUT_S in real time: the process is a real one
        with pytest.raises(ActorCrashed, match="hung"):
            tree.registry.ask("validator-1", message)
        deadline = time.monotonic() + 30
        while not stuck:
            assert time.monotonic() < deadline, "the question in flight was never answered"
            time.sleep(0.01)
        assert isinstance(stuck[0].error, ActorUnavailable)
        assert_gone(pid)  # ended at once, not left for a close that would wait on it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:  # restarted with a new process, which gives the vote on disk
        try:
            assert tree.check(proofs, registration) == vote
            break
        except Exception:
            assert time.monotonic() < deadline, "the validator never came back"
            time.sleep(0.05)
    assert tree.registry.cell("validator-1").restarts == 1


def test_a_process_killed_while_idle_is_replaced_at_once_not_at_the_next_question(
    tree: Tree,
) -> None:
    """The pipe's reader finds a dead process as it dies: the actor crashes and is
    restarted with a new process before anyone asks it anything (status never shows a
    validator running without its process), and the new one gives the vote on disk."""
    proofs, _ = requests.prove_request(CSR, ASSET, tree.epoch, tree.params)
    registration = tree.registration()
    vote = tree.check(proofs, registration)
    cell = tree.registry.cell("validator-1")
    pid = cell.ref.proxy().pid.get()  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    assert_gone(pid)
    deadline = time.monotonic() + 30  # a bound on a failure, not a timing assertion
    while cell.restarts < 1 or cell.health()["state"] != "running":
        assert time.monotonic() < deadline, "the dead process was not noticed without a question"
        time.sleep(0.01)
    assert cell.health()["last_failure"]["type"] == "ChildLost"
    assert cell.ref.proxy().pid.get() not in (None, pid)  # type: ignore[union-attr]
    assert tree.check(proofs, registration) == vote
    assert cell.restarts == 1


def assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 10  # a bound on a failure, not a timing assertion
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        assert time.monotonic() < deadline, f"process {pid} is still there"
        time.sleep(0.01)
