"""Benchmark the four-proof consensus through the actors: prints figures, asserts nothing.

    .venv/bin/python bench/trust.py [--requests 200] [--window 64] [--validators 4 7]
                                    [--assets 4] [--calls 2000] [--workers 2] [--ask-all]

A real tree in a temporary directory for each N: HSMActor on SoftHSM (the stake
authority's key, EC P-256) and the ``trust`` supervisor as the composition root
builds it (``trust_children``: validator-1 ... validator-N, then the
ByzantineDetectorActor, trust state in SQLite on disk). The default ``[trust]``
parameters: PoWork 16 bits, PoTime a Wesolowski VDF with t = 2^16 in RSA-2048,
scrypt-plotted PoSpace for the registration. A fleet of ``--assets`` assets is
registered in each tree (stake granted in the HSM, space challenge answered), and
every request's proofs are computed before anything is timed, in a process pool,
as the assets' clients would (``requests.prove_request`` for a fresh CSR each: an
approved request's proofs are used up). The same proofs serve every tree (each has
its own store, so none is a replay there). The caller is a plain thread sending
``Decide`` (the issuer's message) to ``detector`` through the registry:

* one Decide at a time (``--requests``, after 10 to warm up): latency, beside the
  floor ``C x verification / cores``, where C is how many validators check each request
  (a quorum, 2f+1, with ``trust.quorum_first``, the default; all N with ``--ask-all``):
  each validator checks in a process of its own, the C checks share the machine's
  cores, and the quorum's votes come with them; and under it the machine's hand-over, a
  pipe round trip to another process (``handover_us``): a Decide crosses about a dozen
  hand-overs, thread to thread and process to process, so that is its other floor;
* ``--window`` Decides in flight (``--requests`` more): decisions/s and latency,
  beside the ceiling ``cores / (C x verification)`` and the cores the verifications
  take (``decisions/s x C x verification``); under each, this process's CPU per
  decision (all its threads: the actors' own work; the validators' and the HSM's
  processes apart), the cores it used, and how many decisions shared each group
  commit of the detector's store;
* the ceiling, measured first in the same run: one request's verification done
  directly (``requests.check_request`` in a loop on one thread: what each validator
  does for each request; the vote's signature and bookkeeping are not in it);
* ``validate_asset_trust`` (on the first tree, idle, once its assets have a history
  of decisions): through the registry (an in-process ask) and through the control
  socket (the real ``ControlServer`` on trio in a thread of this process, the
  blocking ``ControlClient`` in the main thread, JSON lines on a Unix socket); beside
  each, ``get_validator_key`` (a handler that does nothing) the same way as the peer;
  and through the control socket every 2 ms while the Decides are in flight, from a
  process of its own as the CLI would be (the detector's mailbox is full of votes then:
  the figure a busy CA gives).

Issuance with the consensus and the CT log in the path is ``bench/issuance.py
--consensus``; both build their trees and fleets with ``bench/_fleet.py``.

The aims (issue 9) are printed first (``AIMS``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import outcome
import trio
from _fleet import (
    checks_per_decision,
    hsm_config,
    make_csr_ders,
    make_fleet,
    precompute,
    register_fleet,
    trust_config,
    trust_spec,
    verification_s,
)

from trustchain.actors.detector import (
    Decide,
    GetTrustStatus,
    ValidateAssetTrust,
)
from trustchain.actors.hsm import HSMActor
from trustchain.actors.trust import requests
from trustchain.actors.trust.params import consensus_params
from trustchain.actors.trust.votes import quorum
from trustchain.actors.validator import GetValidatorKey
from trustchain.config import HsmConfig, TrustConfig
from trustchain.protocols.client import ControlClient
from trustchain.protocols.control import ControlServer, bind_control_socket
from trustchain.protocols.logs import setup_logging
from trustchain.supervisors import (
    ChildSpec,
    Message,
    Registry,
    start_root,
)

PROBE_EVERY_S = 0.002  # validate_asset_trust under load: often, for a p99 of many samples
WARM_UP = 10  # Decides before the timed ones (first SQLite writes, first gmpy2 calls)
AIMS = ("aims (issue 9, 2 cores): consensus adds < 3 ms median per issuance at N = 4; "
        ">= 300 certs/s with consensus and CT log; validate_asset_trust p99 < 5 ms")  # fmt: skip


# -- figures ----------------------------------------------------------------------------


def pct(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(samples: Sequence[float]) -> str:
    median, p99 = statistics.median(samples) * 1e3, pct(samples, 0.99) * 1e3
    return f"median {median:7.2f} ms   p99 {p99:7.2f} ms"


def show(name: str, figure: str, peer: str = "") -> None:
    print(f"  {name:<40} {figure}" + (f"   | {peer}" if peer else ""))


def _echo(connection: Any) -> None:
    """The other end of ``handover_us``: every message straight back, until ``None``."""
    while (message := connection.recv()) is not None:
        connection.send(message)


def handover_us(rounds: int = 200) -> tuple[float, float]:
    """The machine's hand-over, the peer of a Decide's latency (which crosses about a dozen
    of them, thread to thread and process to process): the median round trip of a small
    message through a pipe to another process, back to back and after 40 ms idle (as
    between issuances at 25/s), in microseconds."""
    context = get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_echo, args=(theirs,), daemon=True)
    process.start()
    figures = []
    try:
        for idle_s in (0.0, 0.04):
            samples = []
            for _ in range(rounds):
                time.sleep(idle_s)
                t0 = time.perf_counter()
                ours.send(b"x")
                ours.recv()
                samples.append(time.perf_counter() - t0)
            figures.append(statistics.median(samples) * 1e6)
    finally:
        ours.send(None)
        process.join(10)
    return figures[0], figures[1]


# -- driving the detector ---------------------------------------------------------------


def one_at_a_time(
    registry: Registry, target: str, messages: Sequence[Message]
) -> tuple[list[float], list[Any]]:
    """Each message after the previous one's answer: latencies, and the errors."""
    _elapsed, latencies, errors = in_flight(registry, target, messages, 1)
    return latencies, errors


