"""The ACME server's durable state in SQLite (``acme.database``): accounts, orders,
authorizations, challenges and certificates (``records``).

Like the CA's and the trust store: WAL with synchronous=FULL (``sqlite.open_database``),
so a write that returned is on disk; every write is one transaction, and ``batch()``
makes several writes one (a challenge's result with its authorization and the orders
it readies), all or nothing. The core writes before it answers, so nothing a client
was told is lost by a crash.

A fault of the environment (a full disk, an I/O error, a read-only or locked file:
SQLite's FULL, IOERR, READONLY, ... and ``OSError``) raises ``AcmeStoreUnavailable``
with nothing changed (a failed write inside a batch spoils the batch: it rolls back
whole); any other SQLite error is a bug and goes through as it is. That machinery
(transactions, ``batch()``, the typed faults) is ``sqlite.FaultTypedStore`` and
``sqlite.typed``, shared with the trust store.

Records are replaced whole (``put_*``): the core computes the new record, the store
keeps it. Orders list their authorizations (an authorization is shared by the orders
of one account that reuse it; ``order_authorizations`` finds the orders to update).
Certificates keep their names apart (``certificate_names``) for the per-name rate limit.

Accounts are read on every request (the JWS's ``kid``), so ``account`` keeps the ones it
read (``MAX_CACHED_ACCOUNTS``, ``FaultTypedStore.remembered``): this store is their only
writer, ``put_account`` drops the one it writes, and a rollback drops them all.

The connection belongs to the thread that opened it: the actor opens the store in
``setup()``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trustchain.actors.acme.records import (
    Account,
    Authorization,
    Certificate,
    Challenge,
    Order,
)
from trustchain.actors.acme.schema import SCHEMA, upsert
from trustchain.actors.sqlite import FaultTypedStore, Remembered, typed
from trustchain.supervisors.errors import TrustChainError


class AcmeStoreUnavailable(TrustChainError):
    """The ACME database cannot be read or written (a full disk, an I/O error, a
    read-only file): a fault of the environment. Nothing was changed; the actor probes
    with backoff and shows the fault in status and /ready. Ask again after
    ``retry_after_s``."""

    code = "acme_store_unavailable"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


MAX_CACHED_ACCOUNTS = 10_000  # accounts kept in memory (``Remembered``)


class AcmeStore(FaultTypedStore):
    """The ACME server's records in one SQLite database (a path, or ":memory:")."""

    unavailable_error = AcmeStoreUnavailable
    what = "ACME"

    def __init__(self, path: str | Path = ":memory:") -> None:
        super().__init__(path, SCHEMA, make_parent=True)
        self._accounts: Remembered[str, Account] = self.remembered(MAX_CACHED_ACCOUNTS)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self._db.execute(sql, args).fetchall()

    @typed
    def probe(self, now: float) -> None:
        """A small durable write: it succeeds once the disk takes writes again."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO probe VALUES (0, ?)", (now,))

    # Accounts -------------------------------------------------------------------------

    @typed
    def put_account(self, a: Account) -> None:
        self._accounts.pop(a.id, None)
        with self._transaction() as db:
            db.execute(
                upsert("accounts"),
                (a.id, _json(a.jwk), a.thumbprint, _json(list(a.contact)), a.status,
                 a.created, int(a.terms_agreed), a.eab_kid),
            )  # fmt: skip

    @typed
    def account(self, account_id: str) -> Account | None:
        cached = self._accounts.get(account_id)
        if cached is not None:
            return cached
        rows = self._read("SELECT * FROM accounts WHERE id = ?", (account_id,))
        return self._accounts.keep(account_id, _account(rows[0])) if rows else None

    @typed
    def account_by_thumbprint(self, thumbprint: str) -> Account | None:
        rows = self._read("SELECT * FROM accounts WHERE thumbprint = ?", (thumbprint,))
        return _account(rows[0]) if rows else None

    # Orders ---------------------------------------------------------------------------

    @typed
    def put_order(self, o: Order) -> None:
        with self._transaction() as db:
            db.execute(
                upsert("orders"),
                (o.id, o.account, o.status, _json([list(i) for i in o.identifiers]), o.profile,
                 o.created, o.expires, _json(o.error), o.csr, o.certificate, o.replaces),
            )  # fmt: skip
            if o.proofs is not None:
                db.execute("INSERT OR REPLACE INTO order_proofs VALUES (?, ?)",
                           (o.id, _json(o.proofs)))  # fmt: skip
            db.execute("DELETE FROM order_authorizations WHERE order_id = ?", (o.id,))
            db.executemany(
                "INSERT INTO order_authorizations VALUES (?, ?, ?)",
                [(o.id, i, authz) for i, authz in enumerate(o.authorizations)],
            )

    @typed
    def order(self, order_id: str) -> Order | None:
        rows = self._read("SELECT * FROM orders WHERE id = ?", (order_id,))
        return self._order(rows[0]) if rows else None

    def _order(self, row: Any) -> Order:
        authzs = self._read(
            "SELECT authz FROM order_authorizations WHERE order_id = ? ORDER BY position",
            (row[0],),
        )
        proofs = self._read("SELECT proofs FROM order_proofs WHERE order_id = ?", (row[0],))
        return Order(
            id=row[0], account=row[1], status=row[2],
            identifiers=tuple((t, v) for t, v in json.loads(row[3])),
            authorizations=tuple(a for (a,) in authzs), profile=row[4], created=row[5],
            expires=row[6], error=_loads(row[7]), csr=row[8], certificate=row[9],
            replaces=row[10], proofs=_loads(proofs[0][0]) if proofs else None,
        )  # fmt: skip

    @typed
    def orders_of(self, account_id: str) -> list[Order]:
        rows = self._read("SELECT * FROM orders WHERE account = ? ORDER BY created, rowid",
                          (account_id,))  # fmt: skip
        return [self._order(row) for row in rows]

    @typed
    def orders_in(self, status: str) -> list[Order]:
        rows = self._read(
            "SELECT * FROM orders WHERE status = ? ORDER BY created, rowid", (status,)
        )
        return [self._order(row) for row in rows]

    @typed
    def orders_with(self, authz_id: str) -> list[Order]:
        rows = self._read(
            "SELECT o.* FROM orders o JOIN order_authorizations a ON a.order_id = o.id "
            "WHERE a.authz = ? ORDER BY o.created, o.rowid",
            (authz_id,),
        )
        return [self._order(row) for row in rows]

    @typed
    def orders_created_since(self, account_id: str, since: float) -> list[float]:
        """When each of the account's orders newer than ``since`` was created, oldest first."""
        rows = self._read("SELECT created FROM orders WHERE account = ? AND created > ? "
                          "ORDER BY created", (account_id, since))  # fmt: skip
        return [created for (created,) in rows]

    @typed
    def order_replacing(self, cert_id: str) -> Order | None:
        """An order that renews the certificate ``cert_id`` and is not invalid."""
        rows = self._read("SELECT * FROM orders WHERE replaces = ? AND status != 'invalid'",
                          (cert_id,))  # fmt: skip
        return self._order(rows[0]) if rows else None

    # Authorizations and challenges ------------------------------------------------------

    @typed
    def put_authorization(self, a: Authorization) -> None:
        with self._transaction() as db:
            db.execute(
                upsert("authorizations"),
                (a.id, a.account, a.identifier[0], a.identifier[1], int(a.wildcard), a.status,
                 a.created, a.expires, a.validated, _json(a.evidence)),
            )  # fmt: skip

    @typed
    def authorization(self, authz_id: str) -> Authorization | None:
        rows = self._read("SELECT * FROM authorizations WHERE id = ?", (authz_id,))
        return _authorization(rows[0]) if rows else None

    @typed
    def reusable_authorization(
        self, account_id: str, identifier: tuple[str, str], wildcard: bool, since: float,
        now: float,
    ) -> Authorization | None:  # fmt: skip
        """The account's newest valid authorization for ``identifier`` validated after
        ``since`` and not expired at ``now``."""
        rows = self._read(
            "SELECT * FROM authorizations WHERE account = ? AND type = ? AND value = ? "
            "AND wildcard = ? AND status = 'valid' AND validated > ? AND expires > ? "
            "ORDER BY validated DESC LIMIT 1",
            (account_id, identifier[0], identifier[1], int(wildcard), since, now),
        )
        return _authorization(rows[0]) if rows else None

    @typed
    def put_challenge(self, c: Challenge) -> None:
        with self._transaction() as db:
            db.execute(
                upsert("challenges"),
                (c.id, c.authz, c.type, c.token, c.status, c.validated, _json(c.error)),
            )

    @typed
    def challenge(self, challenge_id: str) -> Challenge | None:
        rows = self._read("SELECT * FROM challenges WHERE id = ?", (challenge_id,))
        return _challenge(rows[0]) if rows else None

    @typed
    def challenges_of(self, authz_id: str) -> list[Challenge]:
        rows = self._read("SELECT * FROM challenges WHERE authz = ? ORDER BY rowid", (authz_id,))
        return [_challenge(row) for row in rows]

    @typed
    def challenges_in(self, status: str) -> list[Challenge]:
        rows = self._read("SELECT * FROM challenges WHERE status = ? ORDER BY rowid", (status,))
        return [_challenge(row) for row in rows]

    # Certificates -----------------------------------------------------------------------

    @typed
    def put_certificate(self, c: Certificate) -> None:
        with self._transaction() as db:
            db.execute(
                upsert("certificates"),
                (c.id, c.serial, c.cert_id, c.account, c.order, c.chain, _json(list(c.names)),
                 c.issued, c.not_before, c.not_after, c.revoked, c.reason),
            )  # fmt: skip
            db.executemany(
                "INSERT OR IGNORE INTO certificate_names VALUES (?, ?, ?)",
                [(name, c.issued, c.id) for name in c.names],
            )

    @typed
    def certificate(self, certificate_id: str) -> Certificate | None:
        rows = self._read("SELECT * FROM certificates WHERE id = ?", (certificate_id,))
        return _certificate(rows[0]) if rows else None

    @typed
    def certificate_by_serial(self, serial: str) -> Certificate | None:
        rows = self._read("SELECT * FROM certificates WHERE serial = ?", (serial.lower(),))
        return _certificate(rows[0]) if rows else None

    @typed
    def certificate_by_cert_id(self, cert_id: str) -> Certificate | None:
        rows = self._read("SELECT * FROM certificates WHERE cert_id = ?", (cert_id,))
        return _certificate(rows[0]) if rows else None

    @typed
    def certificates_named_since(self, name: str, since: float) -> list[float]:
        """When each certificate for ``name`` newer than ``since`` was issued, oldest first."""
        rows = self._read("SELECT issued FROM certificate_names WHERE name = ? AND issued > ? "
                          "ORDER BY issued", (name, since))  # fmt: skip
        return [issued for (issued,) in rows]

    # Pruning ----------------------------------------------------------------------------

    @typed
    def prune(self, before: float) -> dict[str, int]:
        """Forget what no client can use any more, in one transaction: orders that expired
        before ``before`` (and are not being issued), authorizations that expired before it
        and no kept order names (with their challenges), and certificates that stopped
        being valid before it (with their names). Accounts stay. What was deleted, by
        kind."""
        with self._transaction() as db:
            orders = db.execute(
                "DELETE FROM orders WHERE expires < ? AND status != 'processing'", (before,)
            ).rowcount
            for table in ("order_authorizations", "order_proofs"):
                db.execute(f"DELETE FROM {table} WHERE order_id NOT IN (SELECT id FROM orders)")
            authorizations = db.execute(
                "DELETE FROM authorizations WHERE expires < ? AND id NOT IN "
                "(SELECT authz FROM order_authorizations)", (before,)
            ).rowcount  # fmt: skip
            challenges = db.execute("DELETE FROM challenges WHERE authz NOT IN "
                                    "(SELECT id FROM authorizations)").rowcount  # fmt: skip
            certificates = db.execute(
                "DELETE FROM certificates WHERE not_after < ?", (before,)
            ).rowcount
            db.execute("DELETE FROM certificate_names WHERE certificate NOT IN "
                       "(SELECT id FROM certificates)")  # fmt: skip
        return {"orders": orders, "authorizations": authorizations, "challenges": challenges,
                "certificates": certificates}  # fmt: skip

    # Status -----------------------------------------------------------------------------

    @typed
    def counts(self) -> dict[str, Any]:
        """Accounts; orders, authorizations and challenges by status; certificates."""

        def by_status(table: str) -> dict[str, int]:
            rows = self._read(f"SELECT status, count(*) FROM {table} GROUP BY status")
            return {status: n for status, n in rows}

        (accounts,) = self._read("SELECT count(*) FROM accounts")[0]
        (certificates,) = self._read("SELECT count(*) FROM certificates")[0]
        return {
            "accounts": accounts,
            "orders": by_status("orders"),
            "authorizations": by_status("authorizations"),
            "challenges": by_status("challenges"),
            "certificates": certificates,
        }


def _account(row: Any) -> Account:
    return Account(
        id=row[0], jwk=json.loads(row[1]), thumbprint=row[2], contact=tuple(json.loads(row[3])),
        status=row[4], created=row[5], terms_agreed=bool(row[6]), eab_kid=row[7],
    )  # fmt: skip


def _authorization(row: Any) -> Authorization:
    return Authorization(
        id=row[0], account=row[1], identifier=(row[2], row[3]), wildcard=bool(row[4]),
        status=row[5], created=row[6], expires=row[7], validated=row[8],
        evidence=_loads(row[9]),
    )  # fmt: skip


def _challenge(row: Any) -> Challenge:
    return Challenge(id=row[0], authz=row[1], type=row[2], token=row[3], status=row[4],
                     validated=row[5], error=_loads(row[6]))  # fmt: skip


def _certificate(row: Any) -> Certificate:
    return Certificate(
        id=row[0], serial=row[1], cert_id=row[2], account=row[3], order=row[4], chain=row[5],
        names=tuple(json.loads(row[6])), issued=row[7], not_before=row[8], not_after=row[9],
        revoked=row[10], reason=row[11],
    )  # fmt: skip
