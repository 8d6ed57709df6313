"""AcmeActor: TrustChain's ACME server (``acme`` in the tree), a thin actor over the
sans-IO ``core.AcmeCore``.

Theory of operation. Each ``AcmeRequest`` from the HTTPS edge goes to the core with
the actor's clock; the answer goes back at once, and the core's effects are performed
without waiting: ``Validate`` is a ``request`` to the detector (``ValidateChallenge``:
the validators' quorum), ``Issue`` one to the issuer (``IssueCertificate`` with the
order's account), ``Revoke`` one to the issuer (``RevokeCertificate``; the client's
answer is deferred until it comes), ``Later`` a timer. Results come back as
continuations on this thread and are fed to the core, which writes them and may ask
for more (retries after a peer's fault). The thread never waits on another actor.

Group commit. The store's writes are durable before anyone is told of them
(synchronous=FULL: an fsync a commit), and under load the requests queue behind those
fsyncs on this one thread. So the requests and peers' results that are waiting together
in the mailbox are handled in one transaction (``AcmeStore.batch``): each is handled as
it comes, its answer and its effects kept (``_Member``), and when the mailbox is empty
(or ``MAX_GROUP`` are kept) the transaction commits, then every answer goes out and
every effect is performed. If the commit fails (a full disk), nothing of the group was
kept: each of its requests is answered with the store's problem (503, Retry-After) and
each peer's result is fed again after a backoff; no effect is performed. A request read
inside a group sees what the group's earlier requests wrote, and is answered only if
that is committed too; one that writes nothing and asks nothing of a peer, handled
before anything of its group was written (a poll, a download: it read only what is
committed), is answered at once.

Start (``setup``): the store is opened (``acme.database``) and ``core.resume`` gives the
work a previous incarnation left processing (challenges validated again, orders issued
again), so a restart loses no order. Then, and hourly, records that expired more than
``KEEP_EXPIRED_S`` (a week) ago are forgotten (``AcmeStore.prune``): orders,
authorizations with their challenges, certificates past their notAfter; accounts stay.

A fault of the store (a full disk, an I/O error) is a fault of the environment, as in
the issuer's and the detector's ``faults.py``: the request that needed the store gets a
``serverInternal`` problem with 503 and Retry-After at once, the fault
(``acme_store``) shows in status and ``/ready``, and a durable probe is retried with
backoff until it succeeds, which clears the fault; no restart. A peer's result that
could not be written is fed again after the same backoff.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import outcome
from loguru import logger

from trustchain.actors.acme.core import AcmeCore
from trustchain.actors.acme.effects import Answer, Effect, Issue, Later, Revoke, Validate
from trustchain.actors.acme.messages import AcmeRequest, GetAcmeStatus
from trustchain.actors.acme.nonces import NonceStore
from trustchain.actors.acme.problems import AcmeProblem
from trustchain.actors.acme.store import AcmeStore, AcmeStoreUnavailable
from trustchain.config import AcmeConfig, CaConfig
from trustchain.supervisors import ActorContext, Message, SupervisedActor, handles
from trustchain.supervisors.errors import ActorCrashed, TrustChainError
from trustchain.supervisors.registry import Reply

STORE = "acme_store"  # the resource name shown in status and /ready
PRUNE_EVERY_S = 3_600.0  # how often expired records are looked for
KEEP_EXPIRED_S = 7 * 86_400  # how long past its expiry a record is kept (clients may look)
MIN_RETRY_S = 0.01  # even with backoff turned off, a retry is never a busy loop
MAX_GROUP = 64  # requests and results handled in one transaction at most


@dataclass(frozen=True)
class _Perform(Message):
    """Time to perform an effect the core asked for later (a retry)."""

    effect: Validate | Issue


@dataclass(frozen=True)
class _FeedAgain(Message):
    """Time to feed a peer's result to the core again (the store failed to take it)."""

    feed: Callable[[float], list[Effect]]


@dataclass(frozen=True)
class _Prune(Message):
    """Time to forget expired orders, authorizations and certificates."""


@dataclass(frozen=True)
class _ProbeAcmeStore(Message):
    """Time to try a durable write to the ACME store again."""


@dataclass
class _Member:
    """One request or peer's result handled in the open group: what is sent and done once
    the group commits (``effects``, and ``answer`` to ``reply``; a revocation's answer
    comes later, from the issuer), or fed again if it fails (``feed``)."""

    request: AcmeRequest | None = None
    reply: Reply | None = None
    answer: Answer | None = None
    effects: list[Effect] = field(default_factory=list)
    feed: Callable[[float], list[Effect]] | None = None


