"""The DoQ listener under floods and limits, with Retry, and across a certificate renewal."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import pytest
from aioquic.buffer import Buffer
from aioquic.quic.packet import QuicErrorCode, pull_quic_header

from trustchain.actors.renewal import GetBundle, RenewNow
from trustchain.config import HsmConfig
from trustchain.protocols.doq_framing import DOQ_EXCESSIVE_LOAD

from .doq_fixtures import ZONE, DoqServer, DoqTree, RawClient, doq_config, query, serving


@pytest.fixture(scope="module")
def tree(softhsm: HsmConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DoqTree]:
    t = DoqTree(doq_config(tmp_path_factory.mktemp("doq-limits"), softhsm))
    yield t
    t.stop()


def blast(port: int, datagrams: list[bytes]) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        for i, data in enumerate(datagrams):
            sock.sendto(data, ("::1", port))
            if i % 25 == 24:
                time.sleep(0.005)  # let the loop read: the kernel buffer drops the rest


def fake_initial(size: int = 1200, token: bytes = b"") -> bytes:
    """An Initial packet header (version 1, random 8-byte ids) and random payload: it
    parses as an Initial, and no key can decrypt it."""
    first = bytes([0xC0 | 0x03])  # long header, Initial, 4-byte packet number
    dcid, scid = os.urandom(8), os.urandom(8)
    header = first + (1).to_bytes(4, "big") + bytes([8]) + dcid + bytes([8]) + scid
    header += bytes([len(token)]) + token  # token length (1-byte varint) and token
    rest = size - len(header) - 2
    return header + (0x4000 | rest).to_bytes(2, "big") + os.urandom(rest)


def settle(server: DoqServer, what: str, condition: object) -> None:
    deadline = time.monotonic() + 10
    while not server.call(condition):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def read_all(server: DoqServer, sent: int) -> int:
    """Wait until the listener has read what the kernel kept of ``sent`` datagrams (it
    drops some when its buffer is full); returns how many were read."""
    seen, still = -1, 0
    while still < 5:
        time.sleep(0.05)
        now = server.endpoint.stats.datagrams
        still = still + 1 if now == seen else 0
        seen = now
    assert seen >= sent // 4, f"only {seen} of {sent} datagrams arrived"
    return seen


def test_junk_datagrams_and_undecryptable_initials_leave_no_state(tree: DoqTree) -> None:
    with serving(tree, max_connections=1_000) as server:
        e = server.endpoint
        assert pull_quic_header(Buffer(data=fake_initial()), 8).packet_type.name == "INITIAL"
        junk = [os.urandom(n) for n in (1, 40, 1199, 1200, 1500) for _ in range(400)]
        short = [fake_initial(1199) for _ in range(500)]  # an Initial below 1,200 bytes
        fakes = [fake_initial() for _ in range(1_000)]  # valid headers, nothing to decrypt
        blast(server.port, junk + short + fakes)
        read_all(server, len(junk + short + fakes))
        state = server.call(lambda: (e.connections, len(e._routes), len(e._timers), e.tasks))
        assert state == (0, 0, 0, 0)
        # random bytes that parse as a long header of an unknown version get a Version
        # Negotiation packet (stateless, RFC 9000 §6.1); everything else is dropped
        assert e.stats.accepted == 0
        assert e.stats.dropped + e.stats.version_negotiations == e.stats.datagrams
        client = RawClient(server.port, tree.root_pem)  # and it still serves
        assert client.ask(query(f"hypermesh.{ZONE}")).rcode() == dns.rcode.NOERROR
        client.close()


def test_connections_past_max_connections_are_refused_statelessly(tree: DoqTree) -> None:
    with serving(tree, max_connections=3) as server:
        clients = [RawClient(server.port, tree.root_pem) for _ in range(3)]
        refused = RawClient(server.port, tree.root_pem, handshake=False)
        assert refused.expect_close().error_code == QuicErrorCode.CONNECTION_REFUSED
        assert server.endpoint.stats.refused == 1 and server.endpoint.connections == 3
        for client in clients:  # the three admitted ones are served meanwhile
            assert client.ask(query(f"caesar.{ZONE}")).rcode() == dns.rcode.NOERROR
            client.close()
        refused.close()


def test_retry_validates_addresses_before_any_state(tree: DoqTree) -> None:
    with serving(tree, retry=True) as server:
        e = server.endpoint
        blast(server.port, [fake_initial() for _ in range(300)])  # spoofable: no token
        read_all(server, 300)
        assert e.connections == 0 and e.stats.retries == e.stats.datagrams
        forged = fake_initial(token=os.urandom(40))  # a token we never issued
        blast(server.port, [forged])
        settle(server, "the forged token", lambda: e.stats.invalid_tokens == 1)
        assert e.connections == 0
        with server.manager() as manager:  # a real client follows the Retry
            connection = manager.connect("::1", server.port)
            response = dns.query.quic(query(f"hypermesh.{ZONE}"), "::1", timeout=5,
                                      port=server.port, connection=connection)  # fmt: skip
            assert response.rcode() == dns.rcode.NOERROR
        assert e.stats.accepted == 1


def test_half_open_streams_stop_at_the_stream_limit(tree: DoqTree) -> None:
    with serving(tree, max_streams_per_connection=8) as server:
        client = RawClient(server.port, tree.root_pem)
        for _ in range(50):  # one octet each, never finished
            client.send(b"\x00", end=False)
        client.wait(0.3)
        e = server.endpoint
        # the client's aioquic holds back what the transport parameter forbids
        assert server.call(lambda: (e.open_queries, e.held)) == (8, 8)
        assert client.terminated is None


def test_a_client_ignoring_the_stream_limit_is_closed(tree: DoqTree) -> None:
    with serving(tree, max_streams_per_connection=8) as server:
        client = RawClient(server.port, tree.root_pem)
        client.quic._remote_max_streams_bidi = 1_000  # pretend the server allowed more
        for _ in range(20):
            client.send(b"\x00", end=False)
        closed = client.expect_close()
        assert closed.error_code == QuicErrorCode.STREAM_LIMIT_ERROR  # aioquic's own check
        settle(server, "the connection to go", lambda: server.endpoint.connections == 0)


def test_buffered_bytes_past_the_budget_close_with_excessive_load(tree: DoqTree) -> None:
    with serving(tree, max_buffered_bytes=2_048) as server:
        client = RawClient(server.port, tree.root_pem)
        for _ in range(10):  # 10 x 300 octets of queries that never finish
            client.send(b"\x04\x00" + b"\x00" * 298, end=False)  # 1,024 announced
        closed = client.expect_close()
        assert closed.error_code == DOQ_EXCESSIVE_LOAD
        assert "2048 octets" in closed.reason_phrase
        settle(server, "nothing held", lambda: server.endpoint.held == 0)


def test_idle_connections_are_dropped_after_idle_timeout(tree: DoqTree) -> None:
    with serving(tree, idle_timeout_s=1.0) as server:
        client = RawClient(server.port, tree.root_pem)
        assert client.ask(query(f"hypermesh.{ZONE}")).rcode() == dns.rcode.NOERROR
        assert server.endpoint.connections == 1
        settle(server, "the idle connection to go", lambda: server.endpoint.connections == 0)
        client.close()


def test_the_renewed_certificate_reaches_new_connections_and_live_ones_go_on(
    tree: DoqTree,
) -> None:
    with serving(tree) as server:
        first = tree.registry.ask("renewal", GetBundle("doq"))["serial"]
        live = RawClient(server.port, tree.root_pem)
        assert served_serial(live) == first
        assert live.ask(query(f"hypermesh.{ZONE}")).rcode() == dns.rcode.NOERROR
        port = server.port

        renewed = tree.registry.ask("renewal", RenewNow("doq"), timeout=30)["serial"]
        assert renewed != first
        deadline = time.monotonic() + 10
        while served_serial(fresh := RawClient(server.port, tree.root_pem)) != renewed:
            fresh.close()
            assert time.monotonic() < deadline, "the renewed certificate was never served"
            time.sleep(0.05)
        assert fresh.ask(query(f"caesar.{ZONE}")).rcode() == dns.rcode.NOERROR
        fresh.close()
        # the connection from before the renewal goes on, on its old certificate
        assert live.ask(query(f"caesar.{ZONE}")).rcode() == dns.rcode.NOERROR
        assert live.terminated is None and served_serial(live) == first
        assert server.port == port and server.thread.is_alive()
        live.close()


def served_serial(client: RawClient) -> str:
    return format(client.quic.tls._peer_certificate.serial_number, "x")
