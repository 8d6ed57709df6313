"""Benchmark the actor runtime: prints figures, asserts nothing.

    .venv/bin/python bench/actors.py [--seconds 2]

1. ask round trip through the registry (a thread asking an echo actor);
2. control-socket round trip: a real `serve()` in a child process, one
   request at a time, then 64 in flight on one connection;
3. time from an injected crash until the restarted actor answers;
4. HSM signatures/s (EC P-256, SoftHSM): python-pkcs11 directly on one thread
   vs through the HSMActor (one at a time, and 64 in flight).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trustchain.actors.hsm import HSMActor, SignBatch, SignData
from trustchain.actors.hsm.softhsm import prepare_softhsm_token
from trustchain.actors.hsm.token import Token
from trustchain.config import HsmConfig, load_config
from trustchain.supervisors import (
    ActorCrashed,
    ActorUnavailable,
    ChildSpec,
    Message,
    Registry,
    SupervisedActor,
    handles,
    start_root,
)


@dataclass(frozen=True)
class Ping(Message):
    pass


@dataclass(frozen=True)
class Crash(Message):
    pass


class EchoActor(SupervisedActor):
    @handles(Ping)
    def ping(self, msg: Ping) -> str:
        return "pong"

    @handles(Crash)
    def crash(self, msg: Crash) -> None:
        raise RuntimeError("injected crash")


def echo_tree(registry: Registry, max_restarts: int = 1_000_000) -> Any:
    spec = ChildSpec("echo", lambda ctx: EchoActor.start(ctx))
    return start_root(registry, "root", [spec], max_restarts=max_restarts, period_s=1.0)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(name: str, samples_s: list[float]) -> None:
    ms = [s * 1000 for s in samples_s]
    print(
        f"  {name:<44} median {statistics.median(ms):8.3f} ms   p99 {pct(ms, 0.99):8.3f} ms"
        f"   (n={len(ms)})"
    )


def bench_ask(seconds: float) -> None:
    registry = Registry()
    root = echo_tree(registry)
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        registry.ask("echo", Ping())
        samples.append(time.perf_counter() - t0)
    root.stop(block=True)
    print("ask round trip (thread -> actor -> thread)")
    line("registry.ask", samples)


def bench_restart(count: int) -> None:
    registry = Registry()
    root = echo_tree(registry)
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        try:
            registry.ask("echo", Crash())
        except ActorCrashed:
            pass
        while True:
            try:
                registry.ask("echo", Ping())
                break
            except ActorUnavailable:
                time.sleep(0.0001)  # don't hold the GIL the restarting threads need
        samples.append(time.perf_counter() - t0)
    root.stop(block=True)
    print("crash -> restarted actor answers")
    line("injected crash to first answer", samples)


SERVER = """
import sys, trio
sys.path.insert(0, sys.argv[2])
from actors import EchoActor
from trustchain.config import load_config
from trustchain.protocols.boot import serve
from trustchain.protocols.control import bind_control_socket
from trustchain.supervisors import ChildSpec
import dataclasses, pathlib
config = load_config()
runtime = dataclasses.replace(config.runtime, control_socket=pathlib.Path(sys.argv[1]),
                              log_level="WARNING")
config = dataclasses.replace(config, runtime=runtime)
from trustchain.protocols.logs import setup_logging
setup_logging("WARNING")
listener = bind_control_socket(config.runtime.control_socket)
trio.run(serve, config, listener, [ChildSpec("echo", lambda ctx: EchoActor.start(ctx))])
"""


def bench_control_socket(seconds: float, directory: Path) -> None:
    path = directory / "ctl.sock"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(path), str(Path(__file__).parent)])
    try:
        while not path.exists():
            time.sleep(0.02)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        request = json.dumps({"id": 1, "to": "echo", "type": "ping"}).encode() + b"\n"
        samples = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            sock.sendall(request)
            reader.readline()
            samples.append(time.perf_counter() - t0)
        print("control socket (separate process, one connection)")
        line("request round trip, 1 in flight", samples)
        # 64 in flight: keep the window full, count replies per second.
        window, sent, received = 64, 0, 0
        t0 = time.perf_counter()
        end = time.monotonic() + seconds
        while sent < window:
            sock.sendall(request)
            sent += 1
        while time.monotonic() < end:
            reader.readline()
            received += 1
            sock.sendall(request)
            sent += 1
        while received < sent:
            reader.readline()
            received += 1
        elapsed = time.perf_counter() - t0
        print(f"  {'requests/s, 64 in flight':<44} {received / elapsed:10.0f} /s")
        sock.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def bench_hsm(seconds: float, directory: Path) -> None:
    conf, pin_file = directory / "hsm" / "softhsm2.conf", directory / "hsm" / "user.pin"
    prepare_softhsm_token(conf, "bench", pin_file)
    pin = pin_file.read_text().strip()
    token = Token.open("softhsm2", "bench", pin, str(conf))
    token.ensure_key("bench-key", "ec-p256")
    data = os.urandom(200)
    n = 0
    t0 = time.perf_counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        token.sign("bench-key", data)
        n += 1
    direct = n / (time.perf_counter() - t0)
    token.close()  # finalise: from here on only the actor's thread touches PKCS#11

    config = HsmConfig(
        module="softhsm2",
        token_label="bench",
        pin_file=pin_file,
        softhsm2_conf=str(conf),
        keys={"bench-key": "ec-p256"},
    )
    registry = Registry()
    root = start_root(registry, "root", [ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, config))])
    message = SignData("bench-key", data)
    n = 0
    t0 = time.perf_counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        registry.ask("hsm", message)
        n += 1
    one = n / (time.perf_counter() - t0)

    window = threading.Semaphore(64)
    done = [0]

    def reply(_result: Any) -> None:
        done[0] += 1
        window.release()

    sent = 0
    t0 = time.perf_counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        window.acquire()
        registry.tell("hsm", message, reply)
        sent += 1
    for _ in range(64):
        window.acquire()
    pipelined = done[0] / (time.perf_counter() - t0)

    batch, in_flight = 32, 4
    window = threading.Semaphore(in_flight)
    done[0] = 0
    batch_message = SignBatch("bench-key", [data] * batch)
    t0 = time.perf_counter()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        window.acquire()
        registry.tell("hsm", batch_message, reply)
    for _ in range(in_flight):
        window.acquire()
    batched = done[0] * batch / (time.perf_counter() - t0)
    root.stop(block=True)
    print("HSM signatures/s, EC P-256, SoftHSM")
    print(f"  {'python-pkcs11 directly, one thread':<44} {direct:10.0f} /s")
    print(f"  {'HSMActor, 1 in flight (ask)':<44} {one:10.0f} /s   ({one / direct:.0%} of direct)")
    print(
        f"  {'HSMActor, 64 in flight':<44} {pipelined:10.0f} /s   "
        f"({pipelined / direct:.0%} of direct)"
    )
    print(
        f"  {f'HSMActor, sign_batch of {batch}, {in_flight} in flight':<44} {batched:10.0f} /s   "
        f"({batched / direct:.0%} of direct)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    from trustchain.protocols.logs import setup_logging

    setup_logging("ERROR")
    load_config()  # fail early on a broken install
    with tempfile.TemporaryDirectory(prefix="tc-bench-") as tmp:
        directory = Path(tmp)
        bench_ask(args.seconds)
        bench_control_socket(args.seconds, directory)
        bench_restart(500)
        bench_hsm(args.seconds, directory)


if __name__ == "__main__":
    main()
