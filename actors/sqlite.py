"""The SQLite files the actors keep (the CA's database, the consensus's state, the ACME
server's): opened one way and changed in transactions that either happen whole or not
at all.

``FaultTypedStore`` is the one copy of a store's transaction machinery (the trust
store and the ACME store are built on it): every write is one transaction
(``BEGIN IMMEDIATE`` ... ``COMMIT``, ``ROLLBACK`` on any error), ``batch()`` makes
every write inside it one, and a write that fails inside a batch spoils it (the batch
rolls back whole, even if the caller swallowed the error). A method wrapped in
``typed`` turns a fault of the environment (``is_store_fault``: a full disk, an I/O
error, a read-only or locked file, ``OSError``) into the store's own typed error
(``unavailable_error``, ``details["cause"]`` the SQLite error, ``retry_after_s``);
any other SQLite error is a bug and goes through as it is.

A store may keep records it read in memory (``remembered(most)``: a dict of its own): it
is their only writer, so it drops one when it writes it, and every such dict is
emptied when a transaction rolls back (a read inside it may have seen its writes)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, Concatenate, ParamSpec, Protocol, TypeVar

from trustchain.supervisors.errors import TrustChainError

# SQLite's primary result codes that are faults of the environment, not bugs.
FAULT_CODES = frozenset({
    sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_PERM, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOLFS,
})  # fmt: skip

_P = ParamSpec("_P")
_T = TypeVar("_T")


def open_database(
    path: str | Path, schema: str, *, foreign_keys: bool = False
) -> sqlite3.Connection:
    """WAL with synchronous=FULL (a commit is durable when it returns), autocommit off
    but for explicit ``transaction``s, and ``schema`` applied."""
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if foreign_keys:
        db.execute("PRAGMA foreign_keys=ON")
    db.executescript(schema)
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception, a failed COMMIT's
    included. The exception raised is the first one: SQLite may have rolled back by
    itself (a full disk at COMMIT), and then a ROLLBACK's own error ("no transaction is
    active") would hide the cause."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def is_store_fault(exc: BaseException) -> bool:
    """A fault of the disk or the file (retry later), not a bug in the statements."""
    if isinstance(exc, OSError):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in FAULT_CODES


_K = TypeVar("_K")
_V = TypeVar("_V")


class Remembered(dict[_K, _V]):
    """Records a store read, kept in memory (``FaultTypedStore.remembered``): at most
    ``most``, all dropped when one more would not fit (they are read again)."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most

    def keep(self, key: _K, value: _V) -> _V:
        if len(self) >= self.most:
            self.clear()
        self[key] = value
        return value


class FaultTypedStore:
    """A store in one SQLite database (a path, or ":memory:") whose faults of the
    environment are its typed error. A subclass names that error
    (``unavailable_error``) and its database in messages (``what``: "the {what}
    database cannot be read or written ...")."""

    unavailable_error: ClassVar[type[TrustChainError]]
    what: ClassVar[str]
    # what a write in a batch already spoiled is told
    earlier_write_failed: ClassVar[str] = "a write of this transaction failed"

    def __init__(self, path: str | Path, schema: str, *, make_parent: bool = False) -> None:
        """Open (``open_database``; its folder made first if ``make_parent``): a fault
        of the environment is the typed error here too."""
        try:
            if make_parent and str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = open_database(path, schema)
        except (sqlite3.Error, OSError) as exc:
            if not is_store_fault(exc):
                raise
            raise self._unavailable(exc) from exc
        self._in_batch = False
        self._spoiled = False  # a write failed in the batch under way: it rolls back
        self.writes = 0  # writes begun (``_transaction``s): has a batch written yet?
        self._remembered: list[Remembered[Any, Any]] = []  # emptied at every rollback

    def remembered(self, most: int) -> Remembered[Any, Any]:
        """Records read before, at most ``most`` (see the module's theory); the caller
        drops what it writes."""
        kept: Remembered[Any, Any] = Remembered(most)
        self._remembered.append(kept)
        return kept

    def _forget(self) -> None:
        for kept in self._remembered:
            kept.clear()

    def close(self) -> None:
        self._db.close()

    def _fault_store(self) -> FaultTypedStore:
        return self

    def _unavailable(self, exc: BaseException) -> TrustChainError:
        name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        return self.unavailable_error(
            f"the {self.what} database cannot be read or written ({name}: {exc}); nothing "
            "was changed: try again shortly",
            cause=f"{name}: {exc}",
            retry_after_s=1,
        )

    def _rolled_back(self, what_failed: str) -> TrustChainError:
        return self.unavailable_error(
            f"{what_failed}: it is rolled back whole", cause="rolled back", retry_after_s=1
        )

    def _spoil(self) -> None:
        if self._in_batch:
            self._spoiled = True

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction, or a part of the batch under way."""
        self.writes += 1
        if self._in_batch:
            if self._spoiled:
                raise self._rolled_back(self.earlier_write_failed)
            yield self._db
            return
        db = self._db
        if db.in_transaction:  # left open by a failure whose ROLLBACK failed too
            db.execute("ROLLBACK")
        try:
            with transaction(db):
                yield db
        except BaseException:
            self._forget()
            raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write of this store inside the block is one transaction: all commit
        when the block ends, none if it raises or any write in it failed (then the
        store's ``unavailable_error``, even if the block swallowed the write's error).
        Nested batches join the outer one."""
        if self._in_batch:
            yield
            return
        try:
            with self._transaction():
                self._in_batch, self._spoiled = True, False
                try:
                    yield
                finally:
                    self._in_batch = False
                if self._spoiled:
                    raise self._rolled_back("a write of this transaction failed")
        except (sqlite3.Error, OSError) as exc:  # (rolled back: ``_transaction`` forgot)
            if not is_store_fault(exc):
                raise
            raise self._unavailable(exc) from exc
        finally:
            self._spoiled = False


class InFaultTypedStore(Protocol):
    """A ``FaultTypedStore``, or a part of one kept in its own class (its methods read
    and write the store's database and join its batch)."""

    def _fault_store(self) -> FaultTypedStore: ...


_S = TypeVar("_S", bound=InFaultTypedStore)


def typed(method: Callable[Concatenate[_S, _P], _T]) -> Callable[Concatenate[_S, _P], _T]:
    """A fault of the environment in ``method`` raises the store's ``unavailable_error``
    (and spoils the batch it happened in); other errors go through as they are."""

    @functools.wraps(method)
    def typed_method(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            store = self._fault_store()
            store._spoil()
            if not is_store_fault(exc):
                raise
            raise store._unavailable(exc) from exc

    return typed_method