@dataclass
class _Group:
    """The transaction open on the store (``AcmeStore.batch``) and its members."""

    batch: contextlib.ExitStack
    writes: int  # the store's ``writes`` when it opened: more, and something is written
    members: list[_Member] = field(default_factory=list)


def _result(result: outcome.Outcome) -> Any:
    """A peer's answer: its value, or the typed error it answered with."""
    if isinstance(result, outcome.Value):
        return result.value
    assert isinstance(result, outcome.Error)
    error = result.error
    if isinstance(error, TrustChainError):
        return error
    return ActorCrashed(f"{type(error).__name__}: {error}")


class AcmeActor(SupervisedActor):
    """``AcmeActor.start(ctx, config.acme, config.ca, detector="detector", issuer="issuer")``."""

    def __init__(
        self,
        context: ActorContext,
        config: AcmeConfig,
        ca: CaConfig,
        detector: str = "detector",
        issuer: str = "issuer",
    ) -> None:
        super().__init__(context)
        self.config = config
        self.ca = ca
        self.detector = detector
        self.issuer = issuer
        self.store: AcmeStore | None = None
        self._core: AcmeCore | None = None
        self.validations_in_flight = 0
        self.issuances_in_flight = 0
        self._group: _Group | None = None
        self.commits = {"groups": 0, "members": 0}  # committed groups and what they held

    @property
    def core(self) -> AcmeCore:
        assert self._core is not None
        return self._core

    def setup(self) -> None:
        self.store = AcmeStore(self.config.database)
        self._core = AcmeCore(self.config, self.ca, self.store, NonceStore(self.config.nonces))
        self._perform(self.core.resume(self.clock.time()))
        self.send_self(_Prune())

    def cleanup(self) -> None:
        group, self._group = self._group, None
        if group is not None:  # going down mid-group: nothing of it is committed (its
            # callers are answered ``actor_unavailable`` by the runtime, as every deferred)
            gone = ActorCrashed("the ACME actor went down in the middle of a group")
            with contextlib.suppress(Exception):  # rolled back, here rather than at GC
                group.batch.__exit__(type(gone), gone, None)
        if self.store is not None:
            self.store.close()

    def on_receive(self, envelope: Any) -> Any:
        result = super().on_receive(envelope)
        group = self._group
        if group is not None and (self.actor_inbox.empty() or len(group.members) >= MAX_GROUP):
            self._commit_group()
        return result

    # Requests ------------------------------------------------------------------------------

    @handles(AcmeRequest)
    def acme_request(self, msg: AcmeRequest) -> dict[str, Any] | None:
        try:
            group = self._joined()
            answer, effects = self.core.handle(msg, self.clock.time())
        except AcmeStoreUnavailable as exc:
            return self.core.problem(msg, self._store_failed(exc))  # nothing was changed
        assert self.store is not None
        if answer is not None and not effects and self.store.writes == group.writes:
            return answer  # read only what is committed, wrote nothing: at once
        group.members.append(_Member(msg, self.defer(), answer, effects))
        return None

    @handles(GetAcmeStatus)
    def get_acme_status(self, msg: GetAcmeStatus) -> dict[str, Any]:
        try:
            status = self.core.status()
        except AcmeStoreUnavailable as exc:
            self._store_failed(exc)
            raise
        fault = self.fault(STORE)
        status.update(
            validations_in_flight=self.validations_in_flight,
            issuances_in_flight=self.issuances_in_flight,
            store_fault=None if fault is None else fault.error,
            commits=dict(self.commits),
        )
        return status

    # Effects -------------------------------------------------------------------------------

    def _perform(self, effects: list[Effect], reply: Any = None) -> None:
        for effect in effects:
            if isinstance(effect, Validate):
                self.validations_in_flight += 1
                then = functools.partial(self._validated, effect.challenge_id)
                self.request(self.detector, effect.message, then)
            elif isinstance(effect, Issue):
                self.issuances_in_flight += 1
                self.request(self.issuer, effect.message,
                             functools.partial(self._issued, effect.order_id))  # fmt: skip
            elif isinstance(effect, Revoke):
                assert reply is not None
                self.request(self.issuer, effect.message,
                             functools.partial(self._revoked, effect, reply))  # fmt: skip
            elif isinstance(effect, Later):
                self.after(max(MIN_RETRY_S, effect.delay_s), _Perform(effect.effect))

    @handles(_Perform)
    def perform(self, msg: _Perform) -> None:
        self._perform([msg.effect])

    def _validated(self, challenge_id: str, result: outcome.Outcome) -> None:
        self.validations_in_flight -= 1
        value = _result(result)
        self._feed(lambda now: self.core.validated(challenge_id, value, now))

    def _issued(self, order_id: str, result: outcome.Outcome) -> None:
        self.issuances_in_flight -= 1
        value = _result(result)
        self._feed(lambda now: self.core.issued(order_id, value, now))

    def _revoked(self, effect: Revoke, reply: Any, result: outcome.Outcome) -> None:
        request = effect.pending.request
        try:
            group = self._joined()
            answer = self.core.revoked(effect.pending, _result(result), self.clock.time())
        except AcmeStoreUnavailable as exc:
            reply(outcome.Value(self.core.problem(request, self._store_failed(exc))))
            return
        group.members.append(_Member(request, reply, answer))

    def _feed(self, feed: Callable[[float], list[Effect]]) -> None:
        try:
            group = self._joined()
            effects = feed(self.clock.time())
        except AcmeStoreUnavailable as exc:
            self._store_failed(exc)
            self._feed_later(feed)
            return
        group.members.append(_Member(effects=effects, feed=feed))

    def _feed_later(self, feed: Callable[[float], list[Effect]]) -> None:
        fault = self.fault(STORE)
        delay = self.context.backoff.delay(fault.retries if fault else 0)
        self.after(max(MIN_RETRY_S, delay), _FeedAgain(feed))

    @handles(_FeedAgain)
    def feed_again(self, msg: _FeedAgain) -> None:
        self._feed(msg.feed)

    # The group commit (see the module's theory) ---------------------------------------------

    def _joined(self) -> _Group:
        """The open group, opened (BEGIN) if there is none; AcmeStoreUnavailable if the
        store cannot begin one."""
        if self._group is None:
            assert self.store is not None
            batch = contextlib.ExitStack()
            batch.enter_context(self.store.batch())
            self._group = _Group(batch, self.store.writes)
        return self._group

    def _commit_group(self) -> None:
        """Commit the open group, then answer and perform what it holds; if the store
        cannot take it, nothing of it holds: its requests get the store's problem and its
        peers' results are fed again later."""
        group, self._group = self._group, None
        if group is None:
            return
        try:
            group.batch.close()  # COMMIT, or the store's error (rolled back whole)
        except AcmeStoreUnavailable as exc:
            problem = self._store_failed(exc)
            for member in group.members:
                if member.request is not None and member.reply is not None:
                    member.reply(outcome.Value(self.core.problem(member.request, problem)))
                if member.feed is not None:
                    self._feed_later(member.feed)
            return
        if group.members:
            self.commits["groups"] += 1
            self.commits["members"] += len(group.members)
        for member in group.members:
            if member.answer is not None and member.reply is not None:
                member.reply(outcome.Value(member.answer))
            self._perform(member.effects, member.reply)

    # Faults of the store -----------------------------------------------------------------

    def _store_failed(self, exc: AcmeStoreUnavailable) -> AcmeProblem:
        """Show the fault, schedule a probe (once), and say what the client should do."""
        cause = exc.details.get("cause", exc.message)
        delay = self.report_fault_and_probe(
            STORE, f"AcmeStoreUnavailable: {cause}", _ProbeAcmeStore()
        )
        seconds = max(1, math.ceil(delay))
        return AcmeProblem(
            "serverInternal",
            f"the ACME database cannot be written ({cause}); nothing was changed: try "
            f"again in {seconds} s",
            status=503,
            headers=[("Retry-After", str(seconds))],
        )

    @handles(_Prune)
    def prune(self, msg: _Prune) -> None:
        """Forget records expired more than ``KEEP_EXPIRED_S`` ago (and, hourly, again):
        the store would otherwise grow with every order ever made."""
        self.after(PRUNE_EVERY_S, _Prune())
        self._commit_group()  # (a transaction of its own)
        assert self.store is not None
        try:
            # (the rate limits count orders and certificates of their window: kept as long)
            keep_s = max(KEEP_EXPIRED_S, self.config.rate_window_s)
            pruned = self.store.prune(self.clock.time() - keep_s)
        except AcmeStoreUnavailable as exc:
            self._store_failed(exc)
            return
        if any(pruned.values()):
            logger.info("acme: forgot expired records: {}", pruned)

    @handles(_ProbeAcmeStore)
    def probe_acme_store(self, msg: _ProbeAcmeStore) -> None:
        self.probe_due(STORE)
        if self.fault(STORE) is None:
            return
        self._commit_group()  # (the probe is a transaction of its own)
        assert self.store is not None
        try:
            self.store.probe(self.clock.time())
        except AcmeStoreUnavailable as exc:
            self._store_failed(exc)
            return
        self.clear_fault(STORE)
