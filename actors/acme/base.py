"""What every part of the ACME core stands on: its configuration, store and nonces, the
call being answered, request authentication and the statuses that move with time.

``AcmeCore`` (``core.py``) is composed of parts, each a subclass of ``CoreBase``
holding one idea (accounts, orders, authorizations and challenges, revocation and
ARI); they share the state below.

Statuses that time moves (RFC 8555 §7.1.6) are brought up to date when a resource is
read (``current_authz``, ``current_order``): a pending authorization past its expiry
is invalid, a valid one expired; a pending order whose authorizations are all valid
is ready, one with an authorization that is not pending or valid is invalid, and a
pending or ready order past its expiry is invalid. The change is written before it is
shown, so what a client saw is what a restart finds.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from typing import Any

from trustchain.actors.acme.effects import Answer, Effect
from trustchain.actors.acme.identifiers import parse_cert_id
from trustchain.actors.acme.jws import SignedRequest, b64url_decode, check_request, loads_object
from trustchain.actors.acme.messages import AcmeRequest
from trustchain.actors.acme.nonces import NonceStore
from trustchain.actors.acme.problems import AcmeProblem
from trustchain.actors.acme.records import (
    EXPIRED,
    INVALID,
    PENDING,
    READY,
    VALID,
    Account,
    Authorization,
    Certificate,
    Order,
)
from trustchain.actors.acme.resources import JOSE_JSON, Urls, link
from trustchain.actors.acme.store import AcmeStore
from trustchain.config import AcmeConfig, CaConfig

Handled = tuple[Answer | None, list[Effect]]

_ACCOUNT_URL = re.compile(r".*/acct/([A-Za-z0-9_-]{1,64})")

# Codes of another actor's fault (not the request's): retried with backoff.
TRANSIENT = frozenset({
    "actor_unavailable", "actor_crashed", "timeout", "unknown_actor",
    "trust_store_unavailable", "ca_store_unavailable", "hsm_unavailable",
    "log_unavailable", "log_busy",
    "quorum_not_reached",  # too few validators answered: not the applicant's failure
})  # fmt: skip
MAX_ATTEMPTS = 5  # of an effect that met a transient fault; then the resource is invalid
MAX_RETRY_DELAY_S = 60.0


def new_id() -> str:
    """A resource id: 128 bits from the CSPRNG, base64url (URLs are capabilities too)."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Call:
    """One request being answered: the request, the time, its URLs and ACME path."""

    request: AcmeRequest
    now: float
    urls: Urls
    path: str

    @property
    def url(self) -> str:
        return self.request.url


