"""Benchmark ACME (RFC 8555): complete orders/s; prints figures, asserts nothing.

    .venv/bin/python bench/acme.py [--runs 3] [--clients 1,8,32] [--orders-per-client 16]
                                   [--no-pebble] [--no-trustchain]

Each client is the ``acme`` library (``acme.client.ClientV2`` over ``ClientNetwork``,
EC P-256 account key, ES256), registered once and reused for all its orders. An order
is complete when its certificate is downloaded: newOrder for a fresh name (the library
fetches the authorization), the http-01 challenge answered, the authorization polled
until valid, finalize with a CSR made before timing, the order polled until valid, the
certificate downloaded. Polling starts at 10 ms and grows by half up to 250 ms; the
library's own ``poll_and_finalize`` sleeps a whole second between polls, which would
measure its sleep, not the server, and Retry-After (whole seconds) is not waited for.
The clients run as threads spread over one process per core, all released together
after their accounts and one warm-up order each.

One http-01 responder serves every token: a threaded HTTP server on [::1] in the
bench's own process, in stateless mode (as acme.sh's or an nginx ``return 200
"$token.$thumbprint"``): it knows which account owns each name (every name belongs to
one client), and answers ``/.well-known/acme-challenge/<token>`` with the key
authorization of that account.

Beside the orders, one HTTPS request alone: the directory fetched 500 times in a row on
one keep-alive connection, and the server's CPU per request (what the edge costs before
any ACME work), for both servers.

Servers, both measured in the same run with the same clients:

- trustchain: ``trustchain run`` in a temporary directory (``hsm init`` first), from
  ``config/default.toml`` with the HTTPS edge, the resolver (whose zone maps every
  bench name to ::1: the validators resolve through it), the CA, the CT log in the
  path, N = 4 validators each fetching http-01 itself and 2f+1 corroborating votes;
  ``authorization_reuse_s = 0`` so that every order is validated by the quorum, rate
  limits out of the way. Stopped with ``trustchain stop``.
- pebble: Let's Encrypt's reference test server (Debian package ``pebble``) with
  ``PEBBLE_VA_NOSLEEP=1``, ``PEBBLE_WFE_NONCEREJECT=0`` and ``PEBBLE_AUTHZREUSE=0``
  (every order validated, as TrustChain here), a TLS certificate made
  here, and ``pebble-challtestsrv`` as its DNS (every name -> ::1 / 127.0.0.1).
  A fresh pebble for each measurement: pebble 2.4 (Debian's) can deadlock under 32
  clients (here in each of 4 runs of 32 clients x 16 orders, in none of 32 x 4;
  goroutine dump: newOrder's ``MemoryStore.FindValidAuthorization``, called even with
  AUTHZREUSE=0, holds the store's read lock and waits for an authorization's lock,
  while finalize's ``AddCertificate`` waits for the store's write lock and every other
  request for a read lock). A client whose request times out stops; the row then shows
  the failed orders, and no ratio.

Figures per client count: orders/s (orders / time from release to the last
certificate), median and p99 of one order's time, failed orders (the first error is
printed); each the median over ``--runs``. The ceiling beside them: CPU time per order
(server process tree, clients, responder) read from /proc and rusage, and the
orders/s the machine's cores would allow at that cost.

Aim (issue 11): >= 100 complete orders/s on a 2-core machine, ahead of pebble, with
CT, the HSM and the quorum in the path.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the `acme` library; run as a script, its folder is first on
# sys.path and `import acme` would import this file. Take the folder off first.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib.metadata  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from typing import Any  # noqa: E402

import josepy as jose  # noqa: E402
import requests  # noqa: E402
from acme import challenges, client, crypto_util, messages  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

sys.path.append(str(_HERE))  # after `acme` was imported: the benchmarks' helpers now
from _acme_servers import ZONE, pebble, trustchain  # noqa: E402
from _cpu import tree_cpu_s  # noqa: E402

CHALLENGE_PATH = "/.well-known/acme-challenge/"
POLL_FIRST_S, POLL_MAX_S = 0.01, 0.25
ORDER_DEADLINE_S = 60.0  # one order past this has failed (a server that stopped answering)
RUN_DEADLINE_S = 300.0  # no order is started this long after the release


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the http-01 responder (stateless: name -> account thumbprint) ----------------------


class Responder(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    request_queue_size = 256

    def __init__(self) -> None:
        self.thumbprints: dict[str, str] = {}  # name -> base64url SHA-256 JWK thumbprint
        self.served = 0
        super().__init__(("::1", 0), _ResponderHandler)
        self.port = int(self.server_address[1])


class _ResponderHandler(BaseHTTPRequestHandler):
    server: Responder
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].rstrip(".").lower()
        thumbprint = self.server.thumbprints.get(host)
        if not self.path.startswith(CHALLENGE_PATH) or thumbprint is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f"{self.path[len(CHALLENGE_PATH) :]}.{thumbprint}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.served += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- the clients (threads in worker processes) -----------------------------------------


def post_as_get(acme: client.ClientV2, url: str) -> requests.Response:
    return acme.net.post(url, None, new_nonce_url=acme.directory["newNonce"])


def backoff() -> Iterator[float]:
    delay = POLL_FIRST_S
    while True:
        yield delay
        delay = min(delay * 1.5, POLL_MAX_S)


def complete_order(acme: client.ClientV2, key: jose.JWK, csr_pem: bytes) -> str:
    """One order from newOrder to the downloaded certificate (PEM chain)."""
    deadline = time.monotonic() + ORDER_DEADLINE_S

    def wait(delay: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {ORDER_DEADLINE_S:.0f} s")
        time.sleep(delay)

    orderr = acme.new_order(csr_pem)
    pending = []
    for authzr in orderr.authorizations:
        if authzr.body.status == messages.STATUS_VALID:
            continue
        challb = next(c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01))
        acme.answer_challenge(challb, challb.chall.response(key))
        pending.append(authzr)
    for authzr in pending:
        for delay in backoff():
            wait(delay, "authorization still pending")
            authzr, _ = acme.poll(authzr)
            if authzr.body.status not in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                break
        if authzr.body.status != messages.STATUS_VALID:
            errors = [c.error for c in authzr.body.challenges if c.error is not None]
            raise RuntimeError(f"authorization {authzr.body.status}: {errors}")
    body = acme.begin_finalization(orderr).body
    waits = backoff()
    while body.status in (messages.STATUS_PROCESSING, messages.STATUS_READY):
        wait(next(waits), f"order still {body.status}")
        body = messages.Order.from_json(post_as_get(acme, orderr.uri).json())
    if body.status != messages.STATUS_VALID or body.certificate is None:
        raise RuntimeError(f"order {body.status}: {body.error}")
    chain = post_as_get(acme, body.certificate).text
    x509.load_pem_x509_certificate(chain.encode())
    return chain


def client_thread(
    job: dict[str, Any], directory_url: str, ca: str, barrier: Any, out: list[Any]
) -> None:
    key = jose.JWKEC.load(job["key_pem"].encode())
    acme: client.ClientV2 | None = None
    try:
        net = client.ClientNetwork(
            key, alg=jose.ES256, verify_ssl=ca, user_agent="trustchain-bench", timeout=30
        )
        acme = client.ClientV2(client.ClientV2.get_directory(directory_url, net), net)
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        complete_order(acme, key, job["csrs"][0].encode())  # warm-up: TLS, nonce, paths
    except Exception as error:  # the run cannot start: say why, everywhere
        out.append(("setup", f"{type(error).__name__}: {error}"))
        barrier.abort()
        return
    barrier.wait()
    release = time.perf_counter()
    stopped = ""  # why the rest of this client's orders are not started
    for csr in job["csrs"][1:]:
        started = time.perf_counter()
        if not stopped and started - release > RUN_DEADLINE_S:
            stopped = f"not started: past the {RUN_DEADLINE_S:.0f} s run"
        if stopped:
            out.append(("failed", started, started, stopped))
            continue
        try:
            complete_order(acme, key, csr.encode())
            out.append(("ok", started, time.perf_counter()))
        except Exception as error:
            out.append(("failed", started, time.perf_counter(), f"{type(error).__name__}: {error}"))
            if isinstance(error, requests.Timeout | TimeoutError):  # a server that stopped
                stopped = f"not started: the server stopped answering ({type(error).__name__})"


def worker(
    jobs: list[dict[str, Any]], directory_url: str, ca: str, barrier: Any, results: Any
) -> None:
    out: list[Any] = []
    threads = [
        threading.Thread(target=client_thread, args=(job, directory_url, ca, barrier, out))
        for job in jobs
    ]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    cpu0 = time.process_time()
    for thread in threads:
        thread.join()
    results.put({"orders": out, "cpu_s": time.process_time() - cpu0})


# -- one measurement -------------------------------------------------------------------


EDGE_REQUESTS = 500


def edge_cost(directory_url: str, ca: str, server_pid: int) -> dict[str, Any]:
    """One HTTPS request alone: GET the directory ``EDGE_REQUESTS`` times in a row on one
    keep-alive connection; the server's CPU per request (its whole process tree)."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would win over verify
    session.verify = ca
    session.get(directory_url, timeout=10).raise_for_status()  # the handshake, not measured
    cpu0, start = tree_cpu_s(server_pid), time.perf_counter()
    for _ in range(EDGE_REQUESTS):
        session.get(directory_url, timeout=10).raise_for_status()
    elapsed, cpu = time.perf_counter() - start, tree_cpu_s(server_pid) - cpu0
    return {"edge cpu ms": cpu * 1000 / EDGE_REQUESTS, "edge req/s": EDGE_REQUESTS / elapsed}


