"""The composition root: from a config to a running TrustChain, and back down.

Start-up: lock every durable store first (``actors/locks.py``: a second
TrustChain on the same stores is refused with one line naming the store and
the holder's pid, before it touches the HSM, the socket or any store), bind
the control socket (a second instance on the same socket path is refused),
start the supervision tree (each child's setup done before the next starts),
then serve: the control socket, the HTTP edge when ``http.enabled`` and the
DNS-over-QUIC listener when ``resolver.enabled`` (exit 1 if either cannot
serve). A custom tree (``children``, in tests) gets neither of these two and
no store locks: those belong to the CT log, issuer and renewal.
Shutdown, on SIGINT/SIGTERM or the ``runtime stop`` request: stop accepting,
refuse new requests, drain those in flight (HTTP, then the control socket,
each at most ``runtime.drain_timeout_s``), stop the tree leaf-first, remove
the socket, release the store locks, exit 0. If the root supervisor gives up
(restart intensity exceeded) the process exits 1 after a log line naming the
child and count.
"""

from __future__ import annotations

import os
import signal
import socket
from contextlib import AbstractContextManager, nullcontext, suppress
from typing import Any

import trio
from loguru import logger

from trustchain.actors.composition import backoff_of, check_config, trustchain_children
from trustchain.actors.locks import lock_stores
from trustchain.config import Config
from trustchain.protocols.control import ControlServer, bind_control_socket
from trustchain.protocols.doq import serve_doq
from trustchain.protocols.http import serve_http
from trustchain.protocols.logs import setup_logging
from trustchain.supervisors import (
    ChildSpec,
    ChildStartFailed,
    Registry,
    Strategy,
    TrustChainError,
    start_root,
)


def run(config: Config, children: list[ChildSpec] | None = None) -> int:
    """Run TrustChain in the foreground; returns the process exit code."""
    setup_logging(config.runtime.log_level, config.runtime.log_json)
    return trio.run(serve, config, None, children)


async def serve(
    config: Config, listener: socket.socket | None = None, children: list[ChildSpec] | None = None
) -> int:
    """Start the tree, serve until asked to stop, stop; returns the exit code.

    Signals are caught from before the socket exists, so a SIGTERM that comes
    as soon as the socket appears (or during start-up) still stops gracefully.
    The stores are locked before anything else and released when this returns,
    so a process may serve again afterwards (tests do); a custom tree
    (``children``) has no stores, so nothing is locked for it.
    """
    if children is None:
        check_config(config)  # raises ConfigError: nothing has been touched yet
    stores: AbstractContextManager[object] = (
        lock_stores(config) if children is None else nullcontext()
    )  # raises StoreLocked: nothing has been touched yet
    with stores, trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        path = config.runtime.control_socket
        own = listener is None
        listener = bind_control_socket(path) if listener is None else listener
        try:
            return await _serve(config, listener, children, signals)
        finally:
            if own:
                listener.close()
                with suppress(FileNotFoundError):
                    path.unlink()


async def _serve(
    config: Config,
    listener: socket.socket,
    children: list[ChildSpec] | None,
    signals: Any,
) -> int:
    token = trio.lowlevel.current_trio_token()
    registry = Registry()
    stop = trio.Event()
    gave_up: list[str] = []

    def give_up(reason: str) -> None:  # on the root supervisor's thread
        def on_loop() -> None:
            gave_up.append(reason)
            stop.set()

        with suppress(trio.RunFinishedError):
            token.run_sync_soon(on_loop)

    def start_tree():
        return start_root(
            registry,
            "root",
            trustchain_children(config) if children is None else children,
            Strategy.ONE_FOR_ONE,
            config.supervision.max_restarts,
            config.supervision.period_s,
            on_give_up=give_up,
            backoff=backoff_of(config),
        )

    try:
        root = await trio.to_thread.run_sync(start_tree)
    except ChildStartFailed as exc:
        logger.error("TrustChain could not start: {}", exc)
        return 1
    server = ControlServer(registry, config.runtime.request_timeout_s, on_stop=stop.set)
    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as accepting:
            await accepting.start(server.serve, listener, connections)
            accepting.start_soon(_signals, signals, stop)
            if config.http.enabled and children is None:  # it needs TrustChain's own tree
                accepting.start_soon(_http, config, registry, gave_up, stop)  # drains on cancel
            if config.resolver.enabled and children is None:  # its certificate and resolver too
                accepting.start_soon(_doq, config, registry, gave_up, stop)  # closes on cancel
            logger.info(
                "TrustChain is running (pid {}); control socket {}",
                os.getpid(),
                config.runtime.control_socket,
            )
            await stop.wait()
            accepting.cancel_scope.cancel()
        server.close()
        with suppress(FileNotFoundError):
            config.runtime.control_socket.unlink()
        if not await server.drained(config.runtime.drain_timeout_s):
            logger.warning(
                "{} request(s) still in flight after {} s; stopping anyway",
                server.in_flight,
                config.runtime.drain_timeout_s,
            )
        logger.info("stopping the tree, leaf first")
        await trio.to_thread.run_sync(lambda: root.stop(block=True, timeout=60))
        connections.cancel_scope.cancel()
    if gave_up:
        logger.error("TrustChain stopped: {}", gave_up[0])
        return 1
    logger.info("TrustChain stopped")
    return 0


async def _http(config: Config, registry: Registry, gave_up: list[str], stop: trio.Event) -> None:
    """The HTTPS edge; if it cannot start, or fails, TrustChain stops (exit code 1)."""
    try:
        await serve_http(config, registry)
    except Exception as exc:
        if not isinstance(exc, TrustChainError):
            logger.exception("the HTTP edge failed")
        gave_up.append(f"the HTTP edge failed: {exc}")
        stop.set()


async def _doq(config: Config, registry: Registry, gave_up: list[str], stop: trio.Event) -> None:
    """The DNS-over-QUIC listener; if it cannot start, or fails, TrustChain stops (exit 1)."""
    try:
        await serve_doq(config, registry)
    except Exception as exc:
        if not isinstance(exc, TrustChainError):
            logger.exception("the DoQ listener failed")
        gave_up.append(f"the DoQ listener failed: {exc}")
        stop.set()


async def _signals(signals: Any, stop: trio.Event) -> None:
    async for signum in signals:
        logger.info("{} received: shutting down", signal.Signals(signum).name)
        stop.set()
        return