def in_flight(
    registry: Registry, target: str, messages: Sequence[Message], window: int
) -> tuple[float, list[float], list[Any]]:
    """``window`` messages kept in flight: elapsed seconds, latencies, errors."""
    if not messages:
        return 0.0, [], []
    slots = threading.Semaphore(window)
    latencies: list[float] = []
    errors: list[Any] = []
    done = threading.Event()

    def send(message: Message) -> None:
        started = time.perf_counter()

        def reply(result: outcome.Outcome) -> None:
            latencies.append(time.perf_counter() - started)
            if isinstance(result, outcome.Error):
                errors.append(result.error)
            slots.release()
            if len(latencies) == len(messages):
                done.set()

        registry.tell(target, message, reply)

    t0 = time.perf_counter()
    for message in messages:
        slots.acquire()
        send(message)
    done.wait()
    return time.perf_counter() - t0, latencies, errors


def report_errors(errors: list[Any]) -> None:
    if errors:
        print(f"  errors: {len(errors)}, first: {errors[0]!r}")


class ControlSocket:
    """The real control-socket server (``ControlServer``) serving ``registry``, on trio in
    a thread of this process."""

    def __init__(self, registry: Registry, path: Path) -> None:
        listener = bind_control_socket(path)
        server = ControlServer(registry, 30.0, on_stop=lambda: None)
        ready = threading.Event()
        self._cancel: Callable[[], None] = lambda: None
        self._token: Any = None

        async def run() -> None:
            async with trio.open_nursery() as nursery:
                self._token = trio.lowlevel.current_trio_token()
                self._cancel = nursery.cancel_scope.cancel
                await nursery.start(server.serve, listener, nursery)
                ready.set()

        self._thread = threading.Thread(target=trio.run, args=(run,), daemon=True)
        self._thread.start()
        ready.wait(30)

    def close(self) -> None:
        trio.from_thread.run_sync(self._cancel, trio_token=self._token)
        self._thread.join(30)


def control_calls(path: Path, to: str, kind: str, args: dict[str, Any], count: int) -> list[float]:
    samples = []
    with ControlClient(path) as client:
        for _ in range(count):
            t0 = time.perf_counter()
            client.call(to, kind, args)
            samples.append(time.perf_counter() - t0)
    return samples


