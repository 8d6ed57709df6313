"""The resolver's upstream I/O: dnspython's asyncio queries on a loop in a thread of
its own, so that the actor's thread never waits on the network.

The actor ``submit``s each ``core.Send``; the worker asks that upstream (UDP with a
fallback to TCP when the answer is truncated, TCP, or DoQ on one reused QUIC
connection per upstream) and calls ``deliver(round, upstream, response or why it
failed)`` from its own thread, exactly once per ``Send``, within the timeout
(plus a small grace). ``deliver`` must only hand the result over (the actor tells
itself a message); it never runs resolver logic here.

Each question goes out as a fresh query (its own random ID, RD set, EDNS with a
1,232-octet payload; DoQ uses ID 0 as RFC 9250 requires); dnspython checks that
the response answers it (ID, question, source address) before it is delivered.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.message
import dns.quic

from trustchain.actors.resolver.core import Send
from trustchain.actors.resolver.upstream import Upstream
from trustchain.actors.resolver.wire import OUR_PAYLOAD

Deliver = Callable[[int, str, dns.message.Message | str], None]
GRACE_S = 0.5  # beyond the query's own timeout, before the worker gives up on it
CLOSE_TIMEOUT_S = 5.0


class UpstreamWorker:
    def __init__(
        self,
        timeout_s: float,
        deliver: Deliver,
        *,
        doq_verify: bool | str = True,  # True: the system's CAs; a path: that CA file
        name: str = "resolver-upstreams",
    ) -> None:
        self.timeout_s = timeout_s
        self._deliver = deliver
        self._doq_verify = doq_verify
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()
        self._quic: dict[Upstream, dns.quic.AsyncioQuicManager] = {}  # one per upstream
        self._backend = dns.asyncbackend.get_backend("asyncio")
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, send: Send) -> None:
        """Ask ``send.upstream`` (from any thread); the answer comes through ``deliver``."""
        if self._closed:
            self._deliver(send.round, str(send.upstream), "the resolver is stopping")
            return
        try:
            self._loop.call_soon_threadsafe(self._spawn, send)
        except RuntimeError:  # the loop is closed: stopping
            self._deliver(send.round, str(send.upstream), "the resolver is stopping")

    def close(self) -> None:
        """Cancel what is in flight, close QUIC connections, end the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            done: Future[None] = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                done.result(CLOSE_TIMEOUT_S)
            except Exception:
                pass  # it stops anyway: the loop ends below and the thread is a daemon
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CLOSE_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    # On the worker's thread ------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _spawn(self, send: Send) -> None:
        task = self._loop.create_task(self._ask(send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ask(self, send: Send) -> None:
        upstream = str(send.upstream)
        result: dns.message.Message | str
        try:
            result = await asyncio.wait_for(self._query(send), self.timeout_s + GRACE_S)
        except (TimeoutError, dns.exception.Timeout):
            result = f"no answer in {self.timeout_s:g} s"
        except asyncio.CancelledError:
            self._deliver(send.round, upstream, "the resolver is stopping")
            raise
        except Exception as exc:  # whatever the network or the upstream did
            result = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._deliver(send.round, upstream, result)

    async def _query(self, send: Send) -> dns.message.Message:
        query = dns.message.make_query(send.qname, send.rdtype, use_edns=0, payload=OUR_PAYLOAD)
        u, timeout = send.upstream, self.timeout_s
        if u.scheme == "udp":
            response, _tcp = await dns.asyncquery.udp_with_fallback(
                query, u.address, timeout, u.port, backend=self._backend
            )
            return response
        if u.scheme == "tcp":
            return await dns.asyncquery.tcp(
                query, u.address, timeout, u.port, backend=self._backend
            )
        return await self._doq(query, u)

    async def _doq(self, query: dns.message.Message, u: Upstream) -> dns.message.Message:
        manager = self._quic.get(u)
        if manager is None:  # its own: the TLS name to check is the upstream's
            verify = ssl.CERT_REQUIRED if self._doq_verify is True else self._doq_verify
            manager = self._quic[u] = dns.quic.AsyncioQuicManager(
                verify_mode=verify, server_name=u.tls_name or u.address
            )
        connection = manager.connect(u.address, u.port)
        try:
            return await dns.asyncquery.quic(
                query, u.address, self.timeout_s, u.port, connection=connection,
                backend=self._backend,
            )  # fmt: skip
        except dns.exception.Timeout:
            raise  # a slow answer; the connection may serve the next one
        except Exception as exc:
            await connection.close()  # broken: the next query opens a fresh one
            why = _quic_close_reason(connection)
            if why:  # dnspython says UnexpectedEOF; QUIC said why (a certificate, often)
                raise ConnectionError(f"{type(exc).__name__}: {why}") from exc
            raise

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_TIMEOUT_S)
        for manager in self._quic.values():
            await manager.__aexit__(None, None, None)


def _quic_close_reason(connection: object) -> str:
    """Why aioquic closed ``connection`` (its CONNECTION_CLOSE reason), if it says.
    Reads dnspython's and aioquic's internals defensively: an empty string otherwise."""
    quic = getattr(connection, "_connection", None)
    event = getattr(quic, "_close_event", None)
    reason = getattr(event, "reason_phrase", "")
    return reason if isinstance(reason, str) else ""
