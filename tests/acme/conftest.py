"""A real ``trustchain run`` with ACME on, for the tests that speak ACME over the wire
(certbot, the ``acme`` library).

Nothing here runs at import: a module asks for a tree with a module-scoped fixture of
its own that calls ``acme_tree(...)`` (one tree per module: starting one costs seconds),
passing the ``[acme]`` keys it needs. The tree's zone is ``pki.example.com`` (the
``[ca]`` of ``write_config``); its resolver maps ``NAMES`` (``a0`` ... under the zone) to
::1, where the tests answer http-01 (the validators resolve through that resolver).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from trustchain.config import HsmConfig

from ..protocols.conftest import TRUSTCHAIN, cli, free_port, free_udp_port, write_config

ZONE = "pki.example.com"
NAMES = [f"a{i}.{ZONE}" for i in range(64)]  # each maps to ::1 in the tree's resolver
CHALLENGE_PATH = "/.well-known/acme-challenge/"


class Http01Responder(ThreadingHTTPServer):
    """Answers http-01 on [::1]: ``tokens`` maps a token to its key authorization."""

    address_family = socket.AF_INET6
    daemon_threads = True

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        super().__init__(("::1", 0), _Handler)
        self.port = int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: Http01Responder

    def do_GET(self) -> None:
        answer = self.server.tokens.get(self.path.removeprefix(CHALLENGE_PATH))
        body = (answer or "").encode()
        self.send_response(200 if answer is not None else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class AcmeTree:
    """A running tree: its config, directory URL, root and the ports around it."""

    directory: Path
    config: Path
    port: int  # HTTPS: /acme/, CT, ...
    plain_port: int  # plain http: /crl/, /ca/
    http01_port: int  # where the validators fetch http-01 (the tests' responder or certbot)
    root: Path  # TrustChain's root CA certificate (PEM)
    process: subprocess.Popen[bytes]
    responder: Http01Responder | None = None
    _names: Iterator[str] = field(default_factory=lambda: iter(NAMES))

    @property
    def directory_url(self) -> str:
        return f"https://[::1]:{self.port}/acme/directory"

    def fresh_name(self) -> str:
        """A name under the zone that maps to ::1 and no earlier test of the module used."""
        return next(self._names)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cli(self.config, *args)

    def log(self) -> str:
        return (self.directory / "stderr.log").read_text(errors="replace")[-4000:]


def _https_ready(port: int, root: Path) -> bool:
    context = ssl.create_default_context(cafile=str(root))
    try:
        with (
            socket.create_connection(("::1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="::1") as tls,
        ):
            tls.sendall(b"GET /ready HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
            return tls.recv(65536).startswith(b"HTTP/1.1 200 ")
    except OSError:
        return False


@contextlib.contextmanager
def acme_tree(
    softhsm: HsmConfig,
    acme: dict[str, Any] | None = None,
    *,
    http01_port: int | None = None,
    responder: bool = True,
) -> Iterator[AcmeTree]:
    """``trustchain run`` with the consensus (N = 4), the resolver, the HTTPS and plain
    http edges and ``[acme]`` (``acme``: its keys; ``http01_port`` defaults to the
    responder's, or a free port when ``responder`` is False, for a client that answers
    challenges itself, as certbot --standalone). Stopped with SIGTERM, which must exit 0."""
    directory = Path(tempfile.mkdtemp(prefix="tc-acme-"))  # short: the control socket
    server = Http01Responder() if responder else None
    if server is not None:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    port, plain_port = free_port(), free_port()
    http01 = http01_port or (server.port if server is not None else free_port())
    http = {"port": port, "plain_port": plain_port, "names": [f"acme.{ZONE}", "::1"]}
    resolver = {
        "enabled": True,
        "port": free_udp_port(),
        "origin": ZONE,
        "names": [f"dns.{ZONE}", "::1"],
        "records": {n.removesuffix("." + ZONE): ["::1"] for n in NAMES},
    }
    config = write_config(
        directory,
        softhsm,
        http=http,
        trust={},
        resolver=resolver,
        acme={"enabled": True, "http01_port": http01, **(acme or {})},
    )
    log = directory / "stderr.log"
    with log.open("wb") as stderr:  # a file, not a pipe: nobody reads it while it runs
        process = subprocess.Popen([TRUSTCHAIN, "--config", str(config), "run"], stderr=stderr)
    running: AcmeTree | None = None
    try:
        deadline = time.monotonic() + 60
        while not (directory / "ctl.sock").exists():
            assert process.poll() is None, f"trustchain run exited:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, "the control socket never appeared"
            time.sleep(0.05)
        root = directory / "root.pem"
        got = cli(config, "ca", "root", "--out", str(root))
        assert got.returncode == 0, got.stderr
        while not _https_ready(port, root):
            assert process.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "/ready never answered 200"
            time.sleep(0.1)
        running = AcmeTree(directory, config, port, plain_port, http01, root, process, server)
        yield running
    finally:
        if running is not None:  # a test may have started it again (tests/acme/test_restart)
            process = running.process
        if server is not None:
            server.shutdown()
            server.server_close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
            assert code == 0, f"trustchain run exited {code}:\n{log.read_text()[-4000:]}"
        shutil.rmtree(directory, ignore_errors=True)
