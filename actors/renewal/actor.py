"""RenewalActor: the certificates TrustChain serves with (DoQ, HTTPS), issued by itself.

Each managed certificate (``[renewal.certificates]`` plus ``RegisterCertificate``
at run time) gets a private key made here (only a CSR goes to the IssuerActor,
through ``request()``: this thread never waits on the issuer) and a new one
when it is missing, unreadable, not matching its key, for other names or key
type, or past ``renew_at_fraction`` of its lifetime. Failures are logged, shown
in ``GetRenewalStatus`` and retried at the next check. In-process subscribers get
every new ``Bundle``. Lifetime counts from when the CSR was sent (``issued_at``
in meta.json), not from notBefore, which the CA backdates by up to a minute.

Disk layout (directories 0700; one process per directory, nothing locks;
written by ``bundle.py`` beside this module)::

    <directory>/registrations.json    runtime registrations, {name: [names]}
    <directory>/<name>/<serial>/      one immutable version: key.pem (0600), cert.pem,
                                      chain.pem, fullchain.pem, meta.json
    <directory>/<name>/current        symlink -> <serial>, replaced by rename(2)
    <directory>/<name>/key.pem, ...   symlinks -> current/key.pem, ... (stable paths)

A version is written whole under a temporary name, fsynced and renamed into
place before ``current`` moves, so a reader that resolves ``current`` once (a
``Bundle``'s paths are resolved) never pairs a key with another certificate.
The previous version stays for readers still holding it. Subscriptions live
beside the registry, so they outlive a restart of this actor; everything else
is reloaded from disk in ``setup()`` (crash-only).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import outcome
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from loguru import logger

from trustchain.actors.ca import SubscriberKey, new_key
from trustchain.actors.ca.names import normalize_dns_name
from trustchain.actors.detector.messages import (
    GetTrustParams,
    GrantStake,
    RegisterAsset,
    SpaceChallenge,
)
from trustchain.actors.durable import replace_file
from trustchain.actors.issuer.messages import IssueCertificate
from trustchain.actors.renewal.asset import KEY_FILE, Asset, load_or_create_key
from trustchain.actors.renewal.bundle import (
    BUNDLE_FILES,
    Bundle,
    bundle_renew_at,
    check_period,
    csr_for,
    load_current,
    renewal_reason,
    spki_of,
    write_version,
)
from trustchain.actors.renewal.errors import (
    CertificateNotIssued,
    RenewalFailed,
    UnknownCertificate,
)
from trustchain.actors.renewal.messages import (
    MAX_NAMES,
    GetBundle,
    GetRenewalStatus,
    RegisterCertificate,
    RenewNow,
    Subscribe,
    Unsubscribe,
)
from trustchain.config import ConfigError, RenewalConfig
from trustchain.supervisors import (
    ActorContext,
    InvalidRequest,
    Message,
    SupervisedActor,
    TrustChainError,
    handles,
)
from trustchain.supervisors.registry import Registry, Reply

ISSUE_TIMEOUT_S = 60.0  # unanswered this long: counted as failed, a late reply is dropped
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


# Subscribers outlive an incarnation: they are kept beside the registry, like its cells --


@dataclass
class _Subscriber:
    name: str
    callback: Callable[[Bundle], None]
    delivered: str | None = None  # the serial last handed over


_Book = dict[int, _Subscriber]
_BOOKS: weakref.WeakKeyDictionary[Registry, dict[str, _Book]] = weakref.WeakKeyDictionary()
_BOOKS_LOCK = threading.Lock()
_TOKENS = itertools.count(1)


def _subscribers(registry: Registry, actor: str) -> _Book:
    with _BOOKS_LOCK:
        return _BOOKS.setdefault(registry, {}).setdefault(actor, {})


@dataclass(frozen=True)
class _CheckRenewals(Message):
    """Time to renew what is due (the renewal actor's own timer)."""


@dataclass
class _Managed:
    names: list[str]
    source: str  # "config" | "registered"
    bundle: Bundle | None = None
    state: str = "ok"  # ok | renewing | failed
    last_error: str | None = None
    failures: int = 0
    attempt: int = 0  # the issuance in flight (0: none); replies to older ones are dropped
    attempt_started: float = 0.0
    forced: bool = False  # RenewNow asked: holds until a renewal succeeds
    waiting: list[Reply] = field(default_factory=list)


class RenewalActor(SupervisedActor):
    def __init__(
        self,
        context: ActorContext,
        config: RenewalConfig,
        issuer: str = "issuer",
        detector: str | None = None,
    ):
        super().__init__(context)
        self.config, self.issuer, self.detector = config, issuer, detector
        self._asset: Asset | None = None  # TrustChain as an asset of its consensus
        # requests waiting for the asset's registration under way (None: none under way)
        self._registering: list[Callable[[outcome.Outcome], None]] | None = None
        self.managed: dict[str, _Managed] = {}
        self._attempts = itertools.count(1)

    def setup(self) -> None:
        if self.detector is not None:  # its certificates need the validators' approval too
            self._asset = Asset(load_or_create_key(self.config.directory / KEY_FILE))
        for name, names in self.config.certificates.items():
            self.managed[_valid_name(name, ConfigError)] = _Managed(list(names), "config")
        for name, names in self._registrations().items():
            try:
                names = _valid_names(names)
            except TrustChainError as exc:  # written before names were checked: skip, say so
                logger.warning("renewal: registration {!r} ignored: {}", name, exc.message)
                continue
            self.managed.setdefault(name, _Managed(names, "registered"))
        for name, m in self.managed.items():
            m.bundle, problem = load_current(self.config.directory / name, name)
            if problem:
                logger.warning("renewal: {}: {}; getting a new certificate", name, problem)
            if m.bundle is not None:
                self._notify(m.bundle)  # whoever missed it when the last incarnation died
            self._check(name, m)
        c = self.config
        self.every(check_period(c.validity_s, c.renew_at_fraction, c.check_interval_s),
                   _CheckRenewals())  # fmt: skip

    # Messages -----------------------------------------------------------------------------

    @handles(_CheckRenewals)
    def check_renewals(self, msg: _CheckRenewals) -> None:
        for name, m in self.managed.items():
            self._check(name, m)

    @handles(RegisterCertificate)
    def register_certificate(self, msg: RegisterCertificate) -> dict[str, Any]:
        name, names = _valid_name(msg.name, InvalidRequest), _valid_names(msg.names)
        m = self.managed.get(name)
        if m is not None and m.source == "config":
            if set(m.names) != set(names):
                raise InvalidRequest(f"{name!r} is set in [renewal.certificates]; change it there")
        else:
            m = self.managed.setdefault(name, _Managed(names, "registered"))
            m.names = names
            kept = {n: r.names for n, r in self.managed.items() if r.source == "registered"}
            self.config.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            replace_file(self.config.directory / "registrations.json", json.dumps(kept).encode())
        self._check(name, m)
        return self._status(name, m)

    @handles(Subscribe)
    def subscribe(self, msg: Subscribe) -> int:
        m, token = self._get(msg.name), next(_TOKENS)
        _subscribers(self.registry, self.name)[token] = _Subscriber(msg.name, msg.callback)
        if m.bundle is not None:
            self._notify(m.bundle)
        return token

    @handles(Unsubscribe)
    def unsubscribe(self, msg: Unsubscribe) -> bool:
        return _subscribers(self.registry, self.name).pop(msg.subscription, None) is not None

    @handles(GetBundle)
    def get_bundle(self, msg: GetBundle) -> dict[str, Any]:
        m = self._get(msg.name)
        if m.bundle is None:
            why = m.last_error or "it is being issued"
            raise CertificateNotIssued(f"{msg.name!r} has no certificate yet ({why})")
        return self._info(m.bundle)

    @handles(GetRenewalStatus)
    def get_renewal_status(self, msg: GetRenewalStatus) -> list[dict[str, Any]]:
        return [self._status(name, m) for name, m in sorted(self.managed.items())]

    @handles(RenewNow)
    def renew_now(self, msg: RenewNow) -> None:
        """Answered when the new certificate is on disk (or with why it is not)."""
        m = self._get(msg.name)
        m.waiting.append(self.defer())
        m.forced = True
        self._check(msg.name, m)

    # Renewal ------------------------------------------------------------------------------

    def _check(self, name: str, m: _Managed) -> None:
        if m.attempt:
            if self.clock.monotonic() - m.attempt_started < ISSUE_TIMEOUT_S:
                return
            error = RenewalFailed(f"the issuer gave no answer in {ISSUE_TIMEOUT_S:g} s")
            self._failed(name, m, error, answer=False)  # waiters get the next attempt's outcome
        now, c = self.clock.now(), self.config
        reason = "asked to renew" if m.forced else \
            renewal_reason(m.bundle, m.names, c.key_type, now, c.renew_at_fraction)  # fmt: skip
        if reason is None:
            return
        key = new_key(c.key_type)
        try:
            csr = csr_for(key, m.names)
        except (ValueError, TypeError) as exc:  # names no CSR can carry (from config)
            self._failed(name, m, InvalidRequest(f"no CSR can carry {m.names}: {exc}"))
            return
        attempt = m.attempt = next(self._attempts)
        m.attempt_started, m.state = self.clock.monotonic(), "renewing"
        logger.info("renewal: {}: requesting a certificate ({})", name, reason)

        def issue(proofs: outcome.Outcome) -> None:
            if isinstance(proofs, outcome.Error):
                self._issued(name, attempt, key, now, proofs)
                return
            message = IssueCertificate(csr, validity_s=c.validity_s, proofs=proofs.unwrap())
            self.request(self.issuer, message, lambda r: self._issued(name, attempt, key, now, r))

        if self._asset is None:
            issue(outcome.Value(None))
        else:
            self._prove(self._asset, csr, issue)

    def _prove(self, asset: Asset, csr: str, then: Callable[[outcome.Outcome], None]) -> None:
        """The proofs of one request as TrustChain's own asset, registering it first for
        the epoch when it is not (each step a request to the detector, none waits)."""
        assert self.detector is not None
        detector = self.detector

        def step(
            on: Callable[[Any], None], registering: bool = False
        ) -> Callable[[outcome.Outcome], None]:
            def go(result: outcome.Outcome) -> None:
                if isinstance(result, outcome.Error):
                    if registering:
                        self._registered(result)
                    then(result)
                    return
                try:
                    on(result.unwrap())
                except (TrustChainError, ValueError, KeyError) as exc:
                    failed = outcome.Error(RenewalFailed(f"proving as an asset failed: {exc}"))
                    if registering:
                        self._registered(failed)
                    then(failed)

            return go

        def proved(_: Any = None) -> None:
            then(outcome.Value(asset.prove(csr)))

        def registered(_: Any) -> None:
            asset.registered_epoch = asset.epoch
            self._registered(outcome.Value(None))
            proved()

        def challenged(stake: dict[str, Any], answer: dict[str, Any]) -> None:
            register = RegisterAsset(asset.asset, stake, asset.answer(answer["challenge"]))
            self.request(detector, register, step(registered, registering=True))

        def staked(stake: dict[str, Any]) -> None:
            challenge = SpaceChallenge(**asset.commitment())
            answered = step(lambda answer: challenged(stake, answer), registering=True)
            self.request(detector, challenge, answered)

        def learned(answer: dict[str, Any]) -> None:
            asset.learn(answer)
            if asset.registered:
                proved()
                return
            if self._registering is not None:  # another certificate's request registers it:
                # a second challenge would make the first one's answer stale (rejected)
                self._registering.append(
                    lambda done: proved() if isinstance(done, outcome.Value) else then(done)
                )
                return
            self._registering = []
            assert asset.params is not None
            grant = GrantStake(asset.asset, asset.params.min_stake)
            self.request(detector, grant, step(staked, registering=True))

        self.request(detector, GetTrustParams(), step(learned))

    def _registered(self, result: outcome.Outcome) -> None:
        """The asset's registration ended: the requests that waited for it go on."""
        waiting, self._registering = self._registering or [], None
        for go_on in waiting:
            go_on(result)

    def _issued(
        self,
        name: str,
        attempt: int,
        key: SubscriberKey,
        issued_at: datetime,
        result: outcome.Outcome,
    ) -> None:
        m = self.managed[name]
        if m.attempt != attempt:
            logger.info("renewal: {}: dropped the issuer's late reply", name)
            return
        m.attempt = 0
        if isinstance(result, outcome.Error):
            self._failed(name, m, result.error)
            return
        try:
            self._store(name, key, issued_at, result.unwrap())
            bundle, problem = load_current(self.config.directory / name, name)
            if bundle is None:
                raise RenewalFailed(f"the files just written are not usable: {problem}")
        except (OSError, ValueError, RenewalFailed) as exc:
            self._failed(name, m, exc)
            return
        m.bundle, m.state, m.last_error, m.forced = bundle, "ok", None, False
        at = bundle_renew_at(bundle, self.config.renew_at_fraction)
        logger.info("renewal: {}: serial {}, valid until {}, renewing at {}", name,
                    bundle.serial, bundle.not_after, at)  # fmt: skip
        self._answer_waiting(m, outcome.Value(self._info(bundle)))
        self._notify(bundle)

    def _store(self, name: str, key: SubscriberKey, issued_at: datetime, reply: Any) -> None:
        cert = x509.load_pem_x509_certificate(reply["certificate"].encode())
        if spki_of(cert.public_key()) != spki_of(key.public_key()):
            raise RenewalFailed("the issuer returned a certificate for another key")
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())  # fmt: skip
        cert_pem, chain_pem = reply["certificate"].encode(), reply["chain"].encode()
        meta = {k: reply[k] for k in ("serial", "names", "ca", "not_before", "not_after")}
        meta["issued_at"] = issued_at.isoformat()
        contents = (key_pem, cert_pem, chain_pem, cert_pem + chain_pem, json.dumps(meta).encode())
        modes = (0o600, 0o644, 0o644, 0o644, 0o644)
        layout = zip(BUNDLE_FILES, contents, modes, strict=True)
        files = {f: (data, mode) for f, data, mode in layout}
        write_version(self.config.directory / name, format(cert.serial_number, "x"), files)

    def _failed(self, name: str, m: _Managed, error: BaseException, answer: bool = True) -> None:
        m.attempt, m.state, m.failures = 0, "failed", m.failures + 1
        m.last_error = f"{type(error).__name__}: {error}"
        logger.warning("renewal: {}: {} (failure {}; retried at the next check)", name,
                       m.last_error, m.failures)  # fmt: skip
        if answer:
            typed = error if isinstance(error, TrustChainError) else RenewalFailed(m.last_error)
            self._answer_waiting(m, outcome.Error(typed))

    def _answer_waiting(self, m: _Managed, result: outcome.Outcome) -> None:
        waiting, m.waiting = m.waiting, []
        for reply in waiting:  # an Outcome unwraps once (AlreadyUsedError): one each
            if isinstance(result, outcome.Value):
                reply(outcome.Value(result.value))
            elif isinstance(result, outcome.Error):
                reply(outcome.Error(result.error))

    def _notify(self, bundle: Bundle) -> None:
        for token, sub in list(_subscribers(self.registry, self.name).items()):
            if sub.name != bundle.name or sub.delivered == bundle.serial:
                continue
            sub.delivered = bundle.serial
            try:
                sub.callback(bundle)
            except Exception as exc:  # the subscriber's bug: say so, keep it subscribed
                logger.warning("renewal: subscriber {} of {} raised {}: {}", token, bundle.name,
                               type(exc).__name__, exc)  # fmt: skip

    # Views --------------------------------------------------------------------------------

    def _get(self, name: str) -> _Managed:
        if name not in self.managed:
            known = ", ".join(sorted(self.managed)) or "none"
            raise UnknownCertificate(f"no certificate named {name!r}; managed: {known}")
        return self.managed[name]

    def _status(self, name: str, m: _Managed) -> dict[str, Any]:
        b = m.bundle
        at = bundle_renew_at(b, self.config.renew_at_fraction).isoformat() if b else None
        return {"name": name, "names": m.names, "source": m.source, "state": m.state,
                "last_error": m.last_error, "failures": m.failures, "serial": b and b.serial,
                "not_after": b and b.not_after.isoformat(), "renew_at": at}  # fmt: skip

    def _info(self, b: Bundle) -> dict[str, Any]:
        current = self.config.directory / b.name / "current"
        paths = {"cert": b.cert_path, "chain": b.chain_path, "fullchain": b.fullchain_path,
                 "key": b.key_path, "current": current}  # fmt: skip
        return {"name": b.name, "names": list(b.names), "serial": b.serial,
                "not_before": b.not_before.isoformat(), "not_after": b.not_after.isoformat(),
                "renew_at": bundle_renew_at(b, self.config.renew_at_fraction).isoformat(),
                "cert_pem": b.cert_pem, "chain_pem": b.chain_pem,
                "paths": {k: str(p) for k, p in paths.items()}}  # fmt: skip

    def _registrations(self) -> dict[str, list[str]]:
        path = self.config.directory / "registrations.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); repair or remove it") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ConfigError(f"{path} is not {{name: [names]}}; repair or remove it")
        return {_valid_name(k, ConfigError): v for k, v in data.items()}


def _valid_names(names: Any) -> list[str]:
    """DNS names (syntax only: the issuer applies its policy) or IP addresses."""
    if not isinstance(names, list | tuple) or not names or len(names) > MAX_NAMES:
        raise InvalidRequest(f"give 1 to {MAX_NAMES} DNS names or IPv6 addresses")
    valid = []
    for name in names:
        if not isinstance(name, str):
            raise InvalidRequest(f"{name!r} is not a DNS name or an IPv6 address")
        try:
            valid.append(str(ipaddress.ip_address(name)))
        except ValueError:
            normalize_dns_name(name)  # InvalidName (typed) says why not; U-labels included
            valid.append(name)
    return valid


def _valid_name(name: Any, error: Callable[[str], Exception]) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "registrations.json":
        raise error(f"certificate name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name
