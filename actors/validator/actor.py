"""ValidatorActor: one of the N independent checkers of the four-proof consensus.

Theory of operation. A validator holds an Ed25519 key of its own
(``<trust.key_dir>/<validator id>.key``: PKCS#8 PEM, or the raw 32-octet private key;
made at its first start with mode 0600 in a 0700 directory, reused after) and answers
the detector's questions with signed votes (``votes.sign_vote``):

* ``CheckRequest``: ``requests.check_request`` on a certificate request's proofs,
  against the registration the detector holds; the vote is over the request digest;
* ``CheckRegistration``: ``requests.check_registration`` on an asset's stake and
  space proof; the vote is over ``requests.registration_digest``;
* ``CheckChallenge``: an ACME challenge (``challenges.py``: http-01, dns-01, tls-alpn-01)
  checked from here; the vote is over ``CheckChallenge.digest``. The name is resolved
  first through the ``resolver`` actor (AAAA, or the TXT of ``_acme-challenge.<name>``),
  without blocking this thread: the handler defers its reply and goes on in the
  continuation. The look itself (the HTTP fetch, the TLS handshake: up to the
  challenge's ``timeout_s`` on the network) runs on this validator's probe threads
  (``PROBES`` at once, at most ``MAX_PROBES`` waiting), never on this actor's thread, so
  that a slow or silent responder delays no four-proof question behind it (an ACME
  client could otherwise hold every validator for ``acme.challenge_timeout_s`` and make
  the consensus refuse everything meanwhile); what it saw comes back as a message
  (``_Probed``) and goes with the challenge to the validator's process, which signs.
  A name that does not resolve (NXDOMAIN, no record, SERVFAIL) fails the challenge: a
  signed reject with a ``dns:`` reason. A resolver that cannot be asked (not running, no
  answer within ``RESOLVE_TIMEOUT_S``) is our fault, not the applicant's: that error is
  the answer, and no vote.

A vote approves when the check gives no reason, and rejects with the reasons
otherwise. The parameters are the config's (``trust.params.consensus_params``), the
time is ``self.clock``'s; the stake authority's public key comes with each question
(the validators start before the detector and never wait on it).

Invariant: a validator never signs two different statements on one digest (that
is equivocation, which the detector catches and quarantines for). Asked again about
a digest it voted on (a retry, the same request decided twice), it answers the vote
it gave: at once when the question is the same (same proofs, registration and
authority), and after checking again when it is not -- the same vote if its verdict
and reasons are unchanged, else ``already_voted`` and no vote (other proofs for a
decided request, or a world that moved on: a registration that arrived, a stake that
expired). So a forged proof presented for a request approved before is never
approved again. The votes are kept for the current and the previous epoch (of this
validator's clock), on disk beside its key (``<id>.votes.sqlite3``, each written
durably before the vote leaves): a restarted validator repeats what it said.

The work itself -- the key, the votes given, the checks -- is a ``ValidatorCore``
(``core.py``) in a process of its own (``trustchain.actors.child``), started by
``setup`` and ended by ``cleanup``: the checks run on every core instead of queuing for
the GIL of the CA's process, and the key never enters that process. The honest answer
does not wait: this actor's thread hands the question to its process (pipelined: the
next question goes while the first is checked, so the process never idles waiting for
this thread to get the GIL back) and answers when the vote comes back (``_Voted``, sent
to itself by the reader thread of the pipe). The process answers in the order asked,
one at a time, so the votes it keeps are as they were. The hooks below (``honest``,
``vote``, ``sign``) still wait for their own call, in the same order. A process that
dies crashes the actor at once (``ChildLost``: the pipe's reader thread finds it gone
and tells the actor, ``_ProcessLost``, asked a question or not), and so does one that
has not answered a question within ``CALL_TIMEOUT_S`` (plus the challenge's time to
look) when the next comes; its supervisor restarts it with a new process, the votes on
disk carry over, and the questions in flight are answered ``actor_unavailable`` by the
runtime.

The hooks ``answer`` (what is sent back), ``vote`` and ``sign`` exist so that tests can
make Byzantine validators (``tests/trust/byzantine.py``); the honest one is this class.
For a challenge they are called in the resolver's continuation with a
``ResolvedChallenge`` (the challenge and its resolution) as the question, and ``defer()``
there hands out the reply deferred by the handler, so a hook that defers (a silent or
slow validator) works as it does for the other questions.
"""

