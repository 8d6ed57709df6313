"""Real upstream DNS servers for the resolver's tests: UDP and TCP on [::1], a thread
each, built on dnspython (parse, answer, send). Each answers from its own records
and can be told to lie (other records), to fail (SERVFAIL), or to keep silent; it
counts the queries it gets, so a test can see what reached it."""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from typing import Literal

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rrset

Behaviour = Literal["answer", "servfail", "silent"]


class UpstreamServer:
    """One upstream resolver: ``records`` maps "name. TYPE" to rdata texts."""

    def __init__(
        self,
        transport: Literal["udp", "tcp"],
        records: Mapping[str, list[str]],
        ttl: int = 300,
        negative_ttl: int = 60,
    ) -> None:
        self.transport = transport
        self.records = dict(records)
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.behaviour: Behaviour = "answer"
        self.queries: list[str] = []  # "name TYPE" of each query received
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
        exists = any(k.split()[0] == question.name.to_text().lower() for k in self.records)
        if not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        zone = dns.name.Name(question.name.labels[-2:])  # the name's top-level domain
        soa = f"ns.{zone} hostmaster.{zone} 1 3600 600 86400 {self.negative_ttl}"
        response.authority.append(dns.rrset.from_text(zone, 3_600, "IN", "SOA", soa))
        return response

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