def measure(
    directory_url: str,
    ca: str,
    server_pid: int,
    responder: Responder,
    names: Iterator[str],
    clients: int,
    orders: int,
) -> dict[str, Any]:
    jobs = []
    for _ in range(clients):
        account = ec.generate_private_key(ec.SECP256R1())
        cert_key = ec.generate_private_key(ec.SECP256R1())
        cert_key_pem = cert_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        mine = [next(names) for _ in range(orders + 1)]
        thumbprint = jose.b64encode(jose.JWKEC(key=account).thumbprint()).decode()
        for name in mine:
            responder.thumbprints[name] = thumbprint
        jobs.append(
            {
                "key_pem": account.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
                "csrs": [crypto_util.make_csr(cert_key_pem, [n]).decode() for n in mine],
            }
        )
    context = multiprocessing.get_context("spawn")
    processes = min(clients, os.cpu_count() or 1)
    barrier = context.Barrier(clients + processes + 1)
    results = context.Queue()
    workers = [
        context.Process(
            target=worker, args=(jobs[w::processes], directory_url, ca, barrier, results)
        )
        for w in range(processes)
    ]
    for process in workers:
        process.start()
    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    server_cpu0, own_cpu0 = tree_cpu_s(server_pid), time.process_time()
    gathered = [results.get(timeout=3600) for _ in workers]
    server_cpu = tree_cpu_s(server_pid) - server_cpu0
    own_cpu = time.process_time() - own_cpu0
    for process in workers:
        process.join()
    rows = [row for part in gathered for row in part["orders"]]
    setup = [row[1] for row in rows if row[0] == "setup"]
    if setup:
        return {"error": setup[0]}
    done = [row for row in rows if row[0] == "ok"]
    failed = [row for row in rows if row[0] == "failed"]
    elapsed = max(row[2] for row in rows) - started
    ms = [(row[2] - row[1]) * 1000 for row in done] or [float("nan")]
    n = max(len(done), 1)
    return {
        "orders/s": len(done) / elapsed,
        "median ms": statistics.median(ms),
        "p99 ms": pct(ms, 0.99),
        "failed": len(failed),
        "first failure": failed[0][3] if failed else "",
        "server cpu ms": server_cpu * 1000 / n,
        "client cpu ms": sum(p["cpu_s"] for p in gathered) * 1000 / n,
        "responder cpu ms": own_cpu * 1000 / n,
    }


