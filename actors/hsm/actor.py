"""HSMActor: the only thread that talks to the PKCS#11 token.

Every PKCS#11 call is this actor's request (SoftHSM is not thread-safe under
python-pkcs11), so concurrency comes from queueing, never from locks. The token
itself is opened in a child process (``RemoteToken``, ``actors/hsm/remote.py``):
a call is one round trip on a pipe, so the GIL is taken back once per request
rather than once per signature, which under load cost three quarters of the
HSM's speed.
A caller with many signatures to make (the issuer under load) sends them as
one ``sign_batch``: the per-message cost of the mailbox and the reply is paid
once per batch instead of once per signature (see bench/actors.py).
``setup()`` opens the module, logs in and creates the configured keys when
the token lacks them; ``cleanup()`` closes the session and finalises the
module; a crash and the supervisor's restart therefore reopen everything.

A token that goes away (unplugged, its directory moved, a device error) is a
fault of the environment, not a bug: when a PKCS#11 call fails, the actor
closes the module and opens it again at once. If that fails the token is
gone: the request and every later one get ``hsm_unavailable`` at once, the
fault shows in status and ``/ready`` (``hsm`` since when, the last error),
and the actor retries the token with backoff; when it opens, signing resumes
with no restart. If it opens and the same call fails again, the token is
fine and refuses this request: the caller gets ``hsm_error``. The token's process
dying is the same fault, found as it happens (its watcher, ``_TokenHostLost``) rather
than at the next request: the token is opened again in a new process at once, or the
fault shown and retried as above; either way a WARNING says so. At boot (first
incarnation) a token that cannot be opened fails the start, with the reason:
that is usually a configuration mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pkcs11
from loguru import logger

from trustchain.actors.hsm.errors import HsmError, HsmLoginFailed, HsmPinMissing, HsmUnavailable
from trustchain.actors.hsm.messages import (
    EnsureKey,
    GenerateKey,
    GetPublicKey,
    ListKeys,
    SignBatch,
    SignData,
)
from trustchain.actors.hsm.remote import RemoteToken, TokenHostLost
from trustchain.actors.hsm.token import KeyInfo, read_pin
from trustchain.config import HsmConfig
from trustchain.supervisors import ActorContext, Message, SupervisedActor, handles


@dataclass(frozen=True)
class _RetryToken(Message):
    """Time to try opening the HSM token again after a failure."""


@dataclass(frozen=True)
class _TokenHostLost(Message):
    """The process holding the token opened as ``opening`` died (sent by its watcher)."""

    opening: int
    why: str


RESOURCE = "hsm"  # the resource name shown in status and /ready
MIN_RETRY_S = 0.01  # even with backoff turned off, a retry is never a busy loop
T = TypeVar("T")


class HSMActor(SupervisedActor):
    def __init__(self, context: ActorContext, config: HsmConfig) -> None:
        super().__init__(context)
        self.config = config
        self.token: RemoteToken | None = None
        self._retries = 0  # failed reopenings in a row
        self._openings = 0  # tokens opened so far: which one a lost host's notice is about

    def setup(self) -> None:
        try:
            self._open()
        except (HsmPinMissing, HsmLoginFailed):
            raise  # configuration, not a fault that time mends
        except HsmError as exc:
            if self.context.incarnation <= 1:
                raise  # at boot: say why and stop, most likely a configuration mistake
            self._lost(exc)

    def cleanup(self) -> None:
        self._close()

    def _open(self) -> None:
        pin = read_pin(self.config.pin_env, self.config.pin_file)
        self._openings += 1
        opening = self._openings
        token = RemoteToken.open(
            self.config.module, self.config.token_label, pin, self.config.softhsm2_conf or None,
            on_lost=lambda lost: self.send_self(_TokenHostLost(opening, str(lost))),
        )  # fmt: skip
        try:
            for label, key_type in self.config.keys.items():
                token.ensure_key(label, key_type)
        except BaseException:
            token.close()
            raise
        self.token = token

    def _close(self) -> None:
        if self.token is not None:
            token, self.token = self.token, None
            token.close()

    def _use(self, operation: Callable[[RemoteToken], T]) -> T:
        """Run ``operation`` on the token; a PKCS#11 failure reopens it to tell a lost
        token (``hsm_unavailable``, retried with backoff) from a bug (crash)."""
        if self.token is None:
            fault = self.fault(RESOURCE)
            since = "" if fault is None else f" ({fault.error})"
            raise HsmUnavailable(
                f"the HSM token {self.config.token_label!r} is unavailable{since}; "
                "retrying with backoff, try again shortly"
            )
        try:
            return operation(self.token)
        except pkcs11.PKCS11Error as first:
            self._close()
            try:
                self._open()
            except HsmError as exc:
                self._lost(exc, first)
                raise HsmUnavailable(
                    f"the HSM token {self.config.token_label!r} stopped answering "
                    f"({type(first).__name__}) and cannot be reopened: {exc}; "
                    "retrying with backoff, try again shortly"
                ) from None
            assert self.token is not None
            self._reopened(first, "the request tried again")
            try:
                return operation(self.token)
            except pkcs11.PKCS11Error as again:
                # The token is there and refuses this request again: the request's fault.
                raise HsmError(
                    f"the HSM refused the request: {type(again).__name__} {again}".rstrip()
                ) from None

    def _lost(self, exc: BaseException, cause: BaseException | None = None) -> None:
        self._close()
        delay = max(MIN_RETRY_S, self.context.backoff.delay(self._retries))
        why = str(exc) if cause is None else f"{type(cause).__name__}, then: {exc}"
        self.report_fault(RESOURCE, why, next_retry_s=delay)
        self.after(delay, _RetryToken())

    def _reopened(self, cause: BaseException, then: str) -> None:
        logger.warning("hsm: the token {!r} stopped answering ({}: {}); reopened in place, {}",
                       self.config.token_label, type(cause).__name__, cause, then)  # fmt: skip

    @handles(_TokenHostLost)
    def token_host_lost(self, msg: _TokenHostLost) -> None:
        """The token's process died while the token was open: open it again now, in a
        new process, rather than at the next request (nothing is lost: a request under
        way when it died failed, and was retried or refused, in ``_use``)."""
        if msg.opening != self._openings or self.token is None:
            return  # that token was closed or replaced meanwhile (a request found out)
        lost = TokenHostLost(msg.why)
        self._close()
        try:
            self._open()
        except HsmError as exc:
            self._lost(exc, lost)  # shown, retried with backoff
            return
        self._reopened(lost, "before any request needed it")

    @handles(_RetryToken)
    def retry_token(self, msg: _RetryToken) -> None:
        if self.token is not None:
            return
        try:
            self._open()
        except HsmError as exc:
            self._retries += 1
            self._lost(exc)
            return
        self._retries = 0
        self.clear_fault(RESOURCE)

    @handles(GenerateKey)
    def generate_key(self, msg: GenerateKey) -> KeyInfo:
        return self._use(lambda t: t.generate_key(msg.label, msg.key_type))

    @handles(EnsureKey)
    def ensure_key(self, msg: EnsureKey) -> KeyInfo:
        return self._use(lambda t: t.ensure_key(msg.label, msg.key_type))

    @handles(GetPublicKey)
    def get_public_key(self, msg: GetPublicKey) -> KeyInfo:
        return self._use(lambda t: t.key_info(msg.label))

    @handles(SignData)
    def sign_data(self, msg: SignData) -> bytes:
        return self._use(lambda t: t.sign(msg.label, msg.data, msg.hash))

    @handles(SignBatch)
    def sign_batch(self, msg: SignBatch) -> list[bytes]:
        return self._use(lambda t: t.sign_many(msg.label, msg.data, msg.hash, msg.verify_with))

    @handles(ListKeys)
    def list_keys(self, msg: ListKeys) -> list[dict[str, Any]]:
        return self._use(
            lambda t: [{**k.to_json(), **t.private_key_attributes(k.label)} for k in t.list_keys()]
        )
