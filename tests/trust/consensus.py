"""The consensus tests' tree: N validators (some Byzantine, ``byzantine.py``) and a
detector under a root of their own, on a FakeClock, with small real proofs (work 8
bits, VDF t = 256 in RSA-2048, 32 plotted blocks of scrypt N = 16, 4 opened); and the
helpers the tests share to drive it and read its answers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import outcome
from cryptography.hazmat.primitives.asymmetric import ed25519

from trustchain.actors.detector import (
    ByzantineDetectorActor,
    Decide,
    GetTrustStatus,
    GrantStake,
    RegisterAsset,
    SpaceChallenge,
)
from trustchain.actors.trust import requests, space, work
from trustchain.actors.trust.errors import NotApproved
from trustchain.actors.trust.params import consensus_params
from trustchain.actors.trust.votes import Decision
from trustchain.actors.validator import GetValidatorKey
from trustchain.config import TrustConfig
from trustchain.supervisors import (
    ChildSpec,
    FakeClock,
    Registry,
    TrustChainError,
    start_root,
)

from .byzantine import (
    HonestValidator,
    Misbehave,
)
from .conftest import ASSET as ASSET
from .conftest import ASSET_ID as ASSET_ID
from .conftest import ASSET_KEY as ASSET_KEY

DEADLINE_S = 2.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds (what the actors' threads do meanwhile)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.002)


def small_config(
    directory: Path, n: int, label: str, epoch_s: int, quorum_first: bool = False
) -> TrustConfig:
    """Small proofs. Every validator is asked every question unless ``quorum_first``:
    most consensus tests are about what each validator's vote does (scores, evidence,
    late votes); asking a quorum first has tests of its own (test_quorum_first.py, and
    test_consensus_actors.py's more than f liars)."""
    return TrustConfig(enabled=True, validators=n, epoch_s=epoch_s, work_bits=8, vdf_t=256,
                       min_stake=10, stake_authority_key=label, space_blocks=32, space_cost=16,
                       space_challenges=4, decision_timeout_s=DEADLINE_S,
                       quorum_first=quorum_first,
                       database=directory / "trust.sqlite3",
                       key_dir=directory / "validators")  # fmt: skip


class Answer:
    """The reply to a message told to the detector: ``got`` once ``done`` is set."""

    def __init__(self) -> None:
        self.got: list[outcome.Outcome] = []
        self.done = threading.Event()

    def __call__(self, result: outcome.Outcome) -> None:
        self.got.append(result)
        self.done.set()


class Consensus:
    """N validators (some Byzantine) and a detector under a root of their own."""

    def __init__(
        self,
        registry: Registry,
        directory: Path,
        n: int,
        byzantine: dict[int, type[HonestValidator]] | None = None,
        uid: str | None = None,
        epoch_s: int = 86_400,
        clock: FakeClock | None = None,
        quorum_first: bool = False,
    ) -> None:
        self.registry, self.directory, self.n = registry, directory, n
        self.byzantine = byzantine or {}
        self.uid = uid or uuid.uuid4().hex[:8]
        self.names = [f"v{self.uid}-{i}" for i in range(1, n + 1)]
        self.detector = f"detector-{self.uid}"
        self.config = small_config(directory, n, f"stake-{self.uid}", epoch_s, quorum_first)
        self.params = consensus_params(self.config)
        self.f = (n - 1) // 3
        self.clock = clock or FakeClock()
        self.start()

    def start(self) -> None:
        specs = []
        for i, name in enumerate(self.names, start=1):
            cls = self.byzantine.get(i, HonestValidator)
            specs.append(ChildSpec(name, self._validator(cls, name)))
        specs.append(ChildSpec(self.detector, lambda ctx: ByzantineDetectorActor.start(
            ctx, self.config, self.names, "hsm"), start_timeout_s=30))  # fmt: skip
        self.root = start_root(self.registry, f"trust-{self.uid}", specs, max_restarts=20,
                               period_s=60, clock=self.clock)  # fmt: skip
        self.keys = {
            name: ed25519.Ed25519PublicKey.from_public_bytes(
                bytes.fromhex(self.registry.ask(name, GetValidatorKey())["public_key"])
            )
            for name in self.names
        }

    def _validator(self, cls: type[HonestValidator], name: str) -> Any:
        return lambda ctx: cls.start(ctx, self.config, name)

    def stop(self) -> None:
        self.root.stop(block=True, timeout=30)

    @property
    def epoch(self) -> int:
        return self.params.epoch(self.clock.time())

    def ask(self, message: Any) -> Any:
        return self.registry.ask(self.detector, message, timeout=30)

    def send(self, message: Any) -> outcome.Outcome:
        """Ask the detector without raising: the outcome."""
        return self.send_many([message])[0]

    def send_many(self, messages: list[Any]) -> list[outcome.Outcome]:
        """Send every message at once (one tell each) and wait for all the answers."""
        answers: dict[int, outcome.Outcome] = {}
        done = threading.Event()

        def reply_for(i: int) -> Any:
            def reply(result: outcome.Outcome) -> None:
                answers[i] = result
                if len(answers) == len(messages):
                    done.set()

            return reply

        for i, message in enumerate(messages):
            self.registry.tell(self.detector, message, reply_for(i))
        assert done.wait(30), f"{len(messages) - len(answers)} requests never answered"
        return [answers[i] for i in range(len(messages))]

    def tell(self, message: Any) -> Answer:
        """Send without waiting: the answer, once it comes."""
        answer = Answer()
        self.registry.tell(self.detector, message, answer)
        return answer

    def send_past_deadline(self, message: Any, answers: int) -> outcome.Outcome:
        """Send, wait until its round has ``answers`` answers, move time past the
        deadline, wait for the answer."""
        answer = self.tell(message)

        def answered() -> bool:
            rounds = self.status()["rounds_open"]
            return answer.done.is_set() or (len(rounds) == 1 and rounds[0]["answered"] >= answers)

        wait_until(answered, f"{answers} answers in the round")
        self.clock.advance(DEADLINE_S + 0.001)
        assert answer.done.wait(30), "no answer after the deadline"
        return answer.got[0]

    def status(self) -> dict[str, Any]:
        return self.ask(GetTrustStatus())

    def validator_keys(self) -> dict[str, ed25519.Ed25519PublicKey]:
        return dict(self.keys)  # names are the validators' ids

    def misbehave(self, on: bool) -> None:
        for i in self.byzantine:
            self.registry.ask(self.names[i - 1], Misbehave(on))

    # The asset's side --------------------------------------------------------------

    def grant(self, amount: int = 100, days: int = 30, asset: str = ASSET_ID) -> dict[str, Any]:
        return self.ask(GrantStake(asset, amount, days))

    def register(
        self, plot: space.Plot, stake: dict[str, Any] | None = None, tamper: Any = None
    ) -> outcome.Outcome:
        stake = self.grant() if stake is None else stake
        got = self.ask(SpaceChallenge(ASSET_ID, plot.root.hex(), plot.n))
        proof = space.answer_challenge(plot, bytes.fromhex(got["challenge"]), got["k"])
        body = proof.to_json() if tamper is None else tamper(proof.to_json())
        return self.send(RegisterAsset(ASSET_ID, stake, body))

    def prove(
        self, csr: bytes, epoch: int | None = None, key: ed25519.Ed25519PrivateKey = ASSET
    ) -> requests.RequestProofs:
        epoch = self.epoch if epoch is None else epoch
        return requests.prove_request(csr, key, epoch, self.params)[0]

    def decide(self, csr: bytes, proofs: requests.RequestProofs | None = None) -> outcome.Outcome:
        return self.send(Decide(csr, self.prove(csr) if proofs is None else proofs))


def consensus(trees: list[Consensus], *args: Any, **kwargs: Any) -> Consensus:
    tree = Consensus(*args, **kwargs)
    trees.append(tree)
    return tree


def approved(result: outcome.Outcome) -> Decision:
    decision = result.unwrap()
    assert isinstance(decision, Decision) and decision.outcome == "approve"
    return decision


def refused(result: outcome.Outcome, error: type[TrustChainError]) -> TrustChainError:
    assert isinstance(result, outcome.Error), f"expected {error.__name__}, got {result!r}"
    assert isinstance(result.error, error), f"expected {error.__name__}: {result.error!r}"
    return result.error


def codes(result: outcome.Outcome) -> list[str]:
    return refused(result, NotApproved).details["reasons"]


def bad_nonce(proofs: requests.RequestProofs, csr: bytes, bits: int) -> int:
    """A work nonce that does not hold for this request."""
    digest = proofs.digest(csr)
    return next(n for n in range(2**16) if work.leading_zero_bits(work.work_hash(digest, n)) < bits)
