"""Benchmark issuance through the actor tree: prints figures, asserts nothing.

    .venv/bin/python bench/issuance.py [--runs 3] [--seconds 5] [--rate 500] [--no-ct]
                                       [--sign-batch N]
    .venv/bin/python bench/issuance.py --consensus [--validators 4] [--seconds 3] [--rate 100]

A real tree (HSMActor on SoftHSM, CTLogActor with tiles on disk, IssuerActor
with SQLite on disk, CA and log keys EC P-256) in a temporary directory; every
certificate goes through the precert flow (the precertificate's durable append
before the answer, the final certificate's after it, in batches); with
``--no-ct`` the issuer signs the final certificate directly (no log). CSRs
(P-256) are made before timing. The caller is a plain thread sending `issue`
messages through the registry:

* flat out: 256 requests kept in flight, 10,000 certificates (after 500 to warm
  up); certificates/s and latency; with the log, also the rate counting the time
  until the issuer owes the log no final certificate (``get_issuance_status``): the
  final certificates are logged after the answers, so what is still owed when the
  last answer comes is work the answers' rate leaves out. Every phase starts with
  nothing owed;
* fixed offered rate (default 500/s): latency measured from each request's
  scheduled send time, so a stall is not hidden (no coordinated omission);
* the ceiling: raw HSM signatures/s through the HSMActor (sign_batch), and
  the ratio ``certs/s / (HSM signatures/s / 4)``, so that figures compare across
  machines. The 4 is issue 8's yardstick (precert, its SCT, final certificate,
  its SCT), kept so that figures compare with earlier ones; a certificate now
  costs three signatures (the final certificate is logged without an SCT), two
  checks of the CA's signatures in the token's process, and a share of a tree
  head per log batch.

With ``--consensus`` (issue 9) the tree has the ``trust`` subtree too (N validators
and the ByzantineDetectorActor, the default ``[trust]`` parameters: work 16 bits, VDF
t = 2^16 in RSA-2048; built with ``bench/_fleet.py``'s ``trust_spec``) and the issuer
asks it for a decision on every request. A fleet of 4 assets is registered, and each
CSR's proofs are computed before timing, in a process pool (``_fleet.precompute``),
as the assets' clients would; they cost ~0.14 s of CPU each, so the counts shrink:
1,000 certificates flat out with 64 in flight (after 20 to warm up; with 300, as
before 2026-12-08, filling and draining the window weighed on the rate), the offered rate
100/s for 3 s unless given. Beside the HSM ceiling, the consensus's: the machine's
cores / (C x one request's verification, ``requests.check_request`` directly), since
each validator checks in a process of its own; C is a quorum (2f+1) of the N, asked
first (``trust.quorum_first``), or N with ``--ask-all``. Consensus alone (Decide latency,
decisions/s, ``validate_asset_trust``) is ``bench/trust.py``.

Aims (issue 8): >= 1,500 certificates/s flat out and p99 < 50 ms at 500/s
offered, with the log, EC P-256 in SoftHSM, on a 2-core machine. Issue 9: with the
consensus (N = 4) and the log >= 300 certificates/s; the consensus adds < 3 ms median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _cpu import ThreadCpu, tree_cpu_s
from _fleet import (
    checks_per_decision,
    make_fleet,
    pem_to_der,
    precompute,
    register_fleet,
    trust_config,
    trust_spec,
    verification_s,
)

from trustchain.actors.ca import new_csr, new_key
from trustchain.actors.ctlog import CTLogActor
from trustchain.actors.hsm import HSMActor, SignBatch
from trustchain.actors.hsm.softhsm import prepare_softhsm_token
from trustchain.actors.issuer import GetIssuanceStatus, IssueCertificate, IssuerActor
from trustchain.actors.issuer import pipeline as issuer_pipeline  # MAX_SIGN_BATCH is read there
from trustchain.actors.trust.params import consensus_params
from trustchain.config import CaConfig, CtLogConfig, HsmConfig
from trustchain.protocols.logs import setup_logging
from trustchain.supervisors import ChildSpec, Registry, start_root

ZONE = "bench.example.com"
FLAT_OUT = 10_000  # certificates timed flat out (5,000 varied by 10 % from run to run)
CONSENSUS_FLAT_OUT, CONSENSUS_WARM_UP, CONSENSUS_WINDOW = 1_000, 20, 64  # a proof: ~0.14 s


def make_csrs(count: int) -> list[str]:
    key = new_key("ec-p256")  # one key: CSR signing is not what we time
    return [new_csr(key, [f"h{i}.{ZONE}"]).decode() for i in range(count)]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Figures = tuple[float, float, float]  # certs/s, median ms, p99 ms


def report(name: str, count: int, elapsed: float, latencies: list[float]) -> Figures:
    ms = [s * 1000 for s in latencies]
    median, p99 = statistics.median(ms), pct(ms, 0.99)
    print(
        f"  {name:<34} {count / elapsed:8.0f} certs/s   median {median:7.2f} ms"
        f"   p99 {p99:7.2f} ms   (n={count})"
    )
    return count / elapsed, median, p99


def flat_out(
    registry: Registry, messages: list[IssueCertificate], window: int = 256, cpu: bool = False
) -> Figures:
    slots = threading.Semaphore(window)
    latencies: list[float] = []
    errors: list[Any] = []
    done = threading.Event()

    def send(message: IssueCertificate) -> None:
        started = time.perf_counter()

        def reply(result: Any) -> None:
            latencies.append(time.perf_counter() - started)
            if hasattr(result, "error"):
                errors.append(result.error)
            slots.release()
            if len(latencies) == len(messages):
                done.set()

        registry.tell("issuer", message, reply)

    threads, tree0 = ThreadCpu(), tree_cpu_s(os.getpid())
    t0 = time.perf_counter()
    for message in messages:
        slots.acquire()
        send(message)
    done.wait()
    elapsed = time.perf_counter() - t0
    figures = report(f"flat out ({window} in flight)", len(messages), elapsed, latencies)
    if errors:
        print(f"  errors: {len(errors)}, first: {errors[0]!r}")
    if cpu:
        cpu_line(len(messages), elapsed, tree_cpu_s(os.getpid()) - tree0, threads.since())
    return figures


def cpu_line(count: int, elapsed: float, tree_s: float, threads: dict[str, float]) -> None:
    """CPU per certificate: the whole tree's, this process's busiest threads', the rest
    (the token's and the validators' processes, this process's other threads)."""
    per = {name: cpu * 1e3 / count for name, cpu in threads.items()}
    busiest = sorted(per.items(), key=lambda item: -item[1])[:4]
    rest = tree_s * 1e3 / count - sum(ms for _, ms in busiest)
    parts = ", ".join(f"{name} {ms:.2f}" for name, ms in busiest)
    print(
        f"  {'CPU per certificate':<34} {tree_s * 1e3 / count:8.2f} ms    "
        f"({tree_s / elapsed:.2f} cores): {parts}, the rest {rest:.2f}"
    )


def fixed_rate(registry: Registry, messages: list[IssueCertificate], rate: float) -> Figures:
    latencies: list[float] = []
    errors: list[Any] = []
    done = threading.Event()
    interval = 1.0 / rate
    t0 = time.perf_counter()
    for i, message in enumerate(messages):
        scheduled = t0 + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

        def reply(result: Any, scheduled: float = scheduled) -> None:
            latencies.append(time.perf_counter() - scheduled)
            if hasattr(result, "error"):
                errors.append(result.error)
            if len(latencies) == len(messages):
                done.set()

        registry.tell("issuer", message, reply)
    done.wait()
    figures = report(f"offered {rate:.0f}/s", len(messages), time.perf_counter() - t0, latencies)
    if errors:
        print(f"  errors: {len(errors)}, first: {errors[0]!r}")
    return figures


def finals_drained(registry: Registry, timeout_s: float = 300.0) -> tuple[int, float]:
    """Wait until the issuer owes the log no final certificate (they are logged after
    the answer): how many it owed when asked, and the seconds until none."""
    t0 = time.perf_counter()
    owed: int | None = None
    while True:
        left = registry.ask("issuer", GetIssuanceStatus(), timeout=30)["finals_owed"]
        owed = left if owed is None else owed
        if not left:
            return owed, time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout_s:
            raise SystemExit(f"the issuer still owes the log {left} final certificates")
        time.sleep(0.01)


def hsm_ceiling(registry: Registry, label: str, seconds: float) -> float:
    slots = threading.Semaphore(4)
    count = [0]
    batch = SignBatch(label, [b"x" * 300] * 32)

    def reply(_result: Any) -> None:
        count[0] += 32
        slots.release()

    t0 = time.perf_counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        slots.acquire()
        registry.tell("hsm", batch, reply)
    for _ in range(4):
        slots.acquire()
    ceiling = count[0] / (time.perf_counter() - t0)
    print(f"  {'HSM ceiling (sign_batch of 32)':<34} {ceiling:8.0f} signatures/s")
    return ceiling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None,
                        help="at the offered rate (default 5; 3 with --consensus)")  # fmt: skip
    parser.add_argument("--rate", type=float, default=None,
                        help="offered certs/s (default 500; 100 with --consensus)")  # fmt: skip
    parser.add_argument("--no-ct", action="store_true", help="issue without the CT log")
    parser.add_argument(
        "--sign-batch",
        type=int,
        default=issuer_pipeline.MAX_SIGN_BATCH,
        help="most TBSs per HSM message (1: one message per signature)",
    )
    parser.add_argument("--consensus", action="store_true",
                        help="the trust subtree in the path, proofs precomputed")  # fmt: skip
    parser.add_argument("--validators", type=int, default=4, help="N, with --consensus")
    parser.add_argument("--ask-all", action="store_true",
                        help="with --consensus: every validator checks every request")  # fmt: skip
    parser.add_argument("--runs", type=int, default=1,
                        help="trees measured one after another; then their medians")  # fmt: skip
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes precomputing the proofs, with --consensus")  # fmt: skip
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else 3.0 if args.consensus else 5.0
    offered = args.rate if args.rate is not None else 100.0 if args.consensus else 500.0
    issuer_pipeline.MAX_SIGN_BATCH = args.sign_batch
    setup_logging("WARNING")
    flat, warm, window = FLAT_OUT, 500, 256
    if args.consensus:
        flat, warm, window = CONSENSUS_FLAT_OUT, CONSENSUS_WARM_UP, CONSENSUS_WINDOW
    csrs = make_csrs(flat + warm + int(offered * seconds))
    work = Workload(args, csrs, flat, warm, window, offered)
    runs = [one_run(work, run) for run in range(1, args.runs + 1)]
    if len(runs) > 1:
        print(f"medians of {len(runs)} runs (each a tree of its own):")
        for name in runs[0]:
            print(f"  {name:<40} {statistics.median(r[name] for r in runs):10.2f}")


