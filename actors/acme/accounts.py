"""Accounts (RFC 8555 §7.3): newAccount, reading and updating an account, deactivation,
key rollover, and the account's orders list.

- An account is its key: one account per key (the RFC 7638 thumbprint is unique in
  the store). newAccount with a key that has an account answers 200 with that
  account's Location (§7.3.1), ``onlyReturnExisting`` never creates one.
- Contacts are ``mailto:`` URLs only (``unsupportedContact`` otherwise), one address
  each, without hfields (``invalidContact``).
- When ``acme.terms_of_service`` is set, ``termsOfServiceAgreed`` must be true;
  when ``acme.eab_required``, an External Account Binding MACed with one of
  ``acme.eab_keys`` must come along (``externalAccountRequired``, §7.3.4).
- keyChange (§7.3.5) to a key that another account holds is 409 ``conflict`` with
  that account's Location.
- Deactivation (§7.3.6) is final: every later request signed by the account is
  ``unauthorized``.

Not done: a ToS change that needs the client to agree again (``userActionRequired``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from trustchain.actors.acme.base import Call, CoreBase, Handled, new_id
from trustchain.actors.acme.jws import check_eab, check_key_change, public_jwk, thumbprint
from trustchain.actors.acme.problems import AcmeProblem
from trustchain.actors.acme.records import DEACTIVATED, INVALID, VALID, Account
from trustchain.actors.acme.resources import account_json, json_answer

MAX_CONTACTS = 10
# An addr-spec without comments or quoting: enough to send mail to, and nothing more.
_MAILBOX = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+"
)


def check_contacts(contact: Any) -> tuple[str, ...]:
    if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
        raise AcmeProblem("malformed", "'contact' must be a list of URLs")
    if len(contact) > MAX_CONTACTS:
        raise AcmeProblem("invalidContact", f"at most {MAX_CONTACTS} contacts")
    for url in contact:
        if not url.lower().startswith("mailto:"):
            raise AcmeProblem("unsupportedContact",
                              f"{url!r}: this server takes mailto: contacts only")  # fmt: skip
        address = url[len("mailto:") :]
        if "?" in address or "," in address or not _MAILBOX.fullmatch(address):
            raise AcmeProblem(
                "invalidContact",
                f"{url!r} is not one e-mail address (mailto:name@example.com, no hfields)",
            )
    return tuple(contact)


class AccountsPart(CoreBase):
    def new_account(self, call: Call) -> Handled:
        request, _ = self.signed(call, jwk=True)
        assert request.jwk is not None
        payload = self.payload(request)
        key = public_jwk(request.jwk)
        existing = self.store.account_by_thumbprint(thumbprint(key))
        location = [["Location", ""]]
        if existing is not None:
            if existing.status != VALID:  # §7.3.6: the key authorizes nothing any more
                raise AcmeProblem("unauthorized", f"the account with this key is "
                                  f"{existing.status}")  # fmt: skip
            location[0][1] = call.urls.account(existing.id)
            return json_answer(200, account_json(existing, call.urls), location), []
        if payload.get("onlyReturnExisting") is True:
            raise AcmeProblem("accountDoesNotExist", "no account has this key")
        contact = check_contacts(payload.get("contact", []))
        agreed = payload.get("termsOfServiceAgreed") is True
        if self.config.terms_of_service and not agreed:
            raise AcmeProblem(
                "malformed",
                f"agree to the terms of service ({self.config.terms_of_service}): "
                "send termsOfServiceAgreed: true",
            )
        eab = payload.get("externalAccountBinding")
        eab_kid = None
        if eab is not None:
            eab_kid = check_eab(eab, key, call.urls.new_account, self.config.eab_keys)
        elif self.config.eab_required:
            raise AcmeProblem(
                "externalAccountRequired",
                "this server needs an External Account Binding (RFC 8555 §7.3.4): ask the "
                "operator for a key id and HMAC key",
            )
        account = Account(new_id(), key, thumbprint(key), contact, VALID, call.now, agreed,
                          eab_kid)  # fmt: skip
        self.store.put_account(account)
        location[0][1] = call.urls.account(account.id)
        return json_answer(201, account_json(account, call.urls), location), []

    def account(self, call: Call, account_id: str) -> Handled:
        request, account = self.signed_by_account(call)
        self.owned(account, account_id, "this account")
        payload = self.payload(request)
        changed = account
        if "contact" in payload:
            changed = replace(changed, contact=check_contacts(payload["contact"]))
        if payload.get("termsOfServiceAgreed") is True:
            changed = replace(changed, terms_agreed=True)
        if "status" in payload:
            if payload["status"] != DEACTIVATED:
                raise AcmeProblem("malformed", "an account's status can only be set to "
                                  "'deactivated'")  # fmt: skip
            changed = replace(changed, status=DEACTIVATED)
        if changed != account:
            with self.store.batch():
                self.store.put_account(changed)
                if changed.status == DEACTIVATED:
                    self._cancel_pending(changed)
        return json_answer(200, account_json(changed, call.urls)), []

    def _cancel_pending(self, account: Account) -> None:
        """A deactivated account's pending orders will never finish (§7.3.6)."""
        for order in self.store.orders_of(account.id):
            if order.status in ("pending", "ready"):
                problem = AcmeProblem("unauthorized", "the account was deactivated")
                self.store.put_order(replace(order, status=INVALID, error=problem.to_json()))

    def key_change(self, call: Call) -> Handled:
        request, account = self.signed_by_account(call)
        new_key = check_key_change(request, call.urls.account(account.id), account.jwk)
        print_ = thumbprint(new_key)
        holder = self.store.account_by_thumbprint(print_)
        if holder is not None:
            raise AcmeProblem("conflict", "another account holds the new key",
                              headers=[("Location", call.urls.account(holder.id))])  # fmt: skip
        changed = replace(account, jwk=new_key, thumbprint=print_)
        self.store.put_account(changed)
        return json_answer(200, account_json(changed, call.urls)), []

    def orders_list(self, call: Call, account_id: str) -> Handled:
        request, account = self.signed_by_account(call)
        self.owned(account, account_id, "this orders list")
        self.post_as_get(request, "an account's orders")
        orders = [self.current_order(o, call.now) for o in self.store.orders_of(account.id)]
        urls: list[str] = [call.urls.order(o.id) for o in orders if o.status != INVALID]
        body: dict[str, Any] = {"orders": urls}
        return json_answer(200, body), []
