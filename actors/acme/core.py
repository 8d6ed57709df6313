"""The ACME server's sans-IO core (RFC 8555, with RFC 8737 tls-alpn-01, RFC 8738 IP
identifiers and RFC 9773 renewal information).

Theory of operation. ``AcmeCore.handle(request, now)`` takes one HTTP request under
``/acme/`` and returns ``(answer, effects)``: the HTTP answer (``effects.Answer``) and
what others must do (``Validate`` a challenge with the validators' quorum, ``Issue``
an order's certificate, ``Revoke`` a certificate, ``Later``: one of those after a
delay). The actor performs the effects and feeds their results back: ``validated``,
``issued`` (each returning further effects: retries) and ``revoked`` (returning the
answer a revokeCert waited for: ``handle`` gives ``None`` for it). Nothing here
touches a socket, a thread or a clock.

Invariants:
- every change is written to the store before the answer that shows it is returned,
  so a crash never takes back what a client was told; work in flight is in the store
  as ``processing`` (a challenge, an order), and ``resume(now)`` after a restart gives
  the effects that finish it (validate again, issue again);
- every answer carries a fresh ``Replay-Nonce`` and ``Link: <directory>;rel="index"``;
  every refusal is an ``AcmeProblem`` answered as ``application/problem+json``;
- POST requests are authenticated (``jws.check_request``) before anything else is read
  or changed; resources that take POST-as-GET only answer GET with 405.

The parts: ``accounts`` (§7.3), ``orders`` (§7.4, finalize, certificates),
``authorizations`` (§7.5, §8), ``revocation`` (§7.6, ARI); their common ground
``base``; URLs and JSON ``resources``; records and their store ``records``, ``store``.

Deliberately not done: pre-authorization (newAuthz), notBefore/notAfter, alternate
chains, account orders pagination, CAA (the validators' business, not the core's).
"""

from __future__ import annotations

import re
from typing import Any

from trustchain.actors.acme.accounts import AccountsPart
from trustchain.actors.acme.authorizations import AuthorizationsPart
from trustchain.actors.acme.base import Call, Handled
from trustchain.actors.acme.effects import Answer, Effect
from trustchain.actors.acme.messages import AcmeRequest
from trustchain.actors.acme.nonces import NonceStore
from trustchain.actors.acme.orders import PROOFS_FIELD, OrdersPart
from trustchain.actors.acme.problems import AcmeProblem
from trustchain.actors.acme.records import PROCESSING
from trustchain.actors.acme.resources import Urls, acme_path, answer, json_answer, problem_answer
from trustchain.actors.acme.revocation import RevocationPart
from trustchain.actors.acme.store import AcmeStore
from trustchain.config import AcmeConfig, CaConfig

GET = ("GET", "HEAD")
POST = ("POST",)
_ID = r"([A-Za-z0-9_-]{1,64})"
# path under /acme/ -> (methods, handler name)
ROUTES: list[tuple[re.Pattern[str], tuple[str, ...], str]] = [
    (re.compile(pattern), methods, name)
    for pattern, methods, name in [
        ("directory", GET, "directory"),
        ("new-nonce", GET, "new_nonce"),
        ("new-account", POST, "new_account"),
        ("new-order", POST, "new_order"),
        ("revoke-cert", POST, "revoke_cert"),
        ("key-change", POST, "key_change"),
        (r"renewal-info/([A-Za-z0-9_.-]{1,512})", GET, "renewal_info"),
        (rf"acct/{_ID}", POST, "account"),
        (rf"acct/{_ID}/orders", POST, "orders_list"),
        (rf"order/{_ID}", POST, "order"),
        (rf"order/{_ID}/finalize", POST, "finalize"),
        (rf"authz/{_ID}", POST, "authz"),
        (rf"chall/{_ID}", POST, "challenge"),
        (rf"cert/{_ID}", POST, "certificate"),
    ]
]