class Probe:
    """``validate_asset_trust`` over the control socket every 2 ms from a process of its
    own (as ``trustchain trust asset`` is: a client thread in this process would add its
    own waits for this process's GIL), from ``start()`` until ``stop()`` (which returns
    the latencies)."""

    def __init__(self, path: Path, asset: str) -> None:
        context = get_context("spawn")
        self._stop = context.Event()
        self._ours, theirs = context.Pipe()
        self._process = context.Process(
            target=_probe_loop, args=(str(path), asset, self._stop, theirs), daemon=True
        )

    def start(self) -> None:
        self._process.start()
        if not self._ours.poll(60) or self._ours.recv() != "ready":
            raise RuntimeError("the probe's process did not start")

    def stop(self) -> list[float]:
        self._stop.set()
        samples: list[float] = self._ours.recv() if self._ours.poll(60) else []
        self._process.join(30)
        return samples


def _probe_loop(path: str, asset: str, stop: Any, out: Any) -> None:
    """The probe's process: one call to warm up, ``ready``, then a call every 2 ms until
    ``stop`` is set; the latencies go back through ``out``."""
    samples: list[float] = []
    args = {"asset": asset}
    with ControlClient(Path(path)) as client:
        client.call("detector", "validate_asset_trust", args)
        out.send("ready")
        while not stop.is_set():
            t0 = time.perf_counter()
            client.call("detector", "validate_asset_trust", args)
            samples.append(time.perf_counter() - t0)
            stop.wait(PROBE_EVERY_S)
    out.send(samples)


def registry_calls(registry: Registry, to: str, message: Message, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        registry.ask(to, message)
        samples.append(time.perf_counter() - t0)
    return samples


def bench_asset_trust(registry: Registry, path: Path, n: int, asset: str, calls: int) -> None:
    trust = ValidateAssetTrust(asset)
    factors = registry.ask("detector", trust)["factors"]
    print(f"validate_asset_trust (N = {n} tree, idle; an asset with {factors['successes']:.0f} "
          f"successes in its history)")  # fmt: skip
    registry_calls(registry, "detector", trust, 100)  # warm-up
    peer = registry_calls(registry, "validator-1", GetValidatorKey(), calls)
    got = registry_calls(registry, "detector", trust, calls)
    show("through the registry (in-process ask)", ms(got),
         f"peer get_validator_key {statistics.median(peer) * 1e3:.2f} / {pct(peer, 0.99) * 1e3:.2f}"
         " ms")  # fmt: skip
    args = {"asset": asset}
    control_calls(path, "detector", "validate_asset_trust", args, 100)  # warm-up
    peer = control_calls(path, "validator-1", "get_validator_key", {}, calls)
    got = control_calls(path, "detector", "validate_asset_trust", args, calls)
    show("through the control socket", ms(got),
         f"peer get_validator_key {statistics.median(peer) * 1e3:.2f} / {pct(peer, 0.99) * 1e3:.2f}"
         " ms")  # fmt: skip
    print(f"  (n={calls} each; peers: median / p99)")


def start_tree(
    hsm: HsmConfig, directory: Path, n: int, quorum_first: bool = True
) -> tuple[Registry, Any]:
    """HSMActor and the ``trust`` subtree with N validators, under a root of their own."""
    directory.mkdir()
    registry = Registry()
    root = start_root(registry, "root", [
        ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, hsm), start_timeout_s=60),
        trust_spec(trust_config(directory, n, quorum_first)),
    ])  # fmt: skip
    return registry, root