from __future__ import annotations

import itertools
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import outcome

from trustchain.actors import child
from trustchain.actors.resolver.messages import Resolve
from trustchain.actors.trust import requests
from trustchain.actors.trust.params import consensus_params
from trustchain.actors.trust.votes import Verdict, Vote
from trustchain.actors.validator import challenges
from trustchain.actors.validator.challenges import Resolution
from trustchain.actors.validator.core import ValidatorCore
from trustchain.actors.validator.messages import (
    CheckChallenge,
    CheckRegistration,
    CheckRequest,
    GetValidatorKey,
)
from trustchain.config import TrustConfig
from trustchain.supervisors import ActorContext, Message, SupervisedActor, handles
from trustchain.supervisors.errors import RequestTimeout, TrustChainError
from trustchain.supervisors.registry import Reply

CALL_TIMEOUT_S = 10.0  # a check takes milliseconds: a process silent this long is hung
RESOLVER = "resolver"  # the resolver actor's name in the tree
RESOLVE_TIMEOUT_S = 35.0  # the resolver answers (SERVFAIL at worst) within its upstream timeout
PROBES = 4  # challenge checks on the network at once, per validator
MAX_PROBES = 256  # checks in flight or waiting; past them: validator_busy, no vote
child.preload("trustchain.actors.validator.core")


@dataclass(frozen=True)
class ResolvedChallenge:
    """The question of a challenge once its name is resolved: what ``answer``,
    ``honest`` and ``vote`` are given for a ``CheckChallenge``."""

    challenge: CheckChallenge
    resolution: Resolution
    # what this validator's probe saw (the reasons to reject); None: the process looks
    observed: tuple[str, ...] | None = None


Question = CheckRequest | CheckRegistration | ResolvedChallenge


class ValidatorBusy(TrustChainError):
    """Too many challenges are being checked by this validator: no vote (ask again)."""

    code = "validator_busy"


@dataclass(frozen=True)
class _Probed(Message):
    """A probe thread has looked at a challenge (sent to itself): the reasons, or the
    error the look raised."""

    probe: int
    result: outcome.Outcome


@dataclass(frozen=True)
class _Voted(Message):
    """The validator's process has answered a question (sent to itself by the pipe's
    reader thread): the vote's bytes, or the error."""

    call: int
    result: outcome.Outcome


@dataclass(frozen=True)
class _ProcessLost(Message):
    """The validator's process is gone (sent to itself by the pipe's reader thread the
    moment it finds so, whether or not a question is waiting)."""

    why: str


@dataclass(frozen=True)
class _ResolveTimedOut(Message):
    """The resolver has not answered a challenge's lookup in time (sent to itself)."""

    lookup: int


