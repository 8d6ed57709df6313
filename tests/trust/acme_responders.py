"""Real ACME challenge responders on [::1] for the tests and benchmarks: what an ACME
client (certbot's standalone plugin, lego) serves for a validator to find.

- ``serve_http01(tokens, port)``: an HTTP/1.1 server (``http.server`` in a thread)
  answering ``GET /.well-known/acme-challenge/<token>`` with ``tokens[token]`` (404 for
  others) and ``redirects[path]`` with a 302; ``tokens`` may change while it runs.
- ``serve_tls_alpn01(authorizations, port)``: a TLS server (a thread) that negotiates
  ``acme-tls/1`` and presents, for the SNI asked, a certificate made by
  ``tls_alpn01_certificate`` (or another factory: a wrong certificate on purpose).
- ``silent_listener()``: a socket that accepts connections (the kernel's backlog) and
  never answers; ``refused_port()``: a port nothing listens on.

Each server is a context manager with ``port`` and ``close()``, which stops it and
waits for its thread. The requests each one got are kept (``requests``), so a test sees
what reached it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import socketserver
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trustchain.actors.validator.challenges import (
    ACME_TLS_1,
    ID_PE_ACME_IDENTIFIER,
    acme_identifier_value,
)

HOST = "::1"
CHALLENGE_PATH = "/.well-known/acme-challenge/"


class _Server:
    """A server in a thread of its own, stopped by ``close()``."""

    server: socketserver.BaseServer

    def _start(self, server: socketserver.BaseServer, name: str) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name,
                                       daemon=True)  # fmt: skip
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])  # type: ignore[index]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _V6HTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    block_on_close = False


class Http01Responder(_Server):
    """See ``serve_http01``."""

    def __init__(self, tokens: dict[str, str], port: int = 0,
                 redirects: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.tokens = tokens  # token -> what is served (the key authorization, or not)
        self.redirects = dict(redirects or {})  # path -> Location (302)
        self.requests: list[tuple[str, str]] = []  # (path, Host header) of each GET
        responder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                responder.requests.append((self.path, self.headers.get("Host", "")))
                location = responder.redirects.get(self.path)
                if location is not None:
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                token = self.path.removeprefix(CHALLENGE_PATH)
                body = responder.tokens.get(token) if self.path.startswith(CHALLENGE_PATH) else None
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._start(_V6HTTPServer((HOST, port), Handler), "http-01 responder")


def serve_http01(tokens: dict[str, str], port: int = 0,
                 redirects: Mapping[str, str] | None = None) -> Http01Responder:  # fmt: skip
    """An http-01 responder on [::1]:``port`` (0: a free one) serving ``tokens`` (token ->
    body, usually the key authorization) and ``redirects`` (path -> Location, 302)."""
    return Http01Responder(tokens, port, redirects)


# tls-alpn-01 -----------------------------------------------------------------------------

Certificate = tuple[bytes, bytes]  # (certificate PEM, private key PEM)
CertificateFactory = Callable[[str, str], Certificate]


def tls_alpn01_certificate(
    identifier: str,
    key_authorization: str,
    *,
    critical: bool = True,
    names: list[str] | None = None,
    value: bytes | None = None,
) -> Certificate:
    """A self-signed tls-alpn-01 certificate (RFC 8737 §3) for ``identifier`` (a DNS
    name, or an IPv6 address: RFC 8738): its one subjectAltName and a critical
    acmeIdentifier of the key authorization. ``critical``, ``names`` and ``value`` make
    wrong ones."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    general: list[x509.GeneralName] = []
    for name in names if names is not None else [identifier]:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME challenge")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(general), critical=False)
    )
    extension_value = value if value is not None else acme_identifier_value(key_authorization)
    builder = builder.add_extension(
        x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, extension_value), critical=critical
    )
    certificate = builder.sign(key, hashes.SHA256())
    return (
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()),
    )  # fmt: skip


def _server_name(identifier: str) -> str:
    try:
        return ipaddress.ip_address(identifier).reverse_pointer
    except ValueError:
        return identifier


class TlsAlpn01Responder(_Server):
    """See ``serve_tls_alpn01``."""

    def __init__(self, authorizations: Mapping[str, str], port: int = 0, *,
                 certificate: CertificateFactory = tls_alpn01_certificate,
                 alpn: str | None = ACME_TLS_1) -> None:  # fmt: skip
        self.requests: list[str | None] = []  # the SNI of each handshake
        self.contexts: dict[str, ssl.SSLContext] = {}
        with tempfile.TemporaryDirectory() as directory:
            for identifier, key_authorization in authorizations.items():
                pem, key = certificate(identifier, key_authorization)
                self.contexts[_server_name(identifier)] = _context(Path(directory), pem, key,
                                                                   alpn)  # fmt: skip
        default = next(iter(self.contexts.values()))
        responder = self

        def choose(tls: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            responder.requests.append(server_name)
            tls.context = responder.contexts.get(server_name or "", default)

        default.sni_callback = choose  # the context a handshake starts in

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    with default.wrap_socket(self.request, server_side=True) as tls:
                        tls.settimeout(2)
                        tls.recv(1)  # until the client goes
                except (OSError, ssl.SSLError):
                    pass  # a refused handshake is the test's point, often

        class Server(socketserver.ThreadingTCPServer):
            address_family = socket.AF_INET6
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True

        self._start(Server((HOST, port), Handler), "tls-alpn-01 responder")


def _context(directory: Path, pem: bytes, key: bytes, alpn: str | None) -> ssl.SSLContext:
    (directory / "cert.pem").write_bytes(pem)
    (directory / "key.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    if alpn is not None:
        context.set_alpn_protocols([alpn])
    return context


def serve_tls_alpn01(authorizations: Mapping[str, str], port: int = 0, *,
                     certificate: CertificateFactory = tls_alpn01_certificate,
                     alpn: str | None = ACME_TLS_1) -> TlsAlpn01Responder:  # fmt: skip
    """A tls-alpn-01 responder on [::1]:``port`` (0: a free one): for each identifier
    (DNS name or IPv6 address) -> key authorization, ``certificate(identifier, key
    authorization)`` is presented to a client whose SNI names it (the first one to
    others); ``alpn`` is the protocol it agrees to (None: no ALPN at all)."""
    return TlsAlpn01Responder(authorizations, port, certificate=certificate, alpn=alpn)


# Failures --------------------------------------------------------------------------------


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port on [::1] whose connections are accepted by the kernel and never answered
    (nothing reads them): a client times out."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, 0))
        sock.listen(16)
        yield sock.getsockname()[1]
    finally:
        sock.close()


def refused_port() -> int:
    """A port on [::1] nothing listens on (a connection there is refused)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
