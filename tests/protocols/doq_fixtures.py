"""What the DoQ tests share: a TrustChain tree with a resolver, the DoQ listener on its
own trio loop, and two clients (dnspython's, and aioquic's QuicConnection driven by
hand for the rules dnspython cannot break).

The resolver is TrustChain's own (``ResolverActor``, its zone from ``RECORDS``);
``resolver_spec`` is the one place that chooses it.
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.name
import dns.quic
import dns.rcode
import dns.rdatatype
import dns.rrset
import trio
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

from trustchain.actors.ctlog import CTLogActor
from trustchain.actors.hsm import HSMActor
from trustchain.actors.issuer import GetCAStatus, IssuerActor
from trustchain.actors.renewal import RenewalActor
from trustchain.actors.resolver.actor import ResolverActor
from trustchain.config import (
    CaConfig,
    Config,
    CtLogConfig,
    HsmConfig,
    RenewalConfig,
    RuntimeConfig,
)
from trustchain.config.schema import ResolverConfig
from trustchain.protocols.doq import serve_doq
from trustchain.protocols.doq_server import DoqEndpoint
from trustchain.supervisors import ChildSpec, Registry, start_root

T = TypeVar("T")

ZONE = "doq.example.com"
SERVER_NAME = f"dns.{ZONE}"
RECORDS = {"hypermesh": ["2001:db8::10"], "caesar": ["2001:db8::20", "2001:db8::21"]}
HANG = f"hang.{ZONE}."  # ZoneResolver never answers it (cancellation tests)


def silent_upstream() -> socket.socket:
    """A UDP socket on [::1] that reads nothing and answers nothing: an upstream that
    makes every forwarded query wait ``upstream_timeout_s`` (cancellation tests)."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.bind(("::1", 0))
    return sock


SILENT = silent_upstream()  # for the whole test run: the config names its port
HANG = "hang.example.org."  # not in the zone: forwarded to SILENT, answered after 5 s


def resolver_spec(config: Config) -> ChildSpec:
    """TrustChain's resolver (``actors/resolver``), no detector: the zone from config."""
    return ChildSpec("resolver", lambda ctx: ResolverActor.start(ctx, config.resolver))


def doq_config(tmp: Path, hsm: HsmConfig, **resolver: Any) -> Config:
    tag = uuid.uuid4().hex[:8]
    return Config(
        runtime=RuntimeConfig(control_socket=tmp / "ctl.sock", request_timeout_s=5.0),
        hsm=hsm,
        ca=CaConfig(
            root_key=f"root-{tag}",
            intermediate_key=f"int-{tag}",
            permitted_zones=[ZONE],
            base_url="http://pki.example.com",
            database=tmp / "ca" / "ca.sqlite3",
            crl_dir=tmp / "ca" / "crl",
        ),
        ctlog=CtLogConfig(
            key=f"log-{tag}",
            storage_dir=tmp / "ct" / "tiles",
            index_db=tmp / "ct" / "index.sqlite3",
        ),
        renewal=RenewalConfig(directory=tmp / "tls", validity_s=3600, check_interval_s=0.2),
        resolver=ResolverConfig(
            **{
                "enabled": True,
                "port": 0,
                "origin": ZONE,
                "records": RECORDS,
                "names": [SERVER_NAME, "::1"],
                "upstreams": [f"udp://[::1]:{SILENT.getsockname()[1]}"],
                "upstream_timeout_s": 5.0,
                "challenge_db": tmp / "resolver" / "challenges.sqlite3",  # not var/ in the cwd
                **resolver,
            }
        ),
    )


class DoqTree:
    """HSM, CT log, issuer, renewal and a resolver: what the DoQ listener needs."""

    def __init__(self, config: Config) -> None:
        self.config, self.registry = config, Registry()
        c = config
        children = [
            ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, c.hsm)),
            ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, c.ctlog)),
            ChildSpec("issuer", lambda ctx: IssuerActor.start(ctx, c.ca), start_timeout_s=60),
            ChildSpec("renewal", lambda ctx: RenewalActor.start(ctx, c.renewal)),
            resolver_spec(c),
        ]
        self.root = start_root(self.registry, "root", children, max_restarts=10, period_s=60)
        cas = {ca["role"]: ca for ca in self.registry.ask("issuer", GetCAStatus())}
        self.root_pem: str = cas["root"]["certificate"]
        self.root_file = config.ca.database.parent / "root.pem"  # the issuer writes it there
        assert self.root_file.read_text() == self.root_pem

    def stop(self) -> None:
        self.root.stop(block=True, timeout=30)