class ValidatorActor(SupervisedActor):
    def __init__(self, context: ActorContext, config: TrustConfig, validator_id: str) -> None:
        super().__init__(context)
        self.config = config
        self.validator_id = validator_id
        self.params = consensus_params(config)
        self.core: child.Child | None = None
        self.public_key = b""
        self._lookups: dict[int, Reply] = {}  # challenges waiting on the resolver
        self._next_lookup = 0
        self._held: Reply | None = None  # what defer() hands out in a continuation
        self._held_taken = False
        self._probe_threads: ThreadPoolExecutor | None = None
        self._probing: dict[int, tuple[Reply, ResolvedChallenge]] = {}
        self._probe_ids = itertools.count()
        # questions at the process, by call: the reply and when it is overdue (monotonic)
        self._voting: dict[int, tuple[Reply, float]] = {}
        self._call_ids = itertools.count()

    def setup(self) -> None:
        key_dir = self.config.key_dir
        self.core = child.Child.start(
            f"trustchain-{self.validator_id}", ValidatorCore, self.validator_id,
            key_dir / f"{self.validator_id}.key", key_dir / f"{self.validator_id}.votes.sqlite3",
            self.params, pipelined=True,
            on_lost=lambda lost: self.send_self(_ProcessLost(str(lost))),
        )  # fmt: skip
        self.public_key = self._call("public_key")
        self._probe_threads = ThreadPoolExecutor(PROBES, f"{self.validator_id}-probe")

    def cleanup(self) -> None:
        if self._probe_threads is not None:  # looks under way end on their own timeouts
            self._probe_threads.shutdown(wait=False, cancel_futures=True)
            self._probe_threads = None
        if self.core is not None:
            self.core.close()
            self.core = None

    def _call(self, method: str, *args: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        assert self.core is not None
        return self.core.call(method, *args, timeout_s=timeout_s)

    @property
    def pid(self) -> int | None:
        """The validator's process (tests kill it)."""
        return None if self.core is None else self.core.pid

    # The questions ---------------------------------------------------------------

    @handles(GetValidatorKey)
    def get_validator_key(self, msg: GetValidatorKey) -> dict[str, Any]:
        return {"validator": self.validator_id, "public_key": self.public_key.hex()}

    @handles(CheckRequest)
    def check_request(self, msg: CheckRequest) -> bytes | None:
        return self.answer(msg.proofs.digest(msg.csr_der), msg)

    @handles(CheckRegistration)
    def check_registration(self, msg: CheckRegistration) -> bytes | None:
        digest = requests.registration_digest(
            msg.asset_key, msg.epoch, msg.stake, msg.proof.commitment, msg.proof.n
        )
        return self.answer(digest, msg)

    @handles(CheckChallenge)
    def check_challenge(self, msg: CheckChallenge) -> bytes | None:
        lookup = challenges.lookup_of(msg)
        if lookup is None:  # an ip identifier: nothing to resolve
            self._probe(self.defer(), ResolvedChallenge(msg, challenges.resolve_locally(msg)))
            return None
        name, rdtype = lookup
        key = self._next_lookup
        self._next_lookup += 1
        self._lookups[key] = self.defer()

        def resolved(result: outcome.Outcome) -> None:
            reply = self._lookups.pop(key, None)
            if reply is None:
                return  # timed out meanwhile, and answered so
            if isinstance(result, outcome.Error):
                reply(result)  # the resolver could not be asked: our fault, no vote
                return
            resolution = challenges.resolution_of(msg, result.unwrap())
            self._probe(reply, ResolvedChallenge(msg, resolution))

        self.request(RESOLVER, Resolve(name, rdtype), resolved)
        self.after(RESOLVE_TIMEOUT_S, _ResolveTimedOut(key))
        return None

    @handles(_ResolveTimedOut)
    def resolve_timed_out(self, msg: _ResolveTimedOut) -> None:
        reply = self._lookups.pop(msg.lookup, None)
        if reply is not None:
            reply(outcome.Error(RequestTimeout(
                f"{RESOLVER!r} did not answer {self.validator_id}'s lookup within "
                f"{RESOLVE_TIMEOUT_S:g} s"
            )))  # fmt: skip

    def _probe(self, reply: Reply, question: ResolvedChallenge) -> None:
        """Look at the challenge on a probe thread; ``_probed`` goes on with what it saw."""
        assert self._probe_threads is not None
        if len(self._probing) >= MAX_PROBES:
            reply(outcome.Error(ValidatorBusy(
                f"{self.validator_id} is checking {len(self._probing)} challenges already; "
                "ask again shortly", retry_after_s=1,
            )))  # fmt: skip
            return
        key = next(self._probe_ids)
        self._probing[key] = (reply, question)
        looked: Future[list[str]] = self._probe_threads.submit(
            challenges.check_challenge, question.challenge, question.resolution
        )
        looked.add_done_callback(
            lambda done: self.send_self(_Probed(key, outcome.capture(done.result)))
        )

    @handles(_Probed)
    def probed(self, msg: _Probed) -> None:
        reply, question = self._probing.pop(msg.probe)
        if isinstance(msg.result, outcome.Error):
            reply(msg.result)  # the look itself failed (a bug): no vote, the error says why
            return
        seen = ResolvedChallenge(question.challenge, question.resolution,
                                 tuple(msg.result.unwrap()))  # fmt: skip
        self._answer_later(reply, question.challenge.digest(), seen)

    def _answer_later(self, reply: Reply, digest: bytes, question: Question) -> None:
        """``answer`` in a continuation: its value (or typed error) goes to ``reply``,
        unless it deferred (``defer()`` hands out ``reply`` meanwhile)."""
        self._held, self._held_taken = reply, False
        try:
            answered = self.answer(digest, question)
        except TrustChainError as exc:
            reply(outcome.Error(exc))
            return
        finally:
            taken, self._held, self._held_taken = self._held_taken, None, False
        if not taken:
            reply(outcome.Value(answered))

    def defer(self) -> Reply:
        if self._held is not None:  # in a continuation: the reply deferred by the handler
            self._held_taken = True
            return self._held
        return super().defer()

    # What is said, and the hooks a misbehaving validator overrides ------------------

    def answer(self, digest: bytes, question: Question) -> bytes | None:
        """The reply to a question on ``digest``: the vote's bytes, or ``None`` after
        ``defer()``. The honest one defers: its process answers, and ``voted`` replies."""
        self._check_not_hung()
        reply = self.defer()
        method, args, timeout_s = self._vote_call(question)
        assert self.core is not None
        call = next(self._call_ids)
        self._voting[call] = (reply, time.monotonic() + timeout_s)
        self.core.submit(method, *args).add_done_callback(
            lambda done: self.send_self(_Voted(call, outcome.capture(done.result)))
        )
        return None

    @handles(_Voted)
    def voted(self, msg: _Voted) -> None:
        reply, _deadline = self._voting.pop(msg.call)
        error = msg.result.error if isinstance(msg.result, outcome.Error) else None
        if error is not None and not isinstance(error, TrustChainError):
            raise error  # the process is gone (ChildLost), or a bug: crash, and restart
        reply(msg.result)  # the vote, or a typed refusal (already_voted)

    @handles(_ProcessLost)
    def process_lost(self, msg: _ProcessLost) -> None:
        raise child.ChildLost(msg.why)  # crash: the supervisor starts a new process

    def _check_not_hung(self) -> None:
        """ChildLost (a crash, then a new process) if the oldest question at the process
        is past its time: the process answers in order, so it hangs. Real time, not the
        actor's clock: it is a real process's (as ``Child.call``'s timeout)."""
        oldest = next(iter(self._voting.values()), None)
        if oldest is not None and time.monotonic() > oldest[1]:
            if self.core is not None:
                self.core.end()  # (closing it would wait for a process that never answers)
            raise child.ChildLost(
                f"the {self.validator_id} process has not answered a question in time: hung"
            )

    def _vote_call(self, question: Question) -> tuple[str, tuple[Any, ...], float]:
        """The process's method for the honest vote on ``question``, its arguments, and
        how long it may take."""
        now = self.clock.time()
        if isinstance(question, ResolvedChallenge):
            challenge = question.challenge
            looking_s = challenge.timeout_s if question.observed is None else 0.0  # it looks
            args = (challenge, question.resolution, now, question.observed)
            return "vote_challenge", args, CALL_TIMEOUT_S + looking_s
        method = "vote_request" if isinstance(question, CheckRequest) else "vote_registration"
        return method, (question, now), CALL_TIMEOUT_S

    def honest(self, question: Question) -> bytes:
        """The honest vote's bytes, from this validator's process (see ``core.py``),
        waited for (the Byzantine validators of the tests build on it)."""
        method, args, timeout_s = self._vote_call(question)
        vote: bytes = self._call(method, *args, timeout_s=timeout_s)
        return vote

    def vote(self, question: Question) -> Vote:
        return Vote.from_bytes(self.honest(question))

    def sign(self, digest: bytes, verdict: Verdict, reasons: tuple[str, ...] = ()) -> Vote:
        """A vote signed with this validator's key, whatever it says (not remembered)."""
        return Vote.from_bytes(self._call("sign", digest, verdict, tuple(reasons)))