class Workload:
    """What every run issues: the same CSRs (and, with --consensus, proofs made once)."""

    def __init__(self, args: argparse.Namespace, csrs: list[str], flat: int, warm: int,
                 window: int, offered: float) -> None:  # fmt: skip
        self.args, self.flat, self.warm, self.window, self.offered = (
            args,
            flat,
            warm,
            window,
            offered,
        )
        # the parameters do not depend on where the stores are: each run has its own
        self.params = consensus_params(trust_config(Path(), args.validators))
        if args.consensus:  # before any tree starts: the pool has the cores to itself
            self.fleet = make_fleet(4)
            self.ders = [pem_to_der(csr.encode()) for csr in csrs]
            self.proofs = precompute(self.ders, self.fleet, self.params, args.workers)
            self.messages = [IssueCertificate(csr, proofs=p.to_json(self.params.modulus))
                             for csr, p in zip(csrs, self.proofs, strict=True)]  # fmt: skip
        else:
            self.messages = [IssueCertificate(csr) for csr in csrs]


def one_run(work: Workload, run: int) -> dict[str, float]:
    """One tree in a fresh directory, measured; its figures by name."""
    args, params = work.args, work.params
    flat, warm, window, messages = work.flat, work.warm, work.window, work.messages
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
        directory = Path(tmp)
        conf, pin = directory / "hsm" / "softhsm2.conf", directory / "hsm" / "user.pin"
        prepare_softhsm_token(conf, "bench", pin)
        hsm = HsmConfig(token_label="bench", pin_file=pin, softhsm2_conf=str(conf))
        ca = CaConfig(permitted_zones=[ZONE], base_url=f"http://{ZONE}",
                      database=directory / "ca.sqlite3", crl_dir=directory / "crl")  # fmt: skip
        ctlog = CtLogConfig(storage_dir=directory / "ct" / "tiles",
                            index_db=directory / "ct" / "index.sqlite3")  # fmt: skip
        trust_conf = trust_config(directory / "trust", args.validators, not args.ask_all)
        registry = Registry()
        root = start_root(registry, "root", [
            ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, hsm)),
            ChildSpec("ctlog", lambda ctx: CTLogActor.start(ctx, ctlog)),
            *([trust_spec(trust_conf)] if args.consensus else []),
            ChildSpec("issuer", lambda ctx: IssuerActor.start(
                ctx, ca, ctlog=None if args.no_ct else "ctlog",
                detector="detector" if args.consensus else None,
                vdf_modulus=params.modulus), start_timeout_s=120),
        ])  # fmt: skip
        path = "no CT log" if args.no_ct else "CT log in the path"
        n, consensus = args.validators, "no consensus (--consensus adds it)"
        if args.consensus:
            registrations, authority = register_fleet(registry, work.fleet)
            consensus = (f"consensus N = {n}, work {params.work_bits} bits, VDF t = {params.vdf_t}"
                         " in RSA-2048")  # fmt: skip
        print(f"run {run}: issuance through the actor tree (EC P-256 keys in SoftHSM; {path}; "
              f"{consensus})")  # fmt: skip
        flat_out(registry, messages[:warm], window)  # warm-up, not reported twice
        if not args.no_ct:
            finals_drained(registry)
        rate, flat_p50, flat_p99 = flat_out(
            registry, messages[warm : warm + flat], window, cpu=True
        )
        sustained = rate
        if not args.no_ct:  # the final certificates still owed to the log are work too
            owed, drain_s = finals_drained(registry)
            sustained = flat / (flat / rate + drain_s)
            late = f"{owed} final certificates owed at the end, logged {drain_s * 1e3:.0f} ms later"
            print(f"  {'... with the finals logged':<34} {sustained:8.0f} certs/s   ({late})")
        _, rate_p50, rate_p99 = fixed_rate(registry, messages[warm + flat :], work.offered)
        if not args.no_ct:
            finals_drained(registry)
        ceiling = hsm_ceiling(registry, ca.intermediate_key, 2.0)
        per_cert = 2 if args.no_ct else 4
        name = f"certs/s / (HSM signatures/s / {per_cert})"
        print(f"  {name:<34} {rate / (ceiling / per_cert):8.2f}"
              + ("" if args.no_ct else f"   (with the finals logged: "
                 f"{sustained / (ceiling / per_cert):.2f})"))  # fmt: skip
        figures = {
            "flat out, certs/s": rate,
            "flat out with the finals logged, certs/s": sustained,
            "flat out, median ms": flat_p50,
            "flat out, p99 ms": flat_p99,
            f"offered {work.offered:.0f}/s, median ms": rate_p50,
            f"offered {work.offered:.0f}/s, p99 ms": rate_p99,
            "HSM ceiling, signatures/s": ceiling,
            name: rate / (ceiling / per_cert),
        }
        if args.consensus:
            some = slice(0, 100)
            checks = verification_s(work.ders[some], work.proofs[some], registrations,
                                    authority, params)  # fmt: skip
            check_s = statistics.median(checks)
            cores = os.cpu_count() or 1
            q = checks_per_decision(n, trust_conf.quorum_first)
            decisions = cores / (q * check_s)
            name = f"consensus ceiling {cores} cores / ({q} x check)"
            print(f"  {name:<34} {decisions:8.0f} decisions/s   (check_request median "
                  f"{check_s * 1e3:.2f} ms, directly on one thread)")  # fmt: skip
            print(f"  {'certs/s / consensus ceiling':<34} {rate / decisions:8.2f}")
            figures.update({"consensus ceiling, decisions/s": decisions,
                            "certs/s / consensus ceiling": rate / decisions})  # fmt: skip
        root.stop(block=True, timeout=60)
    return figures


if __name__ == "__main__":
    main()
