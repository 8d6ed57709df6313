"""Server TLS material that follows TrustChain's own certificate renewals, no restart.

``Reloading(build)`` keeps the latest value built from the latest certificate
bundle; pass it (it is callable) as the ``callback`` of the renewal actor's
``Subscribe``. ``build`` runs on the renewal actor's thread; if it raises, the
previous value stays in service (and the renewal actor logs the error).
``current()`` is one attribute read, safe from any thread, so a server calls it
per connection: a connection keeps the material it started with, the next one
gets the new.

``ReloadingSSLContext`` builds ``ssl.SSLContext``s (server side, TLS 1.2+, the
bundle's fullchain and key). For APIs that take one context for a whole
listener (``trio.open_ssl_over_tcp_listeners``, ``trio.SSLListener``),
``listener_context()`` gives one whose SNI callback hands every handshake the
current context; it runs for clients without SNI too (IPv6-literal names).
aioquic does not use ``ssl``: wrap a ``QuicConfiguration`` builder in
``Reloading`` and take ``current()`` for each new connection.

Edge code: imports neither pykka nor the actors; a bundle is anything with the
attributes of ``CertificateFiles`` (``trustchain.actors.renewal.bundle.Bundle`` has them).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class CertificateFiles(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def serial(self) -> str: ...
    @property
    def fullchain_path(self) -> Path: ...
    @property
    def key_path(self) -> Path: ...


class CertificateNotReady(Exception):
    """No certificate has arrived yet: the renewal actor is still getting the first one."""


class Reloading(Generic[T]):
    def __init__(self, build: Callable[[CertificateFiles], T], name: str = "") -> None:
        self._build = build
        self.name = name
        self._latest: tuple[CertificateFiles, T] | None = None  # replaced whole, never mutated

    def __call__(self, bundle: CertificateFiles) -> None:
        """The Subscribe callback: build from ``bundle`` and make it current."""
        self._latest = (bundle, self._build(bundle))

    def current(self) -> T:
        latest = self._latest
        if latest is None:
            raise CertificateNotReady(
                f"no certificate {self.name!r} yet; "
                "see `trustchain send renewal get_renewal_status`"
            )
        return latest[1]

    @property
    def bundle(self) -> CertificateFiles | None:
        latest = self._latest
        return None if latest is None else latest[0]


def server_context(files: CertificateFiles, alpn_protocols: Sequence[str] = ()) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.fullchain_path, files.key_path)  # refuses a mismatched key
    if alpn_protocols:
        context.set_alpn_protocols(list(alpn_protocols))
    return context


class ReloadingSSLContext(Reloading[ssl.SSLContext]):
    def __init__(self, name: str = "", alpn_protocols: Sequence[str] = ()) -> None:
        super().__init__(lambda files: server_context(files, alpn_protocols), name)
        self.alpn_protocols = list(alpn_protocols)

    def listener_context(self) -> ssl.SSLContext:
        """One context for a whole listener; each handshake switches to ``current()``."""
        outer = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        outer.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.alpn_protocols:
            outer.set_alpn_protocols(self.alpn_protocols)
        outer.sni_callback = self._switch
        return outer

    def _switch(
        self, sslobj: ssl.SSLObject, server_name: str | None, outer: ssl.SSLContext
    ) -> int | None:
        """SNI callback (also for SSLSockets, and when the client sent no SNI)."""
        latest = self._latest
        if latest is None:  # nothing to present yet: refuse the handshake, cleanly
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        sslobj.context = latest[1]
        return None