class AcmeCore(AccountsPart, OrdersPart, AuthorizationsPart, RevocationPart):
    """``AcmeCore(config.acme, config.ca, AcmeStore(path), NonceStore(n))``."""

    def __init__(
        self, config: AcmeConfig, ca: CaConfig, store: AcmeStore, nonces: NonceStore
    ) -> None:
        super().__init__(config, ca, store, nonces)

    def handle(self, request: AcmeRequest, now: float) -> tuple[Answer | None, list[Effect]]:
        """Answer one request (``None``: the answer comes from ``revoked``); a fault of
        the store raises ``AcmeStoreUnavailable`` (the actor answers it, ``unavailable``)."""
        urls = Urls.of(self.config.base_url, request.url)
        call = Call(request, now, urls, acme_path(request.url))
        try:
            reply, effects = self._route(call)
        except AcmeProblem as problem:
            reply, effects = problem_answer(problem), []
        return (None if reply is None else self.finish(request, reply)), effects

    def problem(self, request: AcmeRequest, problem: AcmeProblem) -> Answer:
        """The answer to ``request`` that refuses it with ``problem``."""
        return self.finish(request, problem_answer(problem))

    def _route(self, call: Call) -> Handled:
        method = call.request.method.upper()
        for pattern, methods, name in ROUTES:
            match = pattern.fullmatch(call.path)
            if match is None:
                continue
            if method not in methods:
                allowed = ", ".join(methods)
                raise AcmeProblem(
                    "methodNotAllowed",
                    f"{method} is not allowed on {call.url}; use {allowed}"
                    + (" (POST-as-GET: an empty payload signed by the account)"
                       if methods == POST else ""),
                    headers=[("Allow", allowed)],
                )  # fmt: skip
            handled: Handled = getattr(self, name)(call, *match.groups())
            return handled
        raise AcmeProblem("malformed", f"nothing at {call.url}; start at the directory "
                          f"({call.urls.directory})", status=404)  # fmt: skip

    # Directory and nonces (§7.1.1, §7.2) ----------------------------------------------------

    def directory(self, call: Call) -> Handled:
        urls = call.urls
        meta: dict[str, Any] = {
            "externalAccountRequired": self.config.eab_required,
            "profiles": {
                name: self._profile_text(name, seconds)
                for name, seconds in sorted(self.config.profiles.items())
            },
        }
        if self.config.terms_of_service:
            meta["termsOfService"] = self.config.terms_of_service
        if self.config.website:
            meta["website"] = self.config.website
        body = {
            "newNonce": urls.new_nonce,
            "newAccount": urls.new_account,
            "newOrder": urls.new_order,
            "revokeCert": urls.revoke_cert,
            "keyChange": urls.key_change,
            "renewalInfo": urls.renewal_info,
            "meta": meta,
        }
        return json_answer(200, body), []

    def _profile_text(self, name: str, seconds: int) -> str:
        """A profile's description in the directory's meta: its lifetime, and what it needs."""
        text = f"certificates valid for {_duration(seconds)} ({seconds} s)"
        if name in self.config.consensus_profiles:
            text += (", for TrustChain assets: domain control and the four-proof consensus "
                     f"(finalize with {PROOFS_FIELD}, the asset's proofs for the CSR)")  # fmt: skip
        return text + (" (the default)" if name == self.config.default_profile else "")

    def new_nonce(self, call: Call) -> Handled:
        status = 200 if call.request.method.upper() == "HEAD" else 204
        return answer(status, headers=[["Cache-Control", "no-store"]]), []

    # Restart and status ---------------------------------------------------------------------

    def resume(self, now: float) -> list[Effect]:
        """After a (re)start: validate again every challenge left processing, issue again
        every order left processing."""
        effects: list[Effect] = []
        for challenge in self.store.challenges_in(PROCESSING):
            authz = self.authz_record(challenge.authz)
            account = self.store.account(authz.account)
            assert account is not None
            effects.append(self.validate_effect(challenge, authz, account))
        for order in self.store.orders_in(PROCESSING):
            effects.append(self.issue_effect(order))
        return effects

    def status(self) -> dict[str, Any]:
        counts = self.store.counts()
        challenges = counts.pop("challenges")
        counts["challenges"] = {
            "validated": challenges.get("valid", 0),
            "failed": challenges.get("invalid", 0),
            "processing": challenges.get("processing", 0),
            "pending": challenges.get("pending", 0),
        }
        counts["nonces"] = len(self.nonces)
        return counts


def _duration(seconds: int) -> str:
    if seconds % 86_400 == 0:
        days = seconds // 86_400
        return f"{days} day{'s' if days > 1 else ''}"
    if seconds % 3_600 == 0:
        return f"{seconds // 3_600} h"
    return f"{seconds} s"
