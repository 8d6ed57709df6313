"""One writer per durable store: an operating-system lock held for the life of the process.

Every store TrustChain writes (the CT tiles and index, the CA database and CRL
directory, the SoftHSM token directory, the renewal directory, and with
``trust.enabled`` the trust database and the validators' key directory) gets a lock
file: ``.trustchain.lock`` inside a directory store, ``<name>.lock`` beside a
file store (SQLite). Locking is ``flock(LOCK_EX | LOCK_NB)`` on that file,
opened ``O_CLOEXEC`` so no child process (``softhsm2-util``) inherits it.

Invariants:

* A flock belongs to the open file description, so a second open conflicts
  even in the same process: a second start in one process is refused too.
* The kernel drops the lock when the process ends, however it ends (SIGKILL
  included): there is no stale lock to clean up, so the file is never deleted
  (deleting it would let two processes lock two different inodes of one name).
* The holder writes its pid into the file after locking. The pid is only for
  the message the refused process prints; the lock alone decides.

Not done: waiting for a lock (a second TrustChain on the same stores is a
mistake to report, not to queue behind), and network filesystems, where
flock may be emulated or absent; stores are expected on a local disk.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trustchain.config import Config
from trustchain.supervisors import TrustChainError

DIRECTORY_LOCK = ".trustchain.lock"
PID_READ_S = 0.5  # how long to wait for a holder that has locked but not yet written its pid


@dataclasses.dataclass(frozen=True)
class Store:
    """A durable store: where it is, and the config key that names it (for messages)."""

    path: Path
    key: str
    directory: bool
    mode: int = 0o755  # for a directory store created here

    @property
    def lock_file(self) -> Path:
        if self.directory:
            return self.path / DIRECTORY_LOCK
        return self.path.with_name(self.path.name + ".lock")


class StoreLocked(TrustChainError):
    """Another process (another TrustChain) holds the store's lock."""

    code = "store_locked"

    def __init__(self, store: Store, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"{store.path} is in use by another TrustChain ({holder}); "
            f"stop it first, or point {store.key} elsewhere",
            store=str(store.path),
            pid=pid,
        )
        self.store = store
        self.pid = pid


class StoreUnavailable(TrustChainError):
    """The store's lock file cannot be created or locked (permissions, read-only disk)."""

    code = "store_unavailable"


class StoreLock:
    """One held lock; ``release()`` (or the process ending) frees it."""

    def __init__(self, store: Store, fd: int) -> None:
        self.store = store
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, store: Store) -> StoreLock:
        """Lock ``store`` (creating its directory if missing) or raise ``StoreLocked``."""
        try:
            directory = store.path if store.directory else store.path.parent
            directory.mkdir(parents=True, exist_ok=True, mode=store.mode)
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(store.lock_file, flags, 0o600)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot lock {store.path} ({store.key}): {exc.strerror}: {exc.filename}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            raise StoreLocked(store, pid) from None
        except OSError as exc:
            os.close(fd)
            raise StoreUnavailable(f"cannot lock {store.path} ({store.key}): {exc}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(store, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _holder_pid(fd: int) -> int | None:
    deadline = time.monotonic() + PID_READ_S
    while True:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


class StoreLocks:
    """The locks of every store of one TrustChain; a context manager that releases them."""

    def __init__(self, locks: list[StoreLock]) -> None:
        self.locks = locks

    def __enter__(self) -> StoreLocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.release()


def softhsm_token_dir(conf: Path) -> Path | None:
    """The ``directories.tokendir`` a SoftHSM config names (None if no file or no key)."""
    try:
        text = conf.read_text()
    except FileNotFoundError:
        return None
    found = None
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#") and key.strip() == "directories.tokendir":
            found = Path(value.strip())
    return found


def token_store(conf: Path, tokendir: Path) -> Store:
    return Store(tokendir, f"directories.tokendir in {conf}", directory=True, mode=0o700)


def stores_of(config: Config) -> list[Store]:
    """Every durable store of TrustChain's tree under ``config``, in locking order."""
    stores = [
        Store(config.ctlog.storage_dir, "ctlog.storage_dir", directory=True),
        Store(config.ctlog.index_db, "ctlog.index_db", directory=False),
        Store(config.ca.database, "ca.database", directory=False),
        Store(config.ca.crl_dir, "ca.crl_dir", directory=True),
    ]
    if config.hsm.softhsm2_conf:
        conf = Path(config.hsm.softhsm2_conf)
        tokendir = softhsm_token_dir(conf)
        if tokendir is not None:  # without its config SoftHSM opens no token: nothing to guard
            stores.append(token_store(conf, tokendir))
    stores.append(Store(config.renewal.directory, "renewal.directory", directory=True, mode=0o700))
    if config.trust.enabled:  # the consensus's state and the validators' keys
        stores.append(Store(config.trust.database, "trust.database", directory=False))
        stores.append(Store(config.trust.key_dir, "trust.key_dir", directory=True, mode=0o700))
    if config.resolver.enabled:  # ACME dns-01 TXT records published in the zone
        stores.append(Store(config.resolver.challenge_db, "resolver.challenge_db",
                            directory=False))  # fmt: skip
    if acme_runs(config):  # accounts, orders, authorizations, challenges, certificates
        stores.append(Store(config.acme.database, "acme.database", directory=False))
    return stores


def acme_runs(config: Config) -> bool:
    """ACME is served with the HTTP edge and the validators' quorum (its domain control)."""
    return config.acme.enabled and config.trust.enabled and config.http.enabled


def lock_stores(config: Config) -> StoreLocks:
    """Lock every store, or none: raises ``StoreLocked`` naming the first one held elsewhere."""
    held: list[StoreLock] = []
    seen: set[str] = set()
    try:
        for store in stores_of(config):
            where = os.path.realpath(store.lock_file)
            if where in seen:  # two keys naming one place: one lock (a second would conflict)
                continue
            seen.add(where)
            held.append(StoreLock.acquire(store))
    except BaseException:
        StoreLocks(held).release()
        raise
    return StoreLocks(held)


@contextmanager
def softhsm_token_locked(conf: Path) -> Iterator[StoreLock]:
    """Hold the SoftHSM token directory's lock for a moment (``trustchain hsm init``).

    With no config yet, the directory is the one ``prepare_softhsm_token``
    creates: ``tokens`` beside the config.
    """
    tokendir = softhsm_token_dir(conf)
    if tokendir is None:
        conf.resolve().parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # holds the PINs
        tokendir = conf.resolve().parent / "tokens"
    lock = StoreLock.acquire(token_store(conf, tokendir))
    try:
        yield lock
    finally:
        lock.release()
