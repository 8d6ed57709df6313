"""Benchmark the CT log through CTLogActor: prints figures, asserts nothing.

    .venv/bin/python bench/ctlog.py [--seconds 3] [--settle 6.5] [--entries 1000000]
                                    [--skip-storage]

1. Through the actor: a real tree (HSMActor on a temporary SoftHSM token with
   the P-256 log key, CTLogActor with tiles and index on disk) takes add_chain
   submissions of distinct small leaf certificates, pre-generated in memory
   under one root that the log accepts. A single sender keeps 1, 16 or 256
   submissions outstanding (closed loop) for --seconds each, each level into
   a fresh log of its own; every SCT comes back only after its entry is
   durable (fsynced). Prints durable appends/s, the SCT latency (from send to
   SCT) median and p99 and the mean batch size; then the bytes written per
   entry, counted two ways: through the storage interface (every object given
   to ``LocalDirectoryStorage.write_many``: tiles, checkpoints, issuers; and every
   record appended to the log's journal, ``ctlog.journal``) and from /proc/self/io
   ``write_bytes`` (what the whole process sent to the block device: also the
   SQLite index and its own journal); and, once the log has been
   idle for --settle seconds (past the 5 s partial-tile grace period and the
   next checkpoint refresh, which runs the cleanup), the files and bytes on
   disk per entry, partial tiles apart. Beside them, the ceiling of one outstanding
   submission measured in the same run: what a batch cannot do without (one HSM
   ``sign_batch`` of 2, one at a time, plus one small append and fdatasync in the
   same directory).
2. The storage at scale, through bench/ct_storage.py's functions: a log of
   --entries leaves built in batches of 1024 (in-memory signer), then inclusion
   and consistency proof medians, cold open time and disk bytes per entry.

Aims (the CTLogActor issue): >= 5,000 durable appends/s, SCT p99 < 100 ms,
proofs < 1 ms and cold start < 1 s at 1M entries.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import LocalDirectoryStorage
from trustchain.actors.ct.storage import FileJournal
from trustchain.actors.ctlog import AcceptRoots, AddChain, CTLogActor, GetSTH
from trustchain.actors.hsm import HSMActor, SignBatch
from trustchain.actors.hsm.softhsm import prepare_softhsm_token
from trustchain.config import CtLogConfig, HsmConfig
from trustchain.protocols.logs import setup_logging
from trustchain.supervisors import ChildSpec, Registry, start_root

WINDOWS = (1, 16, 256)


def ct_storage() -> ModuleType:
    """bench/ct_storage.py, imported by path (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("ct_storage", Path(__file__).with_name(
        "ct_storage.py"))  # fmt: skip
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Certificates:
    """One root key signing many tiny distinct leaves, all in memory (~30k/s)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Bench CT Root")])
        now = dt.datetime.now(dt.UTC)
        base = (
            x509.CertificateBuilder().issuer_name(name).public_key(self.key.public_key())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        )  # fmt: skip
        self._leaf = base.subject_name(x509.Name([]))
        root = base.subject_name(name).serial_number(1).add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True)  # fmt: skip
        self.root = root.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        self._serial = 1

    def leaves(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            self._serial += 1
            cert = self._leaf.serial_number(self._serial).sign(self.key, hashes.SHA256())
            out.append(cert.public_bytes(serialization.Encoding.DER))
        return out


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class WriteCounter:
    """Bytes given to every LocalDirectoryStorage.write_many and FileJournal.append (the
    journal's records) in this process."""

    def __init__(self) -> None:
        self.bytes = 0
        original = LocalDirectoryStorage.write_many
        append = FileJournal.append

        def write_many(storage: LocalDirectoryStorage, objects: Any) -> None:
            original(storage, objects)
            self.bytes += sum(len(data) for data in objects.values())

        def journal_append(journal: FileJournal, payload: bytes) -> None:
            append(journal, payload)
            self.bytes += len(payload)

        LocalDirectoryStorage.write_many = write_many  # type: ignore[method-assign]
        FileJournal.append = journal_append  # type: ignore[method-assign]


def block_write_bytes() -> int:
    """/proc/self/io write_bytes: bytes this process caused to be sent to storage."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def disk_figures(tiles: Path) -> tuple[int, int, int, int]:
    """(files, apparent bytes, partial-tile files, partial-tile bytes) under tiles/."""
    files = size = partial_files = partial_size = 0
    for dirpath, _, names in os.walk(tiles):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            files, size = files + 1, size + st.st_size
            if dirpath.endswith(".p"):
                partial_files, partial_size = partial_files + 1, partial_size + st.st_size
    return files, size, partial_files, partial_size


def closed_loop(
    registry: Registry,
    root: bytes,
    leaves: list[bytes],
    window: int,
    seconds: float,
    name: str = "ctlog",
) -> dict[str, Any]:
    """Keep ``window`` add_chain requests outstanding for ``seconds`` (or until leaves run out)."""
    slots = threading.Semaphore(window)
    latencies: list[float] = []
    errors: list[BaseException] = []
    hsm_before = registry.cell("hsm").handled
    sent = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    for leaf in leaves:
        slots.acquire()
        if time.perf_counter() > deadline:
            slots.release()
            break
        started = time.perf_counter()

        def reply(result: Any, started: float = started) -> None:
            latencies.append(time.perf_counter() - started)
            if hasattr(result, "error"):
                errors.append(result.error)
            slots.release()

        registry.tell(name, AddChain([leaf, root]), reply)
        sent += 1
    for _ in range(window):
        slots.acquire()
    elapsed = time.perf_counter() - t0
    batches = max(1, registry.cell("hsm").handled - hsm_before)  # one sign_batch a batch
    ms = [s * 1000 for s in latencies]
    return {"window": window, "count": sent, "rate": sent / elapsed, "batches": batches,
            "median_ms": statistics.median(ms), "p99_ms": pct(ms, 0.99), "errors": errors,
            "exhausted": sent == len(leaves)}  # fmt: skip


def hsm_round_trip_ms(registry: Registry, seconds: float = 1.0) -> float:
    """Median of one SignBatch of 2 (a batch's SCT and tree head) at a time, in ms."""
    batch, times = SignBatch(CtLogConfig().key, [b"x" * 120, b"y" * 60]), []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        registry.ask("hsm", batch, timeout=30)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def fdatasync_ms(directory: Path, seconds: float = 1.0) -> float:
    """Median of a 300-byte append and fdatasync to a file in ``directory``, in ms."""
    fd = os.open(directory / "fdatasync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times: list[float] = []
    try:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            os.write(fd, b"r" * 300)
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return statistics.median(times) * 1000


def bench_actor(seconds: float, settle: float) -> None:
    counter = WriteCounter()
    with tempfile.TemporaryDirectory(prefix="tc-bench-ct-") as tmp:
        directory = Path(tmp)
        conf, pin = directory / "hsm" / "softhsm2.conf", directory / "hsm" / "user.pin"
        prepare_softhsm_token(conf, "bench", pin)
        hsm = HsmConfig(token_label="bench", pin_file=pin, softhsm2_conf=str(conf))
        logs = {w: CtLogConfig(storage_dir=directory / f"ct-{w}" / "tiles",
                               index_db=directory / f"ct-{w}" / "index.sqlite3")
                for w in ("warm", *WINDOWS)}  # fmt: skip
        registry = Registry()
        tree = start_root(registry, "root", [
            ChildSpec("hsm", lambda ctx: HSMActor.start(ctx, hsm)),
            *(ChildSpec(f"ctlog-{w}", lambda ctx, c=c: CTLogActor.start(ctx, c),
                        start_timeout_s=120) for w, c in logs.items()),
        ])  # fmt: skip
        certs = Certificates()
        for w in logs:
            registry.ask(f"ctlog-{w}", AcceptRoots([certs.root]))
        t0 = time.perf_counter()
        pools = {w: certs.leaves(min(60_000, 2_000 + int(w * 400 * seconds))) for w in WINDOWS}
        made = sum(map(len, pools.values()))
        print(f"made {made:,} leaf certificates ({len(pools[WINDOWS[0]][0])} B each) in "
              f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
        closed_loop(registry, certs.root, certs.leaves(2_000), 64, 1.0, "ctlog-warm")
        print(f"CTLogActor add_chain, durable (fsynced) before the SCT; {seconds:g} s per row, "
              "a fresh log per row:")  # fmt: skip
        disk, rates = {}, {}
        for window in WINDOWS:
            name = f"ctlog-{window}"
            written, block = counter.bytes, block_write_bytes()
            r = closed_loop(registry, certs.root, pools[window], window, seconds, name)
            rates[window] = r["rate"]
            written, block = counter.bytes - written, block_write_bytes() - block
            print(f"  {window:3d} outstanding: {r['rate']:8,.0f} appends/s   SCT median "
                  f"{r['median_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   mean batch "
                  f"{r['count'] / r['batches']:6.1f}   (n={r['count']:,}"
                  f"{', ran out of certificates' if r['exhausted'] else ''})")  # fmt: skip
            if r["errors"]:
                print(f"    errors: {len(r['errors'])}, first: {r['errors'][0]!r}")
            n = r["count"]
            print(f"      written per entry: {written / n:9,.0f} B through the storage "
                  f"interface, {block / n:9,.0f} B by /proc/self/io write_bytes")  # fmt: skip
            size = registry.ask(name, GetSTH())["tree_size"]
            right_after = disk_figures(logs[window].storage_dir)
            time.sleep(settle)
            disk[window] = (size, right_after, disk_figures(logs[window].storage_dir))
        hsm_ms, sync_ms = hsm_round_trip_ms(registry), fdatasync_ms(directory)
        ceiling = 1000 / (hsm_ms + sync_ms)
        print(f"  ceiling of 1 outstanding, this run: an HSM sign_batch of 2 (SCT, tree head) "
              f"one at a time p50 {hsm_ms:.2f} ms + a 300 B append and fdatasync p50 "
              f"{sync_ms:.2f} ms = {ceiling:,.0f} appends/s; the row reached "
              f"{rates[1] / ceiling:.2f} of it")  # fmt: skip
        print(f"on disk (tiles, checkpoint, issuers): right after each row / {settle:g} s later")
        for window, (size, *figures) in disk.items():
            shown = [f"{f:,} files ({pf:,} partial tiles, {ps / 1024:,.0f} KiB), "
                     f"{b / size:,.0f} B/entry" for f, b, pf, ps in figures]  # fmt: skip
            print(f"  {window:3d} outstanding, {size:,} entries: " + " / ".join(shown))
        tree.stop(block=True, timeout=60)


def bench_storage(entries: int) -> None:
    cts = ct_storage()
    workdir = Path(tempfile.mkdtemp(prefix="ct-bench-"))
    pad = os.urandom(cts.CERT_BYTES - 8)
    try:
        root = workdir / "big"
        print(f"storage at scale (bench/ct_storage.py): building {entries:,} entries ...")
        elapsed = cts.build(root, entries, 1024, pad)
        print(f"  built in {elapsed:.1f} s ({entries / elapsed:,.0f} entries/s)")
        opens = []
        for _ in range(5):
            t0 = time.perf_counter()
            cts.open_log(root).close()
            opens.append(time.perf_counter() - t0)
        print(f"  cold open at {entries:,}: median {statistics.median(opens) * 1e3:.1f} ms")
        log = cts.open_log(root)
        for label in ("first pass", "warm"):
            inclusion, consistency = cts.bench_proofs(log, 2000, seed=1)
            print(f"  proofs ({label}): inclusion median {inclusion * 1e3:.3f} ms, "
                  f"consistency median {consistency * 1e3:.3f} ms")  # fmt: skip
        log.close()
        allocated, apparent, files = cts.disk_usage(root)
        print(f"  disk: {allocated / entries:,.0f} B/entry allocated, {apparent / entries:,.0f} "
              f"B/entry apparent ({cts.CERT_BYTES} B certificates), {files:,} files")  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per concurrency level")
    parser.add_argument("--entries", type=int, default=1_000_000, help="storage log size")
    parser.add_argument(
        "--settle", type=float, default=6.5, help="idle seconds, then measure the disk again"
    )
    parser.add_argument("--skip-storage", action="store_true")
    args = parser.parse_args()
    setup_logging("WARNING")
    bench_actor(args.seconds, args.settle)
    if not args.skip_storage:
        bench_storage(args.entries)


if __name__ == "__main__":
    main()
