"""What every `trustchain` command shares: the click context object and `fail`.

The command modules (`cli`, `cli_ca`, `cli_ct`) import this one and not each
other; `cli` builds the command group and adds the others' commands to it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape

from trustchain.config import Config, ConfigError, load_config
from trustchain.protocols.client import ControlClient
from trustchain.supervisors.errors import TrustChainError

err = Console(stderr=True)


def write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only, from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line on stderr, no traceback, and exit ``code``."""
    err.print("[bold red]error:[/]", escape(message), highlight=False, soft_wrap=True)
    sys.exit(code)


class Context:
    def __init__(self, config_path: Path | None, socket: Path | None) -> None:
        self.config_path = config_path
        self.socket_override = socket
        self._config: Config | None = None

    def config(self, overrides: dict[str, Any] | None = None) -> Config:
        if self._config is None or overrides:
            try:
                self._config = load_config(self.config_path, overrides=overrides)
            except ConfigError as exc:
                fail(str(exc), 2)
        return self._config

    def client(self) -> ControlClient:
        path = self.socket_override or self.config().runtime.control_socket
        return ControlClient(path, timeout=self.config().runtime.request_timeout_s + 5)

    def call(
        self,
        to: str,
        type: str,
        args: dict[str, Any] | None = None,
        explain: Mapping[str, str] | None = None,
    ) -> Any:
        """The reply, or one line and exit 1; ``explain`` maps an error code to what it
        means for this command, said instead of the actor's message."""
        try:
            with self.client() as client:
                return client.call(to, type, args)
        except TrustChainError as exc:
            fail(f"{(explain or {}).get(exc.code, exc.message)} [{exc.code}]")
        except OSError as exc:
            fail(f"control socket: {exc}")
