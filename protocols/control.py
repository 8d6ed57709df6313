"""The control socket: JSON lines over a Unix socket, served on trio.

Wire format, one JSON object per line each way::

    -> {"id": 7, "to": "hsm", "type": "sign_data", "args": {"label": "ca-root", "data": "aGk="}}
    <- {"id": 7, "ok": true, "result": "MEUCIQ..."}
    <- {"id": 8, "ok": false, "error": {"code": "unknown_key", "message": "..."}}

Many requests may be in flight on one connection; replies come as they are
ready, matched by ``id``. Every line gets exactly one reply, bad ones included
(invalid JSON, over 1 MiB, nested deeper than 32, numbers past the integer
digit limit or NaN, unknown actor or type, wrong argument types or values out
of range: ``invalid_request``); the connection and the runtime go on. A client
that leaves with replies unread costs a debug line, nothing more. The socket
is created mode 0600 and a peer with another uid (SO_PEERCRED) is refused
even if the mode is loosened.

The built-in target ``runtime`` answers ``status``, ``restart`` (one actor by
name, through its supervisor) and ``stop``.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from loguru import logger

from trustchain.supervisors import (
    InvalidRequest,
    Registry,
    RestartChild,
    TrustChainError,
    UnknownMessage,
    ask,
    to_jsonable,
)
from trustchain.supervisors.messages import loads_json

MAX_LINE = 1 << 20  # 1 MiB
MAX_IN_FLIGHT = 256  # per connection; reading pauses beyond it (backpressure)


class AlreadyRunning(TrustChainError):
    code = "already_running"


class LineTooLong(TrustChainError):
    code = "line_too_long"


class ShuttingDown(TrustChainError):
    code = "shutting_down"


class PermissionDenied(TrustChainError):
    code = "permission_denied"


def bind_control_socket(path: Path) -> socket.socket:
    """Bind the Unix socket 0600 from the first instant; refuse if one is live there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: left by a process that died
        else:
            raise AlreadyRunning(f"TrustChain is already running on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # before any actor thread exists, so nothing else is affected
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class ControlServer:
    """Serves the control socket; tracks in-flight requests so shutdown can drain them."""

    def __init__(
        self,
        registry: Registry,
        request_timeout_s: float,
        on_stop: Callable[[], None],
        extra_status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.registry = registry
        self.request_timeout_s = request_timeout_s
        self.on_stop = on_stop
        self.extra_status = extra_status or (lambda: {})
        self.in_flight = 0
        self.closing = False
        self._idle = trio.Event()
        self._idle.set()
        self.started_at = time.monotonic()
        self.handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "status": self._status,
            "restart": self._restart,
            "stop": self._stop,
        }

    async def serve(
        self,
        listener: socket.socket,
        connections: trio.Nursery,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections until cancelled; they live on in ``connections`` (to drain)."""
        sock = trio.socket.from_stdlib_socket(listener)
        task_status.started()
        try:
            while True:
                conn, _ = await sock.accept()
                connections.start_soon(self._connection, conn)
        finally:
            sock.close()

    def close(self) -> None:
        """Refuse new requests on open connections; those in flight go on (drain)."""
        self.closing = True

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is in flight, at most ``timeout`` seconds."""
        with trio.move_on_after(timeout):
            await self._idle.wait()
            return True
        return False

    # One connection --------------------------------------------------------------

    async def _connection(self, conn: trio.socket.SocketType) -> None:
        stream = trio.SocketStream(conn)
        send_lock = trio.Lock()

        async def send(reply: dict[str, Any]) -> None:
            line = json.dumps(reply, separators=(",", ":")).encode() + b"\n"
            async with send_lock:
                try:
                    await stream.send_all(line)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass  # the client left; its answer has nowhere to go

        uid = peer_uid(conn)  # type: ignore[arg-type]
        if uid not in (os.getuid(), 0):
            logger.warning("control socket: refused a connection from uid {}", uid)
            error = PermissionDenied(f"uid {uid} may not use this control socket")
            await send({"id": None, "ok": False, "error": error.to_dict()})
            await stream.aclose()
            return
        slots = trio.Semaphore(MAX_IN_FLIGHT)
        try:
            async with stream, trio.open_nursery() as nursery:
                async for line in _lines(stream):
                    if isinstance(line, TrustChainError):
                        await send({"id": None, "ok": False, "error": line.to_dict()})
                        continue
                    await slots.acquire()
                    self._begin()
                    nursery.start_soon(self._answer, line, send, slots)
        except Exception as exc:
            if _client_left(exc):  # possibly wrapped in the nursery's exception group
                logger.debug("control socket: a client left with replies unread")
            else:  # a bug in the edge must not take the runtime down
                logger.exception("control socket: connection failed")

    def _begin(self) -> None:
        self.in_flight += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle

    async def _answer(
        self, line: bytes, send: Callable[..., Awaitable[None]], slots: trio.Semaphore
    ) -> None:
        request_id = None
        try:
            request = _decode(line)
            request_id = request.get("id")
            _validate(request)
            if self.closing:
                raise ShuttingDown("TrustChain is shutting down; this request was not started")
            result = await self._dispatch(request)
            reply: dict[str, Any] = {"id": request_id, "ok": True, "result": to_jsonable(result)}
        except TrustChainError as exc:
            reply = {"id": request_id, "ok": False, "error": exc.to_dict()}
        except Exception as exc:  # a bug in the edge: answer, log, keep serving
            logger.exception("control socket: internal error")
            internal = {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}
            reply = {"id": request_id, "ok": False, "error": internal}
        finally:
            slots.release()
        try:
            await send(reply)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def _dispatch(self, request: dict[str, Any]) -> Any:
        to, kind, args = request["to"], request["type"], request.get("args")
        if to == "runtime":
            handler = self.handlers.get(kind)
            if handler is None:
                raise UnknownMessage(
                    f"'runtime' does not handle {kind!r}; it handles: {', '.join(self.handlers)}"
                )
            if args is not None and not isinstance(args, dict):
                raise InvalidRequest("'args' must be a JSON object")
            return await handler(args or {})
        actor_class = self.registry.actor_class(to)
        types = actor_class.message_types() if actor_class is not None else {}
        message_class = types.get(kind)
        if message_class is None:
            raise UnknownMessage(
                f"{to!r} does not handle {kind!r}; it handles: {', '.join(sorted(types))}"
            )
        message = message_class.from_args(args)
        return await ask(self.registry, to, message, self.request_timeout_s)

    # The built-in "runtime" target ---------------------------------------------------

    async def _status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "actors": self.registry.health(),
            **self.extra_status(),
        }

    async def _restart(self, args: dict[str, Any]) -> Any:
        name = args.get("name")
        if not isinstance(name, str):
            raise InvalidRequest('\'restart\' needs args {"name": "<actor>"}')
        supervisor = self.registry.lookup(name).supervisor
        if supervisor is None:
            raise InvalidRequest(f"{name!r} is the root; use 'stop' instead")
        return await ask(self.registry, supervisor, RestartChild(name), self.request_timeout_s)

    async def _stop(self, args: dict[str, Any]) -> str:
        self.on_stop()
        return "stopping"


def _client_left(exc: BaseException) -> bool:
    """Is ``exc`` (or every exception in its group) the client closing its end?"""
    if isinstance(exc, BaseExceptionGroup):
        return all(_client_left(e) for e in exc.exceptions)
    return isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError)


def _decode(line: bytes) -> dict[str, Any]:
    request = loads_json(line)
    if not isinstance(request, dict):
        raise InvalidRequest("a request must be a JSON object")
    return request


def _validate(request: dict[str, Any]) -> None:
    for key in ("to", "type"):
        if not isinstance(request.get(key), str):
            raise InvalidRequest(f"a request needs {key!r} as a string")
    extra = set(request) - {"id", "to", "type", "args"}
    if extra:
        raise InvalidRequest(f"unknown request field(s): {', '.join(sorted(extra))}")


async def _lines(stream: trio.SocketStream):
    """Yield complete lines; an over-long line yields LineTooLong and is skipped."""
    buffer = bytearray()
    skipping = False
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        buffer += chunk
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                if len(buffer) > MAX_LINE and not skipping:
                    skipping = True
                    yield LineTooLong(f"a request line is limited to {MAX_LINE} bytes")
                if skipping:
                    buffer.clear()
                break
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            if skipping:
                skipping = False
                continue
            if len(line) > MAX_LINE:
                yield LineTooLong(f"a request line is limited to {MAX_LINE} bytes")
            elif line.strip():
                yield line
