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

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import outcome
from loguru import logger

from trustchain.actors.acme.core import AcmeCore
from trustchain.actors.acme.effects import Effect, Issue, Later, Revoke, Validate
from trustchain.actors.acme.messages import AcmeRequest, GetAcmeStatus
from trustchain.actors.acme.nonces import NonceStore
from trustchain.actors.acme.problems import AcmeProblem
from trustchain.actors.acme.store import AcmeStore, AcmeStoreUnavailable
from trustchain.config import AcmeConfig, CaConfig
from trustchain.supervisors import ActorContext, Message, SupervisedActor, handles
from trustchain.supervisors.errors import ActorCrashed, TrustChainError

STORE = "acme_store"  # the resource name shown in status and /ready
PRUNE_EVERY_S = 3_600.0  # how often expired records are looked for
KEEP_EXPIRED_S = 7 * 86_400  # how long past its expiry a record is kept (clients may look)
MIN_RETRY_S = 0.01  # even with backoff turned off, a retry is never a busy loop


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
        if self.store is not None:
            self.store.close()

    # Requests ------------------------------------------------------------------------------

    @handles(AcmeRequest)
    def acme_request(self, msg: AcmeRequest) -> dict[str, Any] | None:
        try:
            answer, effects = self.core.handle(msg, self.clock.time())
        except AcmeStoreUnavailable as exc:
            return self.core.problem(msg, self._store_failed(exc))
        reply = self.defer() if answer is None else None
        self._perform(effects, reply)
        return answer

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
            answer = self.core.revoked(effect.pending, _result(result), self.clock.time())
        except AcmeStoreUnavailable as exc:
            answer = self.core.problem(request, self._store_failed(exc))
        reply(outcome.Value(answer))

    def _feed(self, feed: Callable[[float], list[Effect]]) -> None:
        try:
            effects = feed(self.clock.time())
        except AcmeStoreUnavailable as exc:
            self._store_failed(exc)
            fault = self.fault(STORE)
            delay = self.context.backoff.delay(fault.retries if fault else 0)
            self.after(max(MIN_RETRY_S, delay), _FeedAgain(feed))
            return
        self._perform(effects)

    @handles(_FeedAgain)
    def feed_again(self, msg: _FeedAgain) -> None:
        self._feed(msg.feed)

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
        assert self.store is not None
        try:
            self.store.probe(self.clock.time())
        except AcmeStoreUnavailable as exc:
            self._store_failed(exc)
            return
        self.clear_fault(STORE)
