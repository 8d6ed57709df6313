"""Real upstream DNS servers for the resolver's tests, on [::1]: UDP and TCP (a thread
each, built on dnspython: parse, answer, send) and DoQ (aioquic's asyncio server on a
loop in a thread, with a certificate made here). Each answers from its own records
and can be told to lie (other records), to fail (SERVFAIL), or to keep silent; it
counts the queries it gets, so a test can see what reached it."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import ipaddress
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rrset
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamDataReceived
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Behaviour = Literal["answer", "servfail", "silent"]


class Answerer:
    """An upstream resolver's answers: ``records`` maps "name. TYPE" to rdata texts; a
    name with a "name. CNAME" entry and none of the type asked is answered with its
    CNAME alone (not followed, as an authoritative server answers)."""

    def __init__(
        self, records: Mapping[str, list[str]], ttl: int = 300, negative_ttl: int = 60
    ) -> None:
        self.records = dict(records)
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.behaviour: Behaviour = "answer"
        self.queries: list[str] = []  # "name TYPE" of each query received

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        self.queries.append(f"{question.name} {dns.rdatatype.to_text(question.rdtype)}")
        if self.behaviour == "silent":
            return None
        response = dns.message.make_response(query, recursion_available=True)
        if self.behaviour == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        key = f"{question.name.to_text().lower()} {dns.rdatatype.to_text(question.rdtype)}"
        rdatas = self.records.get(key)
        if rdatas:
            response.answer.append(
                dns.rrset.from_text_list(question.name, self.ttl, "IN", question.rdtype, rdatas)
            )
            return response
        cname = self.records.get(f"{question.name.to_text().lower()} CNAME")
        if cname:  # as an authoritative server does: the CNAME alone, not followed
            response.answer.append(
                dns.rrset.from_text_list(question.name, self.ttl, "IN", "CNAME", cname)
            )
            return response
        exists = any(k.split()[0] == question.name.to_text().lower() for k in self.records)
        if not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        zone = dns.name.Name(question.name.labels[-2:])  # the name's top-level domain
        soa = f"ns.{zone} hostmaster.{zone} 1 3600 600 86400 {self.negative_ttl}"
        response.authority.append(dns.rrset.from_text(zone, 3_600, "IN", "SOA", soa))
        return response


class UpstreamServer(Answerer):
    """A UDP or a TCP upstream on [::1]."""

    def __init__(
        self,
        transport: Literal["udp", "tcp"],
        records: Mapping[str, list[str]],
        ttl: int = 300,
        negative_ttl: int = 60,
    ) -> None:
        super().__init__(records, ttl, negative_ttl)
        self.transport = transport
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET6, kind)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock.bind(("::1", 0))
        if transport == "tcp":
            self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"{transport}://[::1]:{self.port}"
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True, name=self.url)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                if self.transport == "udp":
                    data, peer = self.sock.recvfrom(65_535)
                    if self._stop:
                        return
                    try:
                        query = dns.message.from_wire(data)
                    except dns.exception.DNSException:
                        continue  # not for us
                    response = self.answer(query)
                    if response is not None:
                        self.sock.sendto(response.to_wire(), peer)
                else:
                    conn, _ = self.sock.accept()
                    threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True).start()
            except OSError:
                return  # closed

    def _serve_tcp(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    query, _ = dns.query.receive_tcp(conn, expiration=None)
                    response = self.answer(query)
                    if response is None:
                        continue  # silent: the client times out
                    dns.query.send_tcp(conn, response)
            except (EOFError, OSError, dns.exception.DNSException):
                return

    def close(self) -> None:
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(2)


def self_signed(directory: Path, name: str = "dns.example.net") -> tuple[Path, Path]:
    """A certificate (its own CA) for ``name`` and [::1], and its key: PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(name), x509.IPAddress(ipaddress.IPv6Address("::1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "doq-upstream.pem", directory / "doq-upstream.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


class _DoqProtocol(QuicConnectionProtocol):
    """RFC 9250 on the server side, as far as a test upstream needs: one query per
    stream, a 2-octet length, the response ends the stream."""

    def __init__(self, *args: Any, answerer: Answerer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._answerer = answerer
        self._streams: dict[int, bytes] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if not isinstance(event, StreamDataReceived):
            return
        data = self._streams.pop(event.stream_id, b"") + event.data
        if not event.end_stream:
            self._streams[event.stream_id] = data
            return
        response = self._answerer.answer(dns.message.from_wire(data[2:]))
        if response is None:
            return  # silent
        wire = response.to_wire()
        self._quic.send_stream_data(event.stream_id, len(wire).to_bytes(2, "big") + wire, True)
        self.transmit()


class DoqUpstreamServer(Answerer):
    """A DoQ upstream on [::1], with the certificate ``self_signed`` made."""

    def __init__(
        self, records: Mapping[str, list[str]], certificate: Path, key: Path, ttl: int = 300
    ) -> None:
        super().__init__(records, ttl)
        config = QuicConfiguration(is_client=False, alpn_protocols=["doq"])
        config.load_cert_chain(certificate, key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        protocol = functools.partial(_DoqProtocol, answerer=self)
        self._server = asyncio.run_coroutine_threadsafe(
            serve("::1", 0, configuration=config, create_protocol=protocol), self._loop
        ).result(10)
        self.port = self._server._transport.get_extra_info("sockname")[1]
        self.url = f"doq://[::1]:{self.port}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
