"""The composition root: drain on stop, a root that gives up ends the process non-zero,
and the stores are locked before anything else and released when serve ends."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import trio

from trustchain.actors.locks import Store, StoreLock, StoreLocked, lock_stores
from trustchain.config import load_config
from trustchain.protocols.boot import serve
from trustchain.protocols.control import AlreadyRunning, bind_control_socket

from ..supervisors.test_supervisor import Tree
from .test_control import Client


def config_for(directory: Path, drain_timeout_s: float = 5.0):
    config = load_config()
    runtime = dataclasses.replace(
        config.runtime, control_socket=directory / "ctl.sock", drain_timeout_s=drain_timeout_s
    )
    supervision = dataclasses.replace(config.supervision, max_restarts=2, period_s=60)
    return dataclasses.replace(config, runtime=runtime, supervision=supervision)


async def wait_for_socket(path: Path) -> Client:
    with trio.fail_after(10):
        while True:
            try:
                return Client(await trio.open_unix_socket(str(path)))
            except OSError:
                await trio.sleep(0.01)


async def test_stop_drains_in_flight_requests_then_stops_leaf_first(short_tmp: Path) -> None:
    tree = Tree()
    config = config_for(short_tmp)
    listener = bind_control_socket(config.runtime.control_socket)
    codes: list[int] = []

    async def run() -> None:
        codes.append(await serve(config, listener, [tree.spec("a"), tree.spec("b")]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        client = await wait_for_socket(config.runtime.control_socket)
        await client.send({"id": 1, "to": "b", "type": "sleep", "args": {"seconds": 0.3}})
        await trio.sleep(0.05)
        assert (await client.call(id=2, to="runtime", type="stop"))["result"] == "stopping"
        # The slow request started before the stop still gets its answer.
        assert await client.receive() == {"id": 1, "ok": True, "result": None}
    assert codes == [0]
    assert tree.log[-2:] == [("stop", "b"), ("stop", "a")]
    assert not config.runtime.control_socket.exists()


async def test_a_root_past_its_intensity_ends_serve_with_exit_code_1(short_tmp: Path) -> None:
    tree = Tree()
    config = config_for(short_tmp)
    listener = bind_control_socket(config.runtime.control_socket)
    codes: list[int] = []

    async def run() -> None:
        codes.append(await serve(config, listener, [tree.spec("a")]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        client = await wait_for_socket(config.runtime.control_socket)
        with trio.fail_after(10):
            while not codes:
                await client.send({"id": 1, "to": "a", "type": "crash"})
                await client.receive()
                await trio.sleep(0.02)
    assert codes == [1]


def with_stores_under(directory: Path, config):
    """TrustChain's own tree's stores under ``directory`` (no SoftHSM token to lock)."""
    return dataclasses.replace(
        config,
        hsm=dataclasses.replace(config.hsm, softhsm2_conf=""),
        ctlog=dataclasses.replace(
            config.ctlog, storage_dir=directory / "tiles", index_db=directory / "index.sqlite3"
        ),
        ca=dataclasses.replace(
            config.ca, database=directory / "ca.sqlite3", crl_dir=directory / "crl"
        ),
        renewal=dataclasses.replace(config.renewal, directory=directory / "tls"),
        trust=dataclasses.replace(
            config.trust, database=directory / "trust.db", key_dir=directory / "validators"
        ),
        resolver=dataclasses.replace(config.resolver, challenge_db=directory / "dns01.db"),
        acme=dataclasses.replace(config.acme, database=directory / "acme.db"),
    )


async def test_a_locked_store_refuses_serve_before_the_socket_is_bound(short_tmp: Path) -> None:
    config = with_stores_under(short_tmp, config_for(short_tmp))
    # Held through another open file description: even this process is refused.
    held = StoreLock.acquire(Store(short_tmp / "crl", "ca.crl_dir", directory=True))
    try:
        with pytest.raises(StoreLocked) as refused:
            await serve(config)
    finally:
        held.release()
    assert refused.value.message == (
        f"{short_tmp}/crl is in use by another TrustChain (pid {os.getpid()}); "
        "stop it first, or point ca.crl_dir elsewhere"
    )
    assert not config.runtime.control_socket.exists()
    assert not (short_tmp / "ca.sqlite3").exists()


async def test_serve_releases_the_stores_when_it_ends(short_tmp: Path) -> None:
    config = with_stores_under(short_tmp, config_for(short_tmp))
    live = bind_control_socket(config.runtime.control_socket)  # so serve stops at the bind
    try:
        with pytest.raises(AlreadyRunning):
            await serve(config)
    finally:
        live.close()
    with lock_stores(config) as locks:  # free again: a later serve in this process can start
        # trust's 2, the resolver's dns-01 records, ACME's database
        assert len(locks.locks) == 9 and all(lock.held for lock in locks.locks)