class CoreBase:
    """The state the core's parts share."""

    def __init__(
        self, config: AcmeConfig, ca: CaConfig, store: AcmeStore, nonces: NonceStore
    ) -> None:
        self.config = config
        self.ca = ca
        self.store = store
        self.nonces = nonces
        self.attempts: dict[str, int] = {}  # effects that met a transient fault, by resource

    # Authentication (RFC 8555 §6.2-6.5) ------------------------------------------------

    def signed(self, call: Call, *, jwk: bool = False) -> tuple[SignedRequest, Account | None]:
        """The request's JWS checked; with ``jwk`` the key is embedded (newAccount,
        revokeCert by the certificate's key), else the account's (``kid``), which must be
        valid. Returns the signed request and the account (``None`` with ``jwk``)."""
        media = call.request.content_type.split(";")[0].strip().lower()
        if media != JOSE_JSON:
            raise AcmeProblem(
                "unsupportedMediaType",
                f"an ACME POST is {JOSE_JSON}, not {media or 'without a Content-Type'}",
            )
        request = check_request(call.request.body, call.url, self.nonces, self._account_key,
                                jwk_allowed=jwk)  # fmt: skip
        if request.kid is None:
            return request, None
        account = self._account_of_kid(request.kid)
        if account.status != VALID:
            raise AcmeProblem("unauthorized", f"the account is {account.status}")
        return request, account

    def embeds_jwk(self, call: Call) -> bool:
        """Whether the request's protected header carries a ``jwk`` (else a ``kid``):
        revokeCert takes either. A body that cannot tell is left to ``check_request``."""
        try:
            body = loads_object(call.request.body, "the request body")
            header = loads_object(b64url_decode(body.get("protected"), "protected"), "header")
        except AcmeProblem:
            return False
        return "jwk" in header

    def _account_of_kid(self, kid: str) -> Account:
        match = _ACCOUNT_URL.fullmatch(kid)
        account = self.store.account(match[1]) if match else None
        if account is None:
            raise AcmeProblem("accountDoesNotExist", f"no account {kid}; create one (newAccount)")
        return account

    def _account_key(self, kid: str) -> dict[str, Any]:
        return self._account_of_kid(kid).jwk

    def signed_by_account(self, call: Call) -> tuple[SignedRequest, Account]:
        request, account = self.signed(call)
        assert account is not None
        return request, account

    @staticmethod
    def owned(account: Account, owner: str, what: str) -> None:
        if owner != account.id:
            raise AcmeProblem("unauthorized", f"{what} belongs to another account")

    @staticmethod
    def payload(request: SignedRequest) -> dict[str, Any]:
        """The payload as an object; POST-as-GET reads as {} here."""
        return {} if request.post_as_get() else request.json()

    @staticmethod
    def post_as_get(request: SignedRequest, what: str) -> None:
        if not request.post_as_get():
            raise AcmeProblem("malformed", f"{what} is read with POST-as-GET (an empty payload)")

    # Statuses that time moves (§7.1.6) --------------------------------------------------

    def current_authz(self, authz: Authorization, now: float) -> Authorization:
        if authz.status in (PENDING, VALID) and now >= authz.expires:
            authz = replace(authz, status=INVALID if authz.status == PENDING else EXPIRED)
            self.store.put_authorization(authz)
        return authz

    def current_order(self, order: Order, now: float) -> Order:
        if order.status not in (PENDING, READY):
            return order
        status = order.status
        error_json: dict[str, Any] | None
        if now >= order.expires:
            status = INVALID
            expired = AcmeProblem("unauthorized", "the order expired before it was finalized")
            error_json = expired.to_json()
        else:
            error_json = order.error
            authzs = [self.authz_record(a) for a in order.authorizations]
            authzs = [self.current_authz(a, now) for a in authzs]
            failed = [a for a in authzs if a.status not in (PENDING, VALID)]
            if failed:
                status, error_json = INVALID, self._failure_of(failed[0])
            elif all(a.status == VALID for a in authzs):
                status = READY
            else:
                status = PENDING
        if (status, error_json) != (order.status, order.error):
            order = replace(order, status=status, error=error_json)
            self.store.put_order(order)
        return order

    def _failure_of(self, authz: Authorization) -> dict[str, Any]:
        for challenge in self.store.challenges_of(authz.id):
            if challenge.error is not None:
                return challenge.error
        value = authz.identifier[1]
        return AcmeProblem("unauthorized", f"the authorization for {value} is {authz.status}",
                           ).to_json()  # fmt: skip

    def authz_record(self, authz_id: str) -> Authorization:
        authz = self.store.authorization(authz_id)
        if authz is None:  # an order never names an authorization that is not stored
            raise AssertionError(f"order names missing authorization {authz_id}")
        return authz

    def certificate_by_ari_id(self, text: str) -> Certificate | None:
        """The certificate an ARI certID names (RFC 9773 §4.1), matched on AKI and serial
        (so any valid spelling of the id finds it)."""
        aki, serial = parse_cert_id(text)
        certificate = self.store.certificate_by_serial(format(serial, "x"))
        if certificate is None or parse_cert_id(certificate.cert_id)[0] != aki:
            return None
        return certificate

    # Every answer -------------------------------------------------------------------------

    def finish(self, request: AcmeRequest, reply: Answer) -> Answer:
        """Every answer carries a fresh nonce (§6.5) and the directory's Link (§7.1);
        an answer to HEAD has no body."""
        urls = Urls.of(self.config.base_url, request.url)
        headers = [["Replay-Nonce", self.nonces.new()], link(urls.directory, "index"),
                   *reply["headers"]]  # fmt: skip
        body = b"" if request.method.upper() == "HEAD" else reply["body"]
        return {**reply, "headers": headers, "body": body}

    # Retries of effects that met another actor's fault -----------------------------------

    def retry_delay(self, key: str) -> float | None:
        """The delay before the next attempt for ``key``, or None once attempts run out."""
        attempt = self.attempts.get(key, 0) + 1
        if attempt >= MAX_ATTEMPTS:
            self.attempts.pop(key, None)
            return None
        self.attempts[key] = attempt
        return min(MAX_RETRY_DELAY_S, 2.0 ** (attempt - 1))
