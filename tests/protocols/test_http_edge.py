"""Serving the HTTPS edge: IPv6 only, TLS from TrustChain's own renewed certificate, h2,
health, readiness, metrics, graceful drain, and its place in `trustchain run`."""

from __future__ import annotations

import dataclasses
import http.client
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from cryptography import x509

from trustchain.actors.renewal import GetBundle, RenewNow
from trustchain.config import HsmConfig
from trustchain.protocols.http import HttpStartFailed, bind_ipv6, serve_http
from trustchain.supervisors import ActorState, Registry, RestartChild

from .conftest import TRUSTCHAIN, cli, wait_for, write_config
from .test_http import ZONE, Edge, edge_config


def poll(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)
    return result


@pytest.fixture
def edge(softhsm: HsmConfig, tmp_path: Path) -> Iterator[Edge]:
    """One tree at a time in a process (one HSM login, one PKCS#11 thread); they start fast."""
    # every interface: IPv4 must still be refused, by IPV6_V6ONLY and not by the address
    e = Edge(edge_config(tmp_path, softhsm, host="::"))
    yield e
    e.stop()


def served_serial(edge: Edge, alpn: list[str] | None = None) -> tuple[str, str | None]:
    context = edge.client_context()
    if alpn:
        context.set_alpn_protocols(alpn)
    with socket.create_connection(("::1", edge.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="::1") as tls:  # fmt: skip
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        serial = format(x509.load_der_x509_certificate(der).serial_number, "x")
        return serial, tls.selected_alpn_protocol()


def test_ipv4_is_refused_even_on_every_interface(edge: Edge) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", edge.port), timeout=5)
    assert edge.get("/health").status == 200  # while IPv6 is answered
    sock = bind_ipv6("::", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        sock.close()


def raw_exchange(edge: Edge, request: bytes) -> bytes:
    """Send these bytes on one TLS connection, then read the response head."""
    with socket.create_connection(("::1", edge.port), timeout=30) as raw, \
            edge.client_context().wrap_socket(raw, server_hostname="::1") as tls:  # fmt: skip
        tls.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received and (chunk := tls.recv(65536)):
            received += chunk
        return received


def test_bodies_over_the_limit_get_413_before_being_read_and_append_nothing(edge: Edge) -> None:
    size, limit = edge.log_info()["tree_size"], edge.config.http.max_body_bytes
    # The client waits for the answer before sending any of its 2 MiB: the header is enough.
    head = (f"POST /ct/v1/add-chain HTTP/1.1\r\nHost: [::1]\r\nContent-Length: {2 << 20}\r\n"
            "Content-Type: application/json\r\n\r\n").encode()  # fmt: skip
    assert raw_exchange(edge, head).startswith(b"HTTP/1.1 413 ")
    # No length given: refused at the byte past the limit (the last one this client sends).
    chunked = (f"POST /ct/v1/add-chain HTTP/1.1\r\nHost: [::1]\r\n"
               f"Transfer-Encoding: chunked\r\n\r\n{limit + 1:x}\r\n").encode()  # fmt: skip
    assert raw_exchange(edge, chunked + b"A" * (limit + 1)).startswith(b"HTTP/1.1 413 ")
    assert edge.log_info()["tree_size"] == size


def test_wrong_methods_get_405_with_allow(edge: Edge) -> None:
    reply = edge.get("/ct/v1/add-chain")
    assert reply.status == 405 and reply.headers["allow"] == "POST"
    reply = edge.request("POST", "/ct/v1/get-sth", b"{}")
    assert reply.status == 405 and reply.headers["allow"] == "GET, HEAD"
    assert edge.get("/ct/v1/no-such-thing").status == 404


def test_the_renewed_certificate_is_served_without_a_restart(edge: Edge) -> None:
    first, _ = served_serial(edge)
    assert first == edge.registry.ask("renewal", GetBundle("https"))["serial"]
    kept = edge.connection()  # a connection from before the renewal ...
    kept.request("GET", "/health")
    assert kept.getresponse().read()
    port, thread = edge.port, edge.thread

    renewed = edge.registry.ask("renewal", RenewNow("https"), timeout=30)["serial"]
    assert renewed != first
    poll(lambda: served_serial(edge)[0] == renewed, "the renewed certificate to be served")
    kept.request("GET", "/ready")  # ... goes on, on its old session
    assert kept.getresponse().status == 200
    kept.close()
    assert (edge.port, edge.thread.is_alive()) == (port, True) and edge.thread is thread


def test_alpn_offers_h2_and_an_h2_request_is_answered(edge: Edge) -> None:
    assert served_serial(edge, ["h2", "http/1.1"])[1] == "h2"
    assert served_serial(edge, ["http/1.1"])[1] == "http/1.1"
    tls12 = edge.client_context()  # h2 over TLS 1.2: AEAD suites only (RFC 7540 §9.2)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    for ciphers, accepted in (("ECDHE+AESGCM", True), ("ECDHE+AES:!AESGCM", False)):
        tls12.set_ciphers(ciphers)
        with socket.create_connection(("::1", edge.port), timeout=10) as raw:
            try:
                with tls12.wrap_socket(raw, server_hostname="::1") as tls:
                    assert "GCM" in tls.cipher()[0] and accepted
            except ssl.SSLError:
                assert not accepted
    context = edge.client_context()
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("::1", edge.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="::1") as tls:  # fmt: skip
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(
            1,
            [
                (":method", "GET"),
                (":path", "/ct/v1/get-sth"),
                (":scheme", "https"),
                (":authority", "[::1]"),
            ],
            end_stream=True,
        )
        tls.sendall(conn.data_to_send())
        status, body, ended = None, b"", False
        while not ended:
            for event in conn.receive_data(tls.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(len(event.data), event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            tls.sendall(conn.data_to_send())
    assert status == b"200" and b"sha256_root_hash" in body


def test_health_ready_and_metrics_follow_the_actors(edge: Edge) -> None:
    assert edge.get("/health").json()["status"] == "healthy"
    assert edge.get("/ready").json()["status"] == "ready"
    metrics = edge.get("/metrics")
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.body.decode()
    for line in (
        'trustchain_actor_state{actor="ctlog",state="running"} 1.0',
        'trustchain_actor_state{actor="ctlog",state="failed"} 0.0',
        'trustchain_actor_restarts_total{actor="issuer"} 0.0',
        'trustchain_actor_mailbox{actor="hsm"}',
        "trustchain_actor_handled_total{actor=",
        "trustchain_ct_tree_size ",
        "trustchain_ct_sth_age_seconds ",
        "trustchain_ct_pool 0.0",
        "trustchain_ct_finals_owed ",
        'trustchain_ct_monitor_alerts_total{kind="fork"} 0.0',
        "trustchain_ct_monitor_verified_tree_size ",
        'trustchain_http_requests_total{method="GET",route="/ready",status="200"}',
        'trustchain_http_request_duration_seconds_bucket{le="0.001",route="/health",status="200"}',
    ):
        assert line in text, line  # fmt: skip

    cell = edge.registry.cell("ctlog")
    assert cell.ref is not None
    cell.ref.stop(block=True)  # transient: it stays down
    poll(lambda: cell.state is ActorState.STOPPED, "the log to stop")
    health, ready = edge.get("/health"), edge.get("/ready")
    assert health.status == 503 and "did not answer" in health.json()["reason"]
    assert ready.status == 503 and ready.json()["not_running"] == {"ctlog": "stopped"}
    scrape = edge.get("/metrics").body.decode()
    assert 'trustchain_actor_state{actor="ctlog",state="stopped"} 1.0' in scrape
    assert "trustchain_ct_tree_size" not in scrape
    assert edge.get("/ct/v1/get-sth").status == 503
    edge.registry.ask("root", RestartChild("ctlog"), timeout=60)
    poll(lambda: edge.get("/ready").status == 200, "the log to be back")
    assert edge.get("/health").status == 200


def test_health_is_503_once_the_checkpoint_is_older_than_allowed(
    softhsm: HsmConfig, tmp_path: Path
) -> None:
    config = edge_config(tmp_path, softhsm, max_sth_age_s=0.2)
    ctlog = dataclasses.replace(config.ctlog, checkpoint_interval_s=3600.0)  # never re-signed
    config = dataclasses.replace(config, ctlog=ctlog)
    stale = Edge(config)
    try:
        reply = poll(lambda: (r := stale.get("/health")).status == 503 and r, "a stale checkpoint")
        assert "old (limit 0.2 s)" in reply.json()["reason"]
    finally:
        stale.stop()


def closed_by_server(conn: http.client.HTTPSConnection) -> bool:
    assert conn.sock is not None
    try:
        return conn.sock.recv(1) == b""
    except (ssl.SSLError, OSError):
        return True


def test_stopping_drains_a_request_in_flight(softhsm: HsmConfig, tmp_path: Path) -> None:
    draining = Edge(edge_config(tmp_path, softhsm))

    def in_flight() -> bool:  # the request below, and this scrape
        return "trustchain_http_in_flight 2.0" in draining.get("/metrics").body.decode()

    try:
        context = draining.client_context()
        with socket.create_connection(("::1", draining.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="::1") as tls:  # fmt: skip
            tls.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls.sendall(b"POST /ct/v1/add-chain HTTP/1.1\r\nHost: [::1]\r\n"
                        b"Content-Length: 13\r\n\r\n{\"chain\": ")  # fmt: skip
            poll(in_flight, "the request to reach the app")
            idle = draining.connection()
            idle.request("GET", "/health")
            assert idle.getresponse().read()
            draining.token.run_sync_soon(draining.scope.cancel)
            assert closed_by_server(idle)  # the stop has begun: idle connections go at once
            tls.sendall(b"[]}")  # the rest of the body, after the stop
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 400 ") and b"the chain is empty" in reply
        draining.thread.join(10)
        assert not draining.thread.is_alive()
    finally:
        draining.stop()


async def test_the_edge_refuses_to_start_on_ipv4_outside_the_zones_or_on_a_busy_port(
    softhsm: HsmConfig, tmp_path: Path
) -> None:
    with pytest.raises(HttpStartFailed, match="IPv6 address"):
        await serve_http(edge_config(tmp_path, softhsm, host="127.0.0.1"), Registry())
    with pytest.raises(HttpStartFailed, match="permitted_zones"):
        await serve_http(edge_config(tmp_path, softhsm, names=["www.example.org"]), Registry())
    busy = bind_ipv6("::1", 0)
    busy.listen()
    try:
        port = busy.getsockname()[1]
        with pytest.raises(HttpStartFailed, match=f"cannot listen on \\[::1\\]:{port}"):
            await serve_http(edge_config(tmp_path, softhsm, port=port), Registry())
    finally:
        busy.close()


# In `trustchain run` --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def test_trustchain_run_serves_https_and_stops_cleanly_on_sigterm(
    short_tmp: Path, softhsm: HsmConfig
) -> None:
    port = free_port()
    config = write_config(
        short_tmp, softhsm, http={"port": port, "plain_port": -1, "names": [f"ct.{ZONE}", "::1"]}
    )
    process = subprocess.Popen([TRUSTCHAIN, "--config", str(config), "run"],
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(short_tmp / "ctl.sock", process)
        root = short_tmp / "root.pem"
        assert cli(config, "ca", "root", "--out", str(root)).returncode == 0
        context = ssl.create_default_context(cafile=str(root))

        def healthy() -> bool:
            try:
                with socket.create_connection(("::1", port), timeout=5) as raw, \
                        context.wrap_socket(raw, server_hostname="::1") as tls:  # fmt: skip
                    tls.sendall(b"GET /health HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
                    return tls.recv(65536).startswith(b"HTTP/1.1 200 ")
            except OSError:
                return False

        poll(healthy, "/health over HTTPS")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert f"serving on https://[::1]:{port}" in process.stderr.read()  # type: ignore[union-attr]


def test_trustchain_run_exits_1_when_the_edge_cannot_start(
    short_tmp: Path, softhsm: HsmConfig
) -> None:
    config = write_config(
        short_tmp, softhsm, http={"port": 0, "plain_port": -1, "names": ["www.example.org"]}
    )
    done = subprocess.run([TRUSTCHAIN, "--config", str(config), "run"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "www.example.org" in done.stderr and "permitted_zones" in done.stderr
