"""Benchmark DNS over QUIC: prints figures, asserts nothing.

    .venv/bin/python bench/doq.py [--runs 3] [--seconds 2]

Each server runs in a process of its own on [::1], all answering the same zone
(``[resolver] records`` of the default config), all measured in the same run
with the same client, dnspython's asyncio DoQ client (UDP: dnspython's UDP query):

- trustchain: the DoQ listener (``DoqEndpoint``, trio) getting its answers as
  `trustchain run`'s does (``ResolverClient``): from TrustChain's ``ResolverActor``,
  or, for a zone query asked before, from its memory of the zone the actor publishes
  (responses padded to 468 octets);
- peer: aioquic's own example DoQ server design: one asyncio ``aioquic.asyncio.serve``
  whose protocol answers each stream from a dict (dnspython builds the answer;
  the example uses dnslib), no padding, no RFC 9250 checks;
- udp: the reference, the same ResolverActor (and ``ResolverClient``) behind a plain
  UDP socket (trio).

Figures: handshake + first query (a fresh connection each time; its close is
not timed: dnspython waits ~100 ms for it), sequential queries on one reused
connection (median, p99), queries/s with 32 and 128 in flight on one connection
and spread over 8 connections; and the server's CPU per query (its process's utime +
stime over the queries of the sequential and the 32-in-flight figures): what a query
costs the server, which the client sharing the cores disturbs less than it does the
rates. Each figure is the median of ``--runs`` runs.
A self-signed certificate stands in for TrustChain's own (the CA is not what is
measured here).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.quic
import dns.rcode
import dns.rrset
import dns.version
from _cpu import tree_cpu_s
from _test_ca import write_test_ca

from trustchain.config.schema import ResolverConfig

ZONE = ResolverConfig().origin
NAMES = [f"{name}.{ZONE}." for name in ResolverConfig().records]
SERVER_NAME = f"dns.{ZONE}"
LOST = [0]  # queries never answered within 1 s during the throughput figures
ANSWERED = [0]  # queries answered in the last throughput figure


# -- certificates ------------------------------------------------------------------


def make_certificates(directory: Path) -> None:
    write_test_ca(directory, [SERVER_NAME])


# -- servers (each in a child process) -------------------------------------------------


def serve_trustchain(directory: Path, plain_udp: bool) -> None:
    import trio

    from trustchain.actors.resolver.actor import ResolverActor
    from trustchain.protocols.doq import (
        ResolverClient,
        bind_udp_ipv6,
        limits_of,
        quic_configuration,
    )
    from trustchain.protocols.doq_framing import PADDING_BLOCK
    from trustchain.protocols.doq_server import DoqEndpoint
    from trustchain.supervisors import ChildSpec, Registry, start_root

    # its dns-01 records in the run's directory, not var/ under the working directory
    config = ResolverConfig(enabled=True, port=0, challenge_db=directory / "challenges.sqlite3")
    registry = Registry()
    start_root(
        registry, "root", [ChildSpec("resolver", lambda ctx: ResolverActor.start(ctx, config))]
    )
    files = SimpleNamespace(
        fullchain_path=directory / "fullchain.pem", key_path=directory / "key.pem"
    )
    quic = quic_configuration(files, config)  # type: ignore[arg-type]

    asking = ResolverClient(registry, 10.0, PADDING_BLOCK)  # as `trustchain run` asks
    resolve = asking.resolve

    async def main() -> None:
        sock = bind_udp_ipv6("::1", 0)
        if plain_udp:
            usock = trio.socket.from_stdlib_socket(sock)
            print(f"PORT {sock.getsockname()[1]}", flush=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(asking.report)
                while True:
                    data, addr = await usock.recvfrom(2048)

                    async def answer(data: bytes = data, addr: Any = addr) -> None:
                        await usock.sendto(await resolve(data), addr)

                    nursery.start_soon(answer)
        endpoint = DoqEndpoint(
            sock, lambda: quic, resolve, limits_of(config), config.max_connections
        )
        print(f"PORT {endpoint.port}", flush=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(asking.report)
            await endpoint.serve()

    trio.run(main)


def serve_peer(directory: Path) -> None:
    from aioquic.asyncio import QuicConnectionProtocol, serve
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import QuicEvent, StreamDataReceived

    records = {
        dns.name.from_text(k, dns.name.from_text(ZONE)): v
        for k, v in ResolverConfig().records.items()
    }

    class DnsServerProtocol(QuicConnectionProtocol):  # as aioquic's examples/doq_server.py
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.buffers: dict[int, bytes] = {}

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, StreamDataReceived):
                # the example parses each event as a whole query; a query split over two
                # packets breaks it (seen here with 32 in flight), so gather to the FIN
                data = self.buffers.pop(event.stream_id, b"") + event.data
                if not event.end_stream:
                    self.buffers[event.stream_id] = data
                    return
                length = int.from_bytes(data[:2], "big")
                query = dns.message.from_wire(data[2 : 2 + length])
                response = dns.message.make_response(query)
                question = query.question[0]
                if question.name in records:
                    response.answer.append(
                        dns.rrset.from_text_list(
                            question.name, 300, "IN", "AAAA", records[question.name]
                        )
                    )
                else:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                wire = response.to_wire()
                framed = len(wire).to_bytes(2, "big") + wire
                self._quic.send_stream_data(event.stream_id, framed, end_stream=True)
                self.transmit()

    async def main() -> None:
        configuration = QuicConfiguration(alpn_protocols=["doq"], is_client=False)
        configuration.load_cert_chain(directory / "fullchain.pem", directory / "key.pem")
        server = await serve(
            "::1", 0, configuration=configuration, create_protocol=DnsServerProtocol
        )
        print(f"PORT {server._transport.get_extra_info('sockname')[1]}", flush=True)  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the client ------------------------------------------------------------------------


def query(i: int) -> dns.message.Message:
    q = dns.message.make_query(NAMES[i % len(NAMES)], "AAAA", use_edns=0, pad=128)
    q.id = 0
    return q


def manager(directory: Path) -> dns.quic.AsyncioQuicManager:
    return dns.quic.AsyncioQuicManager(
        verify_mode=str(directory / "root.pem"), server_name=SERVER_NAME
    )


async def handshake_ms(directory: Path, port: int, n: int = 20) -> float:
    times = []
    for i in range(n):
        async with manager(directory) as m:
            start = time.perf_counter()
            connection = m.connect("::1", port)
            await dns.asyncquery.quic(query(i), "::1", port=port, connection=connection, timeout=5)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


SEQUENTIAL = 500  # queries timed one after another (after 20 to warm up)


async def sequential_ms(
    directory: Path, port: int, udp: bool, n: int = SEQUENTIAL
) -> tuple[float, float]:
    times = []
    async with manager(directory) as m:
        connection = None if udp else m.connect("::1", port)
        for i in range(n + 20):
            start = time.perf_counter()
            if udp:
                await dns.asyncquery.udp(query(i), "::1", port=port, timeout=5)
            else:
                await dns.asyncquery.quic(
                    query(i), "::1", port=port, connection=connection, timeout=5
                )
            if i >= 20:  # warm-up
                times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


async def throughput(
    directory: Path, port: int, udp: bool, in_flight: int, connections: int, seconds: float
) -> float:
    """Queries/s with ``in_flight`` outstanding, spread over ``connections`` connections
    (a manager per connection: dnspython's keeps one connection per address)."""
    done = 0
    async with contextlib.AsyncExitStack() as stack:
        conns: list[Any] = [None] * connections
        if not udp:
            for k in range(connections):
                m = await stack.enter_async_context(manager(directory))
                conns[k] = m.connect("::1", port)
                await dns.asyncquery.quic(
                    query(k), "::1", port=port, connection=conns[k], timeout=5
                )
        end = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            nonlocal done
            conn, i = conns[k % connections], k
            while time.perf_counter() < end:
                try:
                    if udp:
                        await dns.asyncquery.udp(query(i), "::1", port=port, timeout=1)
                    else:
                        await dns.asyncquery.quic(
                            query(i), "::1", port=port, connection=conn, timeout=1
                        )
                    done += 1
                except dns.exception.Timeout:
                    LOST[0] += 1
                i += in_flight

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(in_flight)))
        ANSWERED[0] = done
        return done / (time.perf_counter() - start)