class DoqServer:
    """``serve_doq`` on its own trio loop in a thread, for the tree's registry."""

    def __init__(self, tree: DoqTree, **resolver: Any) -> None:
        self.tree = tree
        self.config = replace(tree.config, resolver=replace(tree.config.resolver, **resolver))
        self.started = threading.Event()
        self.failure: BaseException | None = None
        self.endpoints: list[DoqEndpoint] = []
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self.thread.start()
        assert self.started.wait(60), "the DoQ listener did not start"
        assert self.failure is None, repr(getattr(self.failure, "exceptions", self.failure))
        self.endpoint = self.endpoints[0]

    async def _main(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        try:
            async with trio.open_nursery() as nursery:
                self.scope = nursery.cancel_scope
                self.port = await nursery.start(
                    functools.partial(serve_doq, endpoints=self.endpoints),
                    self.config,
                    self.tree.registry,
                )
                self.started.set()
        except BaseException as exc:  # shown by the fixture, not lost in a thread
            self.failure = exc
            self.started.set()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop (to read its state consistently)."""
        return trio.from_thread.run_sync(fn, trio_token=self.token)

    def stop(self) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self.token.run_sync_soon(self.scope.cancel)
        self.thread.join(30)

    def manager(self, verify: Path | None = None) -> dns.quic.SyncQuicManager:
        return dns.quic.SyncQuicManager(
            verify_mode=str(verify or self.tree.root_file), server_name=SERVER_NAME
        )


@contextlib.contextmanager
def serving(tree: DoqTree, **resolver: Any) -> Iterator[DoqServer]:
    server = DoqServer(tree, **resolver)
    try:
        yield server
    finally:
        server.stop()


def query(name: str, rdtype: str = "AAAA", **kwargs: Any) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0, **kwargs)
    q.id = 0
    return q


class RawClient:
    """aioquic's client QuicConnection over a UDP socket, pumped by hand (no threads):
    for what dnspython's client will not send."""

    def __init__(
        self,
        port: int,
        root_pem: str,
        host: str = "::1",
        handshake: bool = True,
        **configuration: Any,
    ) -> None:
        self.configuration = QuicConfiguration(
            is_client=True, server_name=SERVER_NAME, **{"alpn_protocols": ["doq"], **configuration}
        )
        self.configuration.load_verify_locations(cadata=root_pem.encode())
        self.quic = QuicConnection(configuration=self.configuration)
        family = socket.AF_INET if ":" not in host else socket.AF_INET6
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.addr = (host, port)
        self.sock.connect(self.addr)
        self.sock.setblocking(False)
        self.peer = self.sock.getpeername()
        self.events: list[QuicEvent] = []
        self.quic.connect(self.peer, time.monotonic())
        if handshake:
            self.pump(lambda: self.event(HandshakeCompleted) is not None, "the handshake")

    def close(self) -> None:
        self.sock.close()

    def event(self, kind: type[Any]) -> Any:
        return next((e for e in self.events if isinstance(e, kind)), None)

    @property
    def terminated(self) -> ConnectionTerminated | None:
        return self.event(ConnectionTerminated)

    def pump(self, until: Callable[[], object], what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for data, _ in self.quic.datagrams_to_send(time.monotonic()):
                with contextlib.suppress(OSError):
                    self.sock.send(data)
            if until():
                return
            now = time.monotonic()
            if now >= deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            timer = self.quic.get_timer()
            wait = min(deadline, timer if timer is not None else deadline) - now
            readable, _, _ = select.select([self.sock], [], [], max(wait, 0))
            now = time.monotonic()
            if readable:
                with contextlib.suppress(OSError):
                    while True:
                        self.quic.receive_datagram(self.sock.recv(4096), self.peer, now)
            if timer is not None and now >= timer:
                self.quic.handle_timer(now)
            while (event := self.quic.next_event()) is not None:
                self.events.append(event)

    def wait(self, seconds: float) -> None:
        """Keep the connection going for ``seconds`` (answers, acknowledgements)."""
        end = time.monotonic() + seconds
        self.pump(lambda: time.monotonic() >= end, "time to pass", timeout=seconds + 1)

    def send(
        self, data: bytes, end: bool = True, uni: bool = False, stream_id: int | None = None
    ) -> int:
        if stream_id is None:
            stream_id = self.quic.get_next_available_stream_id(is_unidirectional=uni)
        self.quic.send_stream_data(stream_id, data, end_stream=end)
        return stream_id

    def received(self, stream_id: int) -> tuple[bytes, bool]:
        data, ended = b"", False
        for e in self.events:
            if isinstance(e, StreamDataReceived) and e.stream_id == stream_id:
                data += e.data
                ended = ended or e.end_stream
        return data, ended

    def reset(self, stream_id: int) -> int | None:
        return next(
            (
                e.error_code
                for e in self.events
                if isinstance(e, StreamReset) and e.stream_id == stream_id
            ),
            None,
        )

    def ask(self, q: dns.message.Message, timeout: float = 5.0) -> dns.message.Message:
        wire = q.to_wire()
        sid = self.send(len(wire).to_bytes(2, "big") + wire)
        self.pump(lambda: self.received(sid)[1] or self.terminated, f"an answer on {sid}", timeout)
        data, _ = self.received(sid)
        assert data, f"no answer on stream {sid}: {self.terminated}"
        assert int.from_bytes(data[:2], "big") == len(data) - 2
        return dns.message.from_wire(data[2:])

    def expect_close(self, timeout: float = 5.0) -> ConnectionTerminated:
        self.pump(lambda: self.terminated, "the server to close the connection", timeout)
        assert self.terminated is not None
        return self.terminated