# -- running it ------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--orders-per-client", type=int, default=16)
    parser.add_argument("--no-pebble", action="store_true", help="leave out the peer row")
    parser.add_argument("--no-trustchain", action="store_true", help="only pebble")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    servers = [
        s for s, off in (("trustchain", args.no_trustchain), ("pebble", args.no_pebble)) if not off
    ]
    if "pebble" in servers and not shutil.which("pebble"):
        print("pebble is not installed (apt-get install -y pebble): no peer row", file=sys.stderr)
        servers.remove("pebble")
    per_run = sum(c * (args.orders_per_client + 1) for c in counts)
    names = [f"b{i}.{ZONE}" for i in range(per_run * args.runs)]

    responder = Responder()
    threading.Thread(target=responder.serve_forever, daemon=True).start()
    tmp = Path(tempfile.mkdtemp(prefix="tc-acme-"))
    figures: dict[tuple[str, int], list[dict[str, Any]]] = {}
    edges: dict[str, list[dict[str, Any]]] = {}
    try:
        with contextlib.ExitStack() as stack:
            ours: tuple[str, str, int] | None = None
            if "trustchain" in servers:
                try:
                    ours = stack.enter_context(
                        trustchain(tmp / "trustchain", responder.port, names)
                    )
                    answer = requests.get(ours[0], verify=ours[1], timeout=10)
                    if answer.status_code != 200:
                        raise RuntimeError(
                            f"{ours[0]} answered {answer.status_code} {answer.text[:300]!r}"
                        )
                except Exception as error:
                    print(f"trustchain: no figures: {error}", file=sys.stderr)
                    ours = None
            for run in range(args.runs):
                for i, count in enumerate(counts):
                    start = run * per_run + sum(
                        c * (args.orders_per_client + 1) for c in counts[:i]
                    )
                    for server in servers:
                        # each server gets the same names: they are separate CAs
                        stream = iter(names[start : start + count * (args.orders_per_client + 1)])
                        if server == "trustchain":
                            if ours is None:
                                continue
                            if i == 0:
                                edges.setdefault(server, []).append(edge_cost(*ours))
                            result = measure(
                                *ours, responder, stream, count, args.orders_per_client
                            )
                        else:  # a fresh pebble each time: pebble 2.4 can deadlock (docstring)
                            try:
                                where = tmp / f"pebble-{run}-{count}"
                                with pebble(where, responder.port) as theirs:
                                    if i == 0:
                                        edges.setdefault(server, []).append(edge_cost(*theirs))
                                    result = measure(
                                        *theirs, responder, stream, count, args.orders_per_client
                                    )
                            except Exception as error:
                                result = {"error": f"{type(error).__name__}: {error}"}
                        figures.setdefault((server, count), []).append(result)
                        if "error" in result:
                            print(f"{server}, {count} clients: {result['error']}", file=sys.stderr)
                        elif result["failed"]:
                            print(
                                f"{server}, {count} clients: {result['failed']} failed, first: "
                                f"{result['first failure']}",
                                file=sys.stderr,
                            )
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    finally:
        responder.shutdown()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(figures, counts, args, edges)