def bench_consensus(
    registry: Registry,
    n: int,
    decides: Sequence[Decide],
    count: int,
    window: int,
    check_s: float,
    probe: Probe,
    quorum_first: bool,
) -> None:
    """Decide one at a time, then ``window`` in flight (the fleet registered), with
    ``probe`` asking for an asset's trust meanwhile."""
    f = (n - 1) // 3
    q = checks_per_decision(n, quorum_first)
    warm, single, many = decides[:WARM_UP], decides[WARM_UP : WARM_UP + count], decides[-count:]
    asked = "a quorum asked first" if quorum_first else "every validator asked"
    print(f"consensus through the actors, N = {n} (f = {f}, quorum {quorum(n, f)}; {asked}: "
          f"C = {q} checks per decision)")  # fmt: skip
    one_at_a_time(registry, "detector", warm)
    cpu0, t0 = time.process_time(), time.perf_counter()
    latencies, errors = one_at_a_time(registry, "detector", single)
    cpu = cpu_line(count, time.process_time() - cpu0, time.perf_counter() - t0, q, check_s)
    cores = os.cpu_count() or 1
    show("Decide, one at a time", f"{ms(latencies)}   (n={count})",
         f"floor C x check / cores {q * check_s / cores * 1e3:.2f} ms")  # fmt: skip
    show("", cpu)
    warm_us, idle_us = handover_us()
    show("", f"peer: a pipe round trip to another process {warm_us:.0f} us back to back, "
             f"{idle_us:.0f} us after 40 ms idle")  # fmt: skip
    report_errors(errors)
    cpu0 = time.process_time()
    commits0 = registry.ask("detector", GetTrustStatus())["commits"]
    probe.start()
    elapsed, latencies, errors = in_flight(registry, "detector", many, window)
    trust = probe.stop()
    cpu = cpu_line(count, time.process_time() - cpu0, elapsed, q, check_s)
    rate = count / elapsed
    ceiling = cores / (q * check_s)
    commits = registry.ask("detector", GetTrustStatus())["commits"]
    groups = commits["groups"] - commits0["groups"]
    grouped = (commits["decisions"] - commits0["decisions"]) / max(1, groups)
    show(f"Decide, {window} in flight", f"{rate:7.0f} decisions/s   {ms(latencies)}",
         f"ceiling {cores} cores / (C x check) {ceiling:.0f}/s")  # fmt: skip
    show("", f"{cpu}; {grouped:.1f} decisions per commit")
    show("decisions/s x C x check", f"{rate * q * check_s:7.2f} cores busy verifying")
    report_errors(errors)
    show("validate_asset_trust meanwhile", f"{ms(trust)}   (n={len(trust)}, control socket)",
         "idle: see below")  # fmt: skip


def cpu_line(count: int, cpu_s: float, elapsed: float, q: int, check_s: float) -> str:
    """This process's CPU (every thread; the HSM's token process apart) per decision."""
    return (f"CPU {cpu_s / count * 1e3:.2f} ms per decision (C x check {q * check_s * 1e3:.2f}"
            f" ms), {cpu_s / elapsed:.2f} cores")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="Decides per measurement")
    parser.add_argument("--window", type=int, default=64, help="Decides in flight")
    parser.add_argument("--validators", type=int, nargs="+", default=[4, 7], help="N, each a tree")
    parser.add_argument("--assets", type=int, default=4, help="registered assets (the fleet)")
    parser.add_argument("--calls", type=int, default=2000, help="validate_asset_trust calls")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes precomputing the proofs")  # fmt: skip
    parser.add_argument("--ask-all", action="store_true",
                        help="every validator checks each request")  # fmt: skip
    args = parser.parse_args()
    setup_logging("WARNING")
    params = consensus_params(TrustConfig())
    print(AIMS)
    print(f"proofs: work {params.work_bits} bits, VDF t = {params.vdf_t} in RSA-2048, "
          f"the default [trust] parameters; EC P-256 stake authority in SoftHSM")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
        directory = Path(tmp)
        hsm = hsm_config(directory)
        fleet = make_fleet(args.assets)
        csr_ders = make_csr_ders(WARM_UP + 2 * args.requests, "t")
        proofs = precompute(csr_ders, fleet, params, args.workers)
        decides = [Decide(csr, p) for csr, p in zip(csr_ders, proofs, strict=True)]
        check_s = 0.0
        for i, n in enumerate(args.validators):
            registry, root = start_tree(hsm, directory / f"n{n}", n, not args.ask_all)
            path = directory / f"n{n}" / "ctl.sock"
            control = ControlSocket(registry, path)
            try:
                registrations, authority = register_fleet(registry, fleet)
                if i == 0:  # the ceiling: each validator's check, directly (the tree idle)
                    checks = verification_s(csr_ders, proofs, registrations, authority, params)
                    check_s = statistics.median(checks)
                    print("the ceiling: one request's verification, directly "
                          "(requests.check_request, one thread)")  # fmt: skip
                    show("check_request", f"{ms(checks)}   (n={len(checks)})",
                         f"one core: {1 / check_s:.0f} checks/s")  # fmt: skip
                asset = requests.asset_key_of(fleet[0]).hex()
                probe = Probe(path, asset)
                bench_consensus(registry, n, decides, args.requests, args.window, check_s, probe,
                                not args.ask_all)  # fmt: skip
                if i == 0:
                    bench_asset_trust(registry, path, n, asset, args.calls)
            finally:
                control.close()
                root.stop(block=True, timeout=60)
    print("issuance with the consensus and the CT log: bench/issuance.py --consensus")


if __name__ == "__main__":
    main()
