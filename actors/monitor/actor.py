"""CTMonitorActor: watches TrustChain's CT log the way an outside monitor would.

Theory of operation (RFC 6962 §5.3, RFC 9162 §8.2). The log's public key is
taken once, from ``log_info``, when the monitor starts (trust on first use:
``log_id`` must be the SHA-256 of that key) and pinned. Every
``monitor.interval_s`` the monitor asks for the current tree head and:

* verifies its signature with the pinned key (``bad_signature``);
* compares it with the last head it verified: a smaller tree (``shrinking``),
  or the same size with another root (``fork``), is misbehaviour;
* when the tree grew, asks for the consistency proof between the two sizes and
  verifies it itself (``inconsistent``); only then does the new head become the
  last verified one;
* checks the head is no older than ``monitor.max_sth_age_s`` (``stale``); when
  no head can be fetched, the newest verified head ages instead.

The monitor never waits on the log: each step is a ``request`` whose reply
continues the check on this thread, and the key is pinned by the first check
(sent at start) rather than in ``setup``. Time (the interval, a head's age, an
unanswered check) is ``self.clock``'s, so tests drive it.

It trusts nothing the log says beyond what it verifies: it uses only the public
read messages (``log_info``, ``get_sth``, ``get_sth_consistency``), never the
log's files or internals. Each alert is a loguru ERROR line, a per-kind counter
and the ``status`` shown by ``get_monitor_status``. The same lie (kind, tree size
and root) is alerted once, not at every tick; staleness again after a fresh
head. Errors in fetching (the log restarting, say) are counted apart and
retried at the next tick: they are not evidence. A check left unanswered for
``max_sth_age_s`` is abandoned (its late replies ignored) and a new one begun.

The checks themselves (``HeadChecker``, ``parse_sth``) are sans-IO, in
``trustchain.actors.ct.audit``, shared with ``trustchain ct``; this actor fetches,
remembers what it alerted, and reports.

Not done here: inclusion checks of individual entries (``trustchain ct
verify`` and ``ct proof`` do those), gossip with other monitors, and keeping
the verified head across restarts of this actor (it starts again from the
then-current head).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import outcome
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from loguru import logger

from trustchain.actors.ct import SignedTreeHead, log_id
from trustchain.actors.ct.audit import AlertKind, HeadChecker, Misbehaviour, as_bytes, parse_sth
from trustchain.actors.ctlog.messages import GetLogInfo, GetSTH, GetSTHConsistency
from trustchain.actors.monitor.messages import GetMonitorStatus
from trustchain.config import MonitorConfig
from trustchain.supervisors import ActorContext, Message, SupervisedActor, TrustChainError, handles
from trustchain.supervisors.registry import Envelope

MAX_REMEMBERED_ALERTS = 1_024
# What a log_info reply the monitor cannot use raises (never a crash: a lying
# log must not be able to take the monitor, let alone TrustChain, down).
_UNUSABLE_INFO = (TrustChainError, KeyError, TypeError, ValueError, AttributeError,
                  UnsupportedAlgorithm)  # fmt: skip


@dataclass(frozen=True)
class _Check(Message):
    """Time to fetch and check the log's tree head (the monitor's own timer)."""


class CTMonitorActor(SupervisedActor):
    def __init__(self, context: ActorContext, config: MonitorConfig, ctlog: str = "ctlog") -> None:
        super().__init__(context)
        self.config = config
        self.ctlog = ctlog
        self.checker: HeadChecker | None = None
        self._in_flight_since: float | None = None
        self._generation = 0  # a check abandoned as unanswered ignores its late replies
        self._unreachable = False  # since the last failed request to the log
        self._started = self.clock.time()
        self.checks = 0
        self.consistency_proofs = 0
        self.fetch_failures = 0
        self.last_fetch_error: str | None = None
        self.last_check: str | None = None  # "ok", "alert" or "error"
        self.verified_at: float | None = None
        self.alerts = {kind: 0 for kind in AlertKind}
        self.last_alert: dict[str, Any] | None = None
        self._alerted: set[tuple[AlertKind, str]] = set()  # (kind, offending head)

    def setup(self) -> None:
        self.actor_ref.tell(Envelope(_Check(), None))  # the first check (and key) at once
        self.every(self.config.interval_s, _Check())

    def _now_ms(self) -> int:
        return round(self.clock.time() * 1000)

    def _pin_key(self, info: Mapping[str, Any]) -> None:
        key = serialization.load_pem_public_key(info["public_key"].encode())
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise TrustChainError(f"log {self.ctlog!r} has a {type(key).__name__}, not ECDSA")
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if log_id(spki) != as_bytes(info["log_id"]):
            raise TrustChainError(f"log {self.ctlog!r}: log_id is not the hash of its key")
        self.checker = HeadChecker(key, round(self.config.max_sth_age_s * 1000))

    # The check, one step per reply (this thread never waits) -----------------------

    @handles(_Check)
    def check(self, msg: _Check) -> None:
        if self._in_flight_since is not None:
            if self.clock.monotonic() - self._in_flight_since <= self.config.max_sth_age_s:
                return
            self._fetch_failed(f"{self.ctlog!r} has not answered for {self.config.max_sth_age_s} s")
            self._check_age_of_verified(f"; {self.ctlog!r} has not answered")
            self._generation += 1  # abandon that check; start afresh
        self._in_flight_since = self.clock.monotonic()
        if self.checker is None:
            self._ask(GetLogInfo(), self._got_info)
        else:
            self._ask(GetSTH(), self._got_sth)

    def _ask(self, message: Message, then: Callable[[outcome.Outcome], None]) -> None:
        generation = self._generation

        def current(result: outcome.Outcome) -> None:
            if generation == self._generation:
                then(result)

        self.request(self.ctlog, message, current)

    def _got_info(self, result: outcome.Outcome) -> None:
        try:
            self._pin_key(result.unwrap())
        except _UNUSABLE_INFO as exc:
            self._fetch_failed(f"log_info: {exc!r}")
            self._done()
            return
        self._ask(GetSTH(), self._got_sth)

    def _got_sth(self, result: outcome.Outcome) -> None:
        assert self.checker is not None
        if isinstance(result, outcome.Error):
            self._fetch_failed(f"get_sth: {result.error}")
            self._check_age_of_verified(f"; get_sth failed: {result.error}")
            self._done()
            return
        self.checks += 1
        self._unreachable = False
        body = result.unwrap()
        try:
            sth = parse_sth(body)
        except Misbehaviour as alert:
            self._alert(alert, body)
            self._done()
            return
        try:
            sizes = self.checker.check(sth)
        except Misbehaviour as alert:
            self._alert(alert, sth)
            self._done()
            return
        if sizes is None:
            self._accept(sth, [])
            return
        self._ask(GetSTHConsistency(*sizes), lambda result: self._got_proof(sth, result))

    def _got_proof(self, sth: SignedTreeHead, result: outcome.Outcome) -> None:
        if isinstance(result, outcome.Error):
            self._fetch_failed(f"get_sth_consistency: {result.error}")
            self._done()
            return
        try:
            proof = [as_bytes(p) for p in result.unwrap()["consistency"]]
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            self._alert(Misbehaviour(AlertKind.INCONSISTENT, f"malformed proof: {exc!r}"), sth)
            self._done()
            return
        self.consistency_proofs += 1
        self._accept(sth, proof)

    def _accept(self, sth: SignedTreeHead, proof: list[bytes]) -> None:
        assert self.checker is not None
        try:
            self.checker.accept(sth, proof)
            self.verified_at = self.clock.time()
            self.checker.check_age(sth, self._now_ms())
        except Misbehaviour as alert:
            self._alert(alert, sth)
        else:
            self.last_check = "ok"
            self._alerted = {k for k in self._alerted if k[0] is not AlertKind.STALE}
        self._done()

    def _check_age_of_verified(self, why: str) -> None:
        """No fresh head to be had: the newest verified one ages."""
        if self.checker is None or self.checker.verified is None:
            return
        try:
            self.checker.check_age(self.checker.verified, self._now_ms(), why)
        except Misbehaviour as alert:
            self._alert(alert, self.checker.verified)

    def _done(self) -> None:
        self._in_flight_since = None

    # Outcomes -------------------------------------------------------------------------

    def _fetch_failed(self, text: str) -> None:
        if not self._unreachable:  # one line per outage, not one per tick
            logger.warning("monitor: cannot check {!r}: {}", self.ctlog, text)
        self._unreachable = True
        self.fetch_failures += 1
        self.last_fetch_error = text
        self.last_check = "error"

    def _alert(self, alert: Misbehaviour, evidence: Any) -> None:
        """Count and log ``alert``, once per kind and offending tree (size and root)."""
        self.last_check = "alert"
        if isinstance(evidence, SignedTreeHead):
            key = (alert.kind, f"{evidence.tree_size}:{evidence.root_hash.hex()}")
        else:
            key = (alert.kind, repr(evidence))  # a malformed reply
        if key in self._alerted:
            return  # the same lie told again (perhaps re-signed): alerted once already
        if len(self._alerted) >= MAX_REMEMBERED_ALERTS:
            self._alerted.clear()
        self._alerted.add(key)
        self.alerts[alert.kind] += 1
        self.last_alert = {"kind": alert.kind.value, "text": alert.text, "at": self.clock.time()}
        logger.error(
            "CT monitor alert [{}] on log {!r}: {}", alert.kind.value, self.ctlog, alert.text
        )

    @handles(GetMonitorStatus)
    def get_monitor_status(self, msg: GetMonitorStatus) -> dict[str, Any]:
        verified = self.checker.verified if self.checker else None
        total = sum(self.alerts.values())
        return {
            "log": self.ctlog,
            "status": "alert" if total else ("ok" if verified else "starting"),
            "last_check": self.last_check,
            "checking": self._in_flight_since is not None,  # a check awaits the log's replies
            "verified": None
            if verified is None
            else {
                "tree_size": verified.tree_size,
                "root_hash": base64.b64encode(verified.root_hash).decode(),
                "timestamp": verified.timestamp,
                "verified_at": self.verified_at,
            },
            "checks": self.checks,
            "consistency_proofs": self.consistency_proofs,
            "fetch_failures": self.fetch_failures,
            "last_fetch_error": self.last_fetch_error,
            "alerts": {kind.value: n for kind, n in self.alerts.items()},
            "alerts_total": total,
            "last_alert": self.last_alert,
            "since": self._started,
        }