def report(
    figures: dict[tuple[str, int], list[dict[str, Any]]],
    counts: list[int],
    args: Any,
    edges: dict[str, list[dict[str, Any]]],
) -> None:
    cores = os.cpu_count() or 1
    print(
        f"ACME orders on [::1], {cores} cores, medians of {args.runs} runs, "
        f"{args.orders_per_client} orders per client (acme {importlib.metadata.version('acme')}, "
        f"http-01, clients, responder and server on one machine)"
    )
    keys = ["orders/s", "median ms", "p99 ms", "failed"]
    cpu = ["server cpu ms", "client cpu ms", "responder cpu ms"]
    print(
        f"{'clients':>7} {'server':<11}" + "".join(f"{k:>11}" for k in keys)
        + "   CPU ms/order: server  clients  responder   ceiling orders/s"
    )  # fmt: skip
    for count in counts:
        for server in ("trustchain", "pebble"):
            rows = [r for r in figures.get((server, count), []) if "error" not in r]
            if not rows:
                if (server, count) in figures:
                    print(f"{count:>7} {server:<11}   did not run")
                continue
            med = {k: statistics.median(r[k] for r in rows) for k in keys + cpu}
            ceiling = cores * 1000 / max(sum(med[k] for k in cpu), 1e-9)
            print(
                f"{count:>7} {server:<11}{med['orders/s']:>11.1f}{med['median ms']:>11.1f}"
                f"{med['p99 ms']:>11.1f}{med['failed']:>11.0f}"
                f"{med['server cpu ms']:>24.1f}{med['client cpu ms']:>9.1f}"
                f"{med['responder cpu ms']:>11.1f}{ceiling:>20.0f}"
            )
    for count in counts:
        ours = [r["orders/s"] for r in figures.get(("trustchain", count), []) if "error" not in r]
        peer = [r["orders/s"] for r in figures.get(("pebble", count), []) if "error" not in r]
        lost = sum(r["failed"] for r in figures.get(("pebble", count), []) if "error" not in r)
        if ours and peer and not lost:
            ratio = statistics.median(ours) / statistics.median(peer)
            print(f"trustchain / pebble, orders/s with {count} clients: {ratio:.2f}x")
        elif ours and peer:
            print(
                f"trustchain / pebble with {count} clients: no ratio, pebble failed {lost} orders"
            )
    print(
        "ceiling: the machine's cores / (CPU per order of the server's process tree, the "
        "clients and the responder), i.e. the orders/s if CPU were the only limit"
    )
    for server, rows in edges.items():
        cpu = statistics.median(r["edge cpu ms"] for r in rows)
        rate = statistics.median(r["edge req/s"] for r in rows)
        print(f"one HTTPS request alone ({server}: GET the directory, {EDGE_REQUESTS} in a row "
              f"on one connection): {cpu:.2f} ms of server CPU, {rate:.0f} requests/s")  # fmt: skip


if __name__ == "__main__":
    main()
