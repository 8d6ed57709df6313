"""Validators for the simulations: the honest one (with a way to crash it) and the
Byzantine behaviours of the issue -- always-accept, always-reject, random, equivocating,
silent, slow -- as ``ValidatorActor`` subclasses overriding its ``answer`` hook.

Each misbehaves from its start; ``Misbehave(False)`` makes it honest until
``Misbehave(True)`` (a test registers an asset with more than f of them that way).
Their votes are genuinely signed with their own keys: the detector must tell them
apart by what they say, never by a broken signature.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass

import outcome

from trustchain.actors.trust.votes import Verdict
from trustchain.actors.validator.actor import Question, ValidatorActor
from trustchain.supervisors import Message, handles

SLOW_S = 5.0  # a slow validator answers this long after it is asked: past the tests' deadline
# (2 s), within the late votes' window (4 deadlines more)


@dataclass(frozen=True)
class Crash(Message):
    """Crash the validator (as a bug would): its supervisor restarts it."""


@dataclass(frozen=True)
class KillProcess(Message):
    """Kill the validator's process (kill -9): its next question crashes the actor,
    whose supervisor restarts it with a new process."""


@dataclass(frozen=True)
class Misbehave(Message):
    """Turn a Byzantine validator's misbehaviour on or off."""

    on: bool


@dataclass(frozen=True)
class _Late(Message):
    """A slow validator's answer, due now."""

    reply: Callable[[outcome.Outcome], None]
    vote: bytes


class HonestValidator(ValidatorActor):
    misbehaving = True

    @handles(Crash)
    def crash(self, msg: Crash) -> None:
        raise RuntimeError(f"{self.validator_id} crashed, as the test asked")

    @handles(KillProcess)
    def kill_process(self, msg: KillProcess) -> int:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)
        return self.pid

    @handles(Misbehave)
    def misbehave(self, msg: Misbehave) -> None:
        self.misbehaving = msg.on


class AlwaysAccept(HonestValidator):
    def answer(self, digest: bytes, question: Question) -> bytes | None:
        if not self.misbehaving:
            return super().answer(digest, question)
        return self.sign(digest, "approve", ()).to_bytes()


class AlwaysReject(HonestValidator):
    """Rejects everything, with a reason that would count against the asset (if f+1
    validators agreed on it: f of these never can)."""

    def answer(self, digest: bytes, question: Question) -> bytes | None:
        if not self.misbehaving:
            return super().answer(digest, question)
        return self.sign(digest, "reject", ("work_invalid: says a Byzantine validator",)).to_bytes()


class RandomVoter(HonestValidator):
    """Votes at random (seeded by its id: a run is reproducible)."""

    def setup(self) -> None:
        super().setup()
        self.coin = random.Random(self.validator_id)

    def answer(self, digest: bytes, question: Question) -> bytes | None:
        if not self.misbehaving:
            return super().answer(digest, question)
        verdict: Verdict = self.coin.choice(("approve", "reject"))
        reasons = () if verdict == "approve" else ("time_proof_invalid: a coin said so",)
        return self.sign(digest, verdict, reasons).to_bytes()


class Equivocating(HonestValidator):
    """Honest the first time it is asked about a digest; asked again, it signs the
    opposite verdict: two different signed votes on one digest."""

    def setup(self) -> None:
        super().setup()
        self.asked: set[bytes] = set()

    def answer(self, digest: bytes, question: Question) -> bytes | None:
        honest = self.vote(question)
        if not self.misbehaving or digest not in self.asked:
            self.asked.add(digest)
            return honest.to_bytes()
        other: Verdict = "reject" if honest.verdict == "approve" else "approve"
        reasons = ("work_invalid: changed its mind",) if other == "reject" else ()
        return self.sign(digest, other, reasons).to_bytes()


class Silent(HonestValidator):
    """Never answers (until it goes down: then the runtime answers for it)."""

    def answer(self, digest: bytes, question: Question) -> bytes | None:
        if not self.misbehaving:
            return super().answer(digest, question)
        self.defer()
        return None


@dataclass(frozen=True)
class LateAnswers(Message):
    """How many late answers a slow validator has scheduled (a test moves its clock
    only once they are: one scheduled after the move would wait for the next)."""


class Slow(HonestValidator):
    """Answers honestly, ``SLOW_S`` after it is asked (on the clock the test drives)."""

    scheduled = 0

    def answer(self, digest: bytes, question: Question) -> bytes | None:
        vote = self.honest(question)
        if not self.misbehaving:
            return vote
        self.after(SLOW_S, _Late(self.defer(), vote))
        self.scheduled += 1
        return None

    @handles(LateAnswers)
    def late_answers(self, msg: LateAnswers) -> int:
        return self.scheduled

    @handles(_Late)
    def late(self, msg: _Late) -> None:
        msg.reply(outcome.Value(msg.vote))


BEHAVIOURS: dict[str, type[HonestValidator]] = {
    "always_accept": AlwaysAccept,
    "always_reject": AlwaysReject,
    "random": RandomVoter,
    "equivocating": Equivocating,
    "silent": Silent,
    "slow": Slow,
}
