"""A small blocking client for the control socket (the CLI's, and scripts')."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path
from typing import Any

from trustchain.supervisors import TrustChainError


class NotRunning(TrustChainError):
    code = "not_running"


class RemoteError(TrustChainError):
    """An error reply from the runtime, carrying its code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ControlClient:
    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            self._sock.close()
            raise NotRunning(
                f"TrustChain is not running (nothing listens on {path}); start it with `make run`"
            ) from None
        except PermissionError:
            self._sock.close()
            raise NotRunning(
                f"no permission to use {path}; run as the user that runs TrustChain"
            ) from None
        self._reader = self._sock.makefile("rb")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, to: str, type: str, args: dict[str, Any] | None = None) -> Any:
        """Send one request and wait for its reply; error replies raise RemoteError."""
        request_id = next(self._ids)
        request = {"id": request_id, "to": to, "type": type, "args": args or {}}
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            line = self._reader.readline()
            if not line:
                raise NotRunning("TrustChain closed the connection before answering")
            reply = json.loads(line)
            if reply.get("id") in (request_id, None):
                break
        if reply["ok"]:
            return reply["result"]
        raise RemoteError(reply["error"]["code"], reply["error"]["message"])
