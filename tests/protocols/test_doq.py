"""DNS over QUIC against a running listener (real QUIC on [::1], TrustChain's own
certificate): answers through dnspython's DoQ client, and every RFC 9250 rule, with
aioquic's client driven by hand where dnspython's will not break one."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.exception
import dns.message
import dns.query
import dns.quic
import dns.rcode
import dns.rdatatype
import pytest
from aioquic.quic.events import HandshakeCompleted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dns.quic._common import UnexpectedEOF

from trustchain.actors.resolver import AddChallengeTxt, RemoveChallengeTxt, ResolverStatus
from trustchain.config import HsmConfig
from trustchain.protocols.doq_framing import (
    DOQ_PROTOCOL_ERROR,
    DOQ_REQUEST_CANCELLED,
    PADDING_BLOCK,
)

from ..conftest import wait_until
from .doq_fixtures import HANG, ZONE, DoqServer, DoqTree, RawClient, doq_config, query, serving


@pytest.fixture(scope="module")
def tree(softhsm: HsmConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DoqTree]:
    """One tree for the module (one HSM login, one PKCS#11 thread at a time)."""
    t = DoqTree(doq_config(tmp_path_factory.mktemp("doq"), softhsm))
    yield t
    t.stop()


@pytest.fixture(scope="module")
def server(tree: DoqTree) -> Iterator[DoqServer]:
    with serving(tree) as s:
        yield s


def ask(
    server: DoqServer, connection: dns.quic.SyncQuicConnection, name: str, rdtype: str = "AAAA"
) -> dns.message.Message:
    return dns.query.quic(
        query(name, rdtype, pad=128), "::1", timeout=5, port=server.port, connection=connection
    )


def test_zone_answers_over_one_reused_dnspython_connection_padded_to_468(server: DoqServer) -> None:
    accepted = server.endpoint.stats.accepted
    with server.manager() as manager:
        connection = manager.connect("::1", server.port)
        answers = {}
        for name, rdtype in (
            ("hypermesh", "AAAA"),
            ("caesar", "AAAA"),
            ("hypermesh", "A"),
            ("nowhere", "AAAA"),
        ):
            response = ask(server, connection, f"{name}.{ZONE}", rdtype)
            assert response.id == 0
            assert len(response.to_wire()) % PADDING_BLOCK == 0  # RFC 8467 block padding
            answers[name, rdtype] = (
                dns.rcode.to_text(response.rcode()),
                sorted(str(r) for rrs in response.answer for r in rrs),
            )
        assert manager.connect("::1", server.port) is connection
    assert answers == {
        ("hypermesh", "AAAA"): ("NOERROR", ["2001:db8::10"]),
        ("caesar", "AAAA"): ("NOERROR", ["2001:db8::20", "2001:db8::21"]),
        ("hypermesh", "A"): ("NOERROR", []),  # NODATA: never an IPv4 address
        ("nowhere", "AAAA"): ("NXDOMAIN", []),
    }
    assert server.endpoint.stats.accepted == accepted + 1  # four queries, one connection


def test_each_response_is_one_framed_message_ending_its_stream_with_fin(server: DoqServer) -> None:
    client = RawClient(server.port, server.tree.root_pem)
    wire = query(f"hypermesh.{ZONE}").to_wire()
    sid = client.send(len(wire).to_bytes(2, "big") + wire)
    client.pump(lambda: client.received(sid)[1], "the response's FIN")
    data, ended = client.received(sid)
    assert ended and int.from_bytes(data[:2], "big") == len(data) - 2
    assert dns.message.from_wire(data[2:]).answer[0][0].address == "2001:db8::10"
    client.close()


def test_a_message_id_other_than_0_closes_the_connection_with_doq_protocol_error(
    server: DoqServer,
) -> None:
    client = RawClient(server.port, server.tree.root_pem)
    assert client.ask(query(f"hypermesh.{ZONE}")).rcode() == dns.rcode.NOERROR
    q = query(f"hypermesh.{ZONE}")
    q.id = 4321
    wire = q.to_wire()
    client.send(len(wire).to_bytes(2, "big") + wire)
    closed = client.expect_close()
    assert closed.error_code == DOQ_PROTOCOL_ERROR and "4321" in closed.reason_phrase
    client.close()
    # dnspython's client sets ID 0 itself; sending on its stream directly is how to break it
    with server.manager() as manager:
        connection = manager.connect("::1", server.port)
        with connection.make_stream(5) as stream:
            stream.send(q.to_wire(), True)
            with pytest.raises((UnexpectedEOF, dns.exception.Timeout)):
                stream.receive(1)
    assert_server_still_answers(server)


def test_a_second_query_on_one_stream_is_a_protocol_error(server: DoqServer) -> None:
    client = RawClient(server.port, server.tree.root_pem)
    wire = query(f"hypermesh.{ZONE}").to_wire()
    framed = len(wire).to_bytes(2, "big") + wire
    sid = client.send(framed + framed)
    closed = client.expect_close()
    assert (
        closed.error_code == DOQ_PROTOCOL_ERROR and "one query per stream" in closed.reason_phrase
    )
    assert client.received(sid) == (b"", False)  # nothing answered
    client.close()
    with server.manager() as manager:  # the same with dnspython, two sends on one stream
        connection = manager.connect("::1", server.port)
        with connection.make_stream(5) as stream:
            stream.send(wire, False)
            stream.send(wire, True)
            with pytest.raises((UnexpectedEOF, dns.exception.Timeout)):
                stream.receive(1)


def test_a_unidirectional_stream_is_a_protocol_error(server: DoqServer) -> None:
    client = RawClient(server.port, server.tree.root_pem)
    wire = query(f"hypermesh.{ZONE}").to_wire()
    sid = client.send(len(wire).to_bytes(2, "big") + wire, uni=True)
    assert sid & 0x2
    closed = client.expect_close()
    assert closed.error_code == DOQ_PROTOCOL_ERROR and "unidirectional" in closed.reason_phrase
    client.close()


@pytest.mark.parametrize("cut", [1, 2, 20], ids=["half-a-length", "length-only", "short-message"])
def test_a_stream_ending_before_its_message_is_whole_is_a_protocol_error(
    server: DoqServer, cut: int
) -> None:
    wire = query(f"hypermesh.{ZONE}").to_wire()
    framed = len(wire).to_bytes(2, "big") + wire
    client = RawClient(server.port, server.tree.root_pem)
    client.send(framed[:cut])  # then FIN
    closed = client.expect_close()
    assert closed.error_code == DOQ_PROTOCOL_ERROR and "stream finished" in closed.reason_phrase
    client.close()


def test_the_edns_tcp_keepalive_option_is_a_protocol_error(server: DoqServer) -> None:
    keepalive = dns.edns.GenericOption(dns.edns.OptionType.KEEPALIVE, b"\x00\x64")
    client = RawClient(server.port, server.tree.root_pem)
    wire = query(f"hypermesh.{ZONE}", options=[keepalive]).to_wire()
    client.send(len(wire).to_bytes(2, "big") + wire)
    closed = client.expect_close()
    assert closed.error_code == DOQ_PROTOCOL_ERROR and "keepalive" in closed.reason_phrase
    client.close()


def test_a_message_too_short_for_a_dns_header_is_a_protocol_error(server: DoqServer) -> None:
    client = RawClient(server.port, server.tree.root_pem)
    client.send(b"\x00\x03\x00\x00\x00")
    assert client.expect_close().error_code == DOQ_PROTOCOL_ERROR
    client.close()


def test_junk_that_is_not_dns_gets_formerr_from_the_resolver_and_the_connection_lives(
    server: DoqServer,
) -> None:
    junk = b"\x00\x00" + b"\xff" * 30  # ID 0, then nothing dnspython can parse
    client = RawClient(server.port, server.tree.root_pem)
    sid = client.send(len(junk).to_bytes(2, "big") + junk)
    client.pump(lambda: client.received(sid)[1], "an answer to junk")
    response = dns.message.from_wire(client.received(sid)[0][2:])
    assert response.rcode() == dns.rcode.FORMERR and client.terminated is None
    assert client.ask(query(f"caesar.{ZONE}")).rcode() == dns.rcode.NOERROR
    client.close()


def test_stop_sending_cancels_the_query_and_the_connection_goes_on(server: DoqServer) -> None:
    client = RawClient(server.port, server.tree.root_pem)
    before = server.endpoint.stats.cancelled
    wire = query(HANG).to_wire()
    sid = client.send(len(wire).to_bytes(2, "big") + wire)
    client.pump(lambda: server.call(lambda: server.endpoint.tasks) == 1, "the query to be asked")
    client.quic.stop_stream(sid, DOQ_REQUEST_CANCELLED)  # RFC 9250 §4.3.2
    client.pump(lambda: client.reset(sid) is not None, "the server to reset the stream")
    assert client.reset(sid) == DOQ_REQUEST_CANCELLED
    assert server.call(lambda: server.endpoint.tasks) == 0  # no one works on it any more
    assert server.endpoint.stats.cancelled == before + 1
    assert client.ask(query(f"hypermesh.{ZONE}")).rcode() == dns.rcode.NOERROR
    assert client.terminated is None
    client.close()


def test_reset_stream_of_a_half_sent_query_frees_it(server: DoqServer) -> None:
    client = RawClient(server.port, server.tree.root_pem)
    wire = query(f"hypermesh.{ZONE}").to_wire()
    sid = client.send((len(wire).to_bytes(2, "big") + wire)[:10], end=False)
    client.pump(lambda: server.call(lambda: server.endpoint.held) == 10, "10 octets held")
    client.quic.reset_stream(sid, DOQ_REQUEST_CANCELLED)
    client.pump(lambda: client.reset(sid) is not None, "the server to end its side too")
    assert server.call(lambda: server.endpoint.held) == 0
    assert client.ask(query(f"hypermesh.{ZONE}")).rcode() == dns.rcode.NOERROR
    client.close()


def test_alpn_other_than_doq_is_refused_in_the_handshake(server: DoqServer) -> None:
    client = RawClient(server.port, server.tree.root_pem, handshake=False, alpn_protocols=["h3"])
    closed = client.expect_close()
    assert client.event(HandshakeCompleted) is None
    assert closed.error_code == 0x100 + 120  # crypto error: TLS no_application_protocol
    client.close()


def test_ipv4_is_never_answered_even_on_every_interface(tree: DoqTree) -> None:
    with serving(tree, host="::") as everywhere:
        sock = everywhere.endpoint._sock
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        datagrams = everywhere.endpoint.stats.datagrams
        client = RawClient(everywhere.port, tree.root_pem, host="127.0.0.1", handshake=False)
        with pytest.raises(AssertionError, match="timed out"):
            client.pump(lambda: client.event(HandshakeCompleted), "a handshake", timeout=1.0)
        client.close()
        assert everywhere.endpoint.stats.datagrams == datagrams  # not one reached it
        six = RawClient(everywhere.port, tree.root_pem)  # while IPv6 is answered
        assert six.ask(query(f"hypermesh.{ZONE}")).rcode() == dns.rcode.NOERROR
        six.close()


def other_root(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some Other Root")])
    start = dt.datetime.fromtimestamp(time.time() - 60, dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / "other-root.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_clients_verify_against_the_root_and_fail_against_another(
    server: DoqServer, tmp_path: Path
) -> None:
    with server.manager() as manager:  # var/ca/root.pem's twin: the issuer wrote it
        response = ask(server, manager.connect("::1", server.port), f"caesar.{ZONE}")
        assert response.rcode() == dns.rcode.NOERROR
    with (
        server.manager(verify=other_root(tmp_path)) as manager,
        pytest.raises((UnexpectedEOF, dns.exception.Timeout)),
    ):
        ask(server, manager.connect("::1", server.port), f"caesar.{ZONE}")
    # the same refusal as aioquic reports it: TLS bad_certificate, no handshake
    client = RawClient(server.port, other_root(tmp_path).read_text(), handshake=False)
    assert client.expect_close().error_code == 0x100 + 42
    assert client.event(HandshakeCompleted) is None
    client.close()


def assert_server_still_answers(server: DoqServer) -> None:
    with server.manager() as manager:
        response = ask(server, manager.connect("::1", server.port), f"hypermesh.{ZONE}")
        assert response.rcode() == dns.rcode.NOERROR


def test_a_repeated_zone_query_is_answered_from_the_listeners_memory_and_counted(
    server: DoqServer,
) -> None:
    registry = server.tree.registry

    def status() -> dict[str, Any]:
        """The resolver's counts, the answers the listener gave from memory so far
        reported first (earlier tests' too, so that fewer land in this test's window)."""
        server.call(server.endpoint._resolve.__self__.send_counts)  # type: ignore[attr-defined]
        result: dict[str, Any] = registry.ask("resolver", ResolverStatus())
        return result

    before = status()
    handled = registry.lookup("resolver").handled
    with server.manager() as manager:
        connection = manager.connect("::1", server.port)
        first = ask(server, connection, f"caesar.{ZONE}")
        middle = registry.lookup("resolver").handled
        second = ask(server, connection, f"caesar.{ZONE}")
        assert registry.lookup("resolver").handled == middle  # the resolver was not asked
    assert middle <= handled + 2  # the first was (one ResolverStatus in between at most)
    assert second.to_text() == first.to_text()  # (to_wire would shuffle the RRsets)

    def delta(after: dict[str, Any], part: str, key: str) -> int:
        return int(after[part].get(key, 0)) - int(before[part].get(key, 0))

    # Counts reach the resolver a report later, and an earlier test's report may still
    # be on its way, so: at least these two, and the memory's among them.
    wait_until(
        lambda: (
            delta(after := status(), "rcodes", "NOERROR") >= 2
            and delta(after, "sources", "zone_memo") >= 1
        ),
        "both answers counted, one from the listener's memory",
    )


def test_a_zone_change_is_seen_at_once_not_hidden_by_the_listeners_memory(
    server: DoqServer,
) -> None:
    registry = server.tree.registry
    name = f"_acme-challenge.hypermesh.{ZONE}"
    with server.manager() as manager:
        connection = manager.connect("::1", server.port)
        for _ in range(2):  # asked twice: the second from memory
            empty = ask(server, connection, name, "TXT")
            assert empty.rcode() == dns.rcode.NXDOMAIN and not empty.answer
        registry.ask("resolver", AddChallengeTxt(name, "token-1"))
        try:
            added = ask(server, connection, name, "TXT")
            assert [r.strings for rrs in added.answer for r in rrs] == [(b"token-1",)]
        finally:
            registry.ask("resolver", RemoveChallengeTxt(name, "token-1"))
        removed = ask(server, connection, name, "TXT")
        assert not removed.answer