# -- running it ------------------------------------------------------------------------


def start_server(kind: str, directory: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--dir", str(directory)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("PORT "), f"{kind} server did not start: {line!r}"
    return process, int(line.split()[1])


def measure(kind: str, directory: Path, seconds: float) -> dict[str, float]:
    process, port = start_server(kind, directory)
    udp = kind == "udp"
    figures: dict[str, float] = {}

    async def run() -> None:
        if not udp:
            figures["handshake + first query, ms"] = await handshake_ms(directory, port)
        cpu0 = tree_cpu_s(process.pid)
        figures["sequential p50, ms"], figures["sequential p99, ms"] = await sequential_ms(
            directory, port, udp, SEQUENTIAL
        )
        figures["server CPU per query, sequential, us"] = (
            (tree_cpu_s(process.pid) - cpu0) * 1e6 / (SEQUENTIAL + 20)
        )
        for in_flight in (32, 128):
            cpu0 = tree_cpu_s(process.pid)
            figures[f"q/s, {in_flight} in flight, 1 conn"] = await throughput(
                directory, port, udp, in_flight, 1, seconds
            )
            if in_flight == 32:
                figures["server CPU per query, 32 in flight, us"] = (
                    (tree_cpu_s(process.pid) - cpu0) * 1e6 / max(1, ANSWERED[0])
                )
            if not udp:
                figures[f"q/s, {in_flight} in flight, 8 conns"] = await throughput(
                    directory, port, udp, in_flight, 8, seconds
                )

    LOST[0] = 0
    try:
        asyncio.run(run())
        figures["unanswered in 1 s (q/s runs)"] = LOST[0]
    finally:
        process.terminate()
        process.wait(10)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput figure")
    parser.add_argument("--serve", choices=["trustchain", "peer", "udp"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        if args.serve == "peer":
            serve_peer(args.dir)
        else:
            serve_trustchain(args.dir, plain_udp=args.serve == "udp")
        return
    kinds = ("trustchain", "peer", "udp")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        make_certificates(directory)
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        for run in range(args.runs):
            for kind in kinds:
                runs[kind].append(measure(kind, directory, args.seconds))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    keys = list(runs["trustchain"][0])
    print(
        f"DoQ on [::1], {os.cpu_count()} cores, medians of {args.runs} runs "
        f"(dnspython {dns.version.version}, client and servers on one machine)"
    )
    print(f"{'figure':<34}" + "".join(f"{k:>14}" for k in kinds))
    for key in keys:
        cells = []
        for kind in kinds:
            values = [r[key] for r in runs[kind] if key in r]
            cells.append(
                f"{statistics.median(values):>14.{1 if 'q/s' in key else 2}f}"
                if values
                else f"{'-':>14}"
            )
        print(f"{key:<34}" + "".join(cells))
    ratio = statistics.median(
        r["q/s, 32 in flight, 1 conn"] for r in runs["trustchain"]
    ) / statistics.median(r["q/s, 32 in flight, 1 conn"] for r in runs["peer"])
    print(f"trustchain / peer, q/s with 32 in flight on one connection: {ratio:.2f}x")


if __name__ == "__main__":
    main()
