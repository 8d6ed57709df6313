"""actors/locks.py: where the lock files are, what a refusal says, all or nothing."""

from __future__ import annotations

import dataclasses
import fcntl
import os
from pathlib import Path

import pytest

from trustchain.actors import locks
from trustchain.actors.locks import (
    DIRECTORY_LOCK,
    Store,
    StoreLock,
    StoreLocked,
    StoreUnavailable,
    lock_stores,
    softhsm_token_dir,
    stores_of,
)
from trustchain.config import load_config


def config_under(directory: Path, softhsm2_conf: str = ""):
    config = load_config()
    return dataclasses.replace(
        config,
        hsm=dataclasses.replace(config.hsm, softhsm2_conf=softhsm2_conf),
        ctlog=dataclasses.replace(
            config.ctlog, storage_dir=directory / "ct/tiles", index_db=directory / "ct/index.db"
        ),
        ca=dataclasses.replace(
            config.ca, database=directory / "ca/ca.db", crl_dir=directory / "crl"
        ),
        renewal=dataclasses.replace(config.renewal, directory=directory / "tls"),
        trust=dataclasses.replace(  # on by default: its database and the validators' keys
            config.trust, database=directory / "trust.db", key_dir=directory / "validators"
        ),
        resolver=dataclasses.replace(config.resolver, challenge_db=directory / "dns01.db"),
        acme=dataclasses.replace(config.acme, database=directory / "acme/acme.db"),
    )


def test_a_directory_store_is_created_and_locked_inside_a_file_store_beside(
    tmp_path: Path,
) -> None:
    tiles = StoreLock.acquire(Store(tmp_path / "a/tiles", "ctlog.storage_dir", directory=True))
    db = StoreLock.acquire(Store(tmp_path / "b/ca.db", "ca.database", directory=False))
    private = StoreLock.acquire(Store(tmp_path / "tls", "renewal.directory", True, mode=0o700))
    assert (tmp_path / "a/tiles" / DIRECTORY_LOCK).read_text() == f"{os.getpid()}\n"
    assert (tmp_path / "b/ca.db.lock").read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "b/ca.db").exists()  # the store itself is not touched
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    for lock in (tiles, db, private):
        lock.release()


def test_a_second_open_conflicts_even_in_the_same_process_until_released(tmp_path: Path) -> None:
    store = Store(tmp_path / "tiles", "ctlog.storage_dir", directory=True)
    first = StoreLock.acquire(store)
    with pytest.raises(StoreLocked) as refused:
        StoreLock.acquire(store)
    assert refused.value.code == "store_locked"
    assert refused.value.pid == os.getpid()
    assert refused.value.message == (
        f"{tmp_path}/tiles is in use by another TrustChain (pid {os.getpid()}); "
        "stop it first, or point ctlog.storage_dir elsewhere"
    )
    first.release()
    assert not first.held
    StoreLock.acquire(store).release()


def test_the_lock_is_not_inherited_by_child_processes(tmp_path: Path) -> None:
    lock = StoreLock.acquire(Store(tmp_path / "tiles", "ctlog.storage_dir", directory=True))
    assert lock._fd is not None and not os.get_inheritable(lock._fd)
    lock.release()


def test_a_holder_that_has_not_written_its_pid_yet_is_reported_as_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(locks, "PID_READ_S", 0.0)
    store = Store(tmp_path / "tiles", "ctlog.storage_dir", directory=True)
    store.path.mkdir()
    fd = os.open(store.lock_file, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(StoreLocked, match=r"\(pid unknown\)"):
            StoreLock.acquire(store)
    finally:
        os.close(fd)


def test_a_lock_file_that_cannot_be_opened_is_a_typed_error(tmp_path: Path) -> None:
    store = Store(tmp_path / "tiles", "ctlog.storage_dir", directory=True)
    store.path.mkdir()
    store.lock_file.symlink_to(tmp_path / "elsewhere")  # never followed
    with pytest.raises(StoreUnavailable, match=r"cannot lock .*tiles \(ctlog.storage_dir\)"):
        StoreLock.acquire(store)


def test_lock_stores_takes_all_or_none(tmp_path: Path) -> None:
    config = config_under(tmp_path)
    last = StoreLock.acquire(Store(tmp_path / "validators", "trust.key_dir", directory=True))
    with pytest.raises(StoreLocked, match=r"trust\.key_dir"):
        lock_stores(config)
    last.release()
    with lock_stores(config) as held:  # the earlier ones were released on the refusal
        assert [lock.store.key for lock in held.locks] == [
            "ctlog.storage_dir",
            "ctlog.index_db",
            "ca.database",
            "ca.crl_dir",
            "renewal.directory",
            "trust.database",
            "trust.key_dir",
            "resolver.challenge_db",
            "acme.database",
        ]
    assert not any(lock.held for lock in held.locks)


def test_two_keys_naming_one_directory_take_one_lock(tmp_path: Path) -> None:
    config = config_under(tmp_path)
    config = dataclasses.replace(
        config, renewal=dataclasses.replace(config.renewal, directory=tmp_path / "crl")
    )
    with lock_stores(config) as held:
        assert len(held.locks) == 8


def test_the_softhsm_token_directory_is_the_one_its_config_names(tmp_path: Path) -> None:
    conf = tmp_path / "softhsm2.conf"
    assert softhsm_token_dir(conf) is None
    conf.write_text(
        "# directories.tokendir = /not/this\n"
        f"directories.tokendir = {tmp_path}/tokens\n"
        "objectstore.backend = file\n"
    )
    assert softhsm_token_dir(conf) == tmp_path / "tokens"
    keys = [store.key for store in stores_of(config_under(tmp_path, str(conf)))]
    assert f"directories.tokendir in {conf}" in keys
    # Without the config file SoftHSM opens no token: nothing to lock for it.
    missing = str(tmp_path / "missing.conf")
    assert all("tokendir" not in store.key for store in stores_of(config_under(tmp_path, missing)))
