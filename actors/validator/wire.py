"""A validator's connection for one ACME check: TCP over IPv6, TLS when started (through
memory BIOs), every operation bounded by one deadline for the whole check, so that a peer
that trickles bytes cannot hold the check past its ``timeout_s``.

``Wire`` quacks enough like a socket for ``http.client.HTTPResponse`` (``makefile``);
``unverified_context`` is TLS 1.2 or newer without verification (what a challenge checks
is the certificate's content, not its chain). Used by ``challenges.py``.
"""

from __future__ import annotations

import io
import socket
import ssl
import time
from typing import Any, cast


class Deadline:
    """One deadline for a whole check: every socket operation gets the time left."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.end = time.monotonic() + timeout_s

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def left(self) -> float:
        """Seconds left; ``TimeoutError`` once there are none."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the challenge's time is spent")
        return left


def unverified_context() -> ssl.SSLContext:
    """TLS 1.2 or newer, no verification: what is checked is the certificate's content."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Wire:
    """One TCP connection over IPv6, TLS (if started) through memory BIOs, every
    operation bounded by one deadline. Quacks enough like a socket for
    ``http.client.HTTPResponse`` (``makefile``)."""

    def __init__(self, address: str, port: int, deadline: Deadline) -> None:
        self.deadline = deadline
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.tls: ssl.SSLObject | None = None
        try:
            self.sock.settimeout(deadline.left())
            self.sock.connect((address, port))
        except BaseException:
            self.sock.close()
            raise

    def start_tls(self, context: ssl.SSLContext, server_name: str) -> ssl.SSLObject:
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_name)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
        self._flush()
        self.tls = tls
        return tls

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self.sock.settimeout(self.deadline.left())
            self.sock.sendall(data)

    def _fill(self) -> None:
        self.sock.settimeout(self.deadline.left())
        data = self.sock.recv(16_384)
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def sendall(self, data: bytes) -> None:
        if self.tls is None:
            self.sock.settimeout(self.deadline.left())
            self.sock.sendall(data)
            return
        self.tls.write(data)
        self._flush()

    def recv_into(self, buffer: Any) -> int:
        if self.tls is None:
            self.sock.settimeout(self.deadline.left())
            return self.sock.recv_into(buffer)
        while True:
            try:
                return cast(int, self.tls.read(len(buffer), buffer))  # a count, given a buffer
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return 0  # closed, with or without close_notify: the length tells

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        return io.BufferedReader(_Reader(self))

    def close(self) -> None:
        self.sock.close()


class _Reader(io.RawIOBase):
    def __init__(self, wire: Wire) -> None:
        self.wire = wire

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self.wire.recv_into(buffer)
