"""Benchmark the durable tiled CT log (trustchain.actors.ct.TileLog).

Prints, for a local-directory log on this machine:
  * durable appends/s at batch sizes 1, 16 and 256 (each append_batch returns
    only after tiles, checkpoint and index are fsynced);
  * inclusion and consistency proof time (median) on a log of --entries leaves,
    built in batches of --build-batch with an in-memory P-256 signer;
  * cold open time of that log, and disk bytes per entry.

    .venv/bin/python bench/ct_storage.py [--entries 1000000] [--dir PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import LocalDirectoryStorage, LogEntryInput, TileLog

ORIGIN = "bench.trustchain.test/log"
CERT_BYTES = 700  # about an ECDSA leaf certificate
KEY = ec.generate_private_key(ec.SECP256R1())
ISSUER = os.urandom(600)


def sign(data: bytes) -> bytes:
    return KEY.sign(data, ec.ECDSA(hashes.SHA256()))


def open_log(root: Path) -> TileLog:
    storage = LocalDirectoryStorage(root / "tiles")
    return TileLog.open(storage, sign, KEY.public_key(), ORIGIN, root / "index.db", now_ms=1)


def entries(start: int, count: int, pad: bytes) -> list[LogEntryInput]:
    return [
        LogEntryInput.x509(i.to_bytes(8, "big") + pad, [ISSUER])
        for i in range(start, start + count)
    ]


def disk_usage(root: Path) -> tuple[int, int, int]:
    """(allocated bytes, apparent bytes, files) under root."""
    allocated = apparent = files = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
            files += 1
    return allocated, apparent, files


def bench_appends(workdir: Path, pad: bytes) -> None:
    print("durable appends (tiles + checkpoint + SQLite index, all fsynced):")
    for batch, batches in ((1, 300), (16, 200), (256, 60)):
        root = workdir / f"append-{batch}"
        log = open_log(root)
        log.append_batch(entries(0, 300, pad), 1)  # start mid-tile, like a live log
        latencies = []
        start = time.perf_counter()
        for b in range(batches):
            t0 = time.perf_counter()
            log.append_batch(entries(300 + b * batch, batch, pad), 2 + b)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - start
        print(
            f"  batch {batch:4d}: {batches * batch / elapsed:9.0f} entries/s  "
            f"{batches / elapsed:7.0f} batches/s  "
            f"median batch {statistics.median(latencies) * 1e3:6.2f} ms"
        )
        log.close()
        shutil.rmtree(root)


def build(root: Path, total: int, batch: int, pad: bytes) -> float:
    log = open_log(root)
    start = time.perf_counter()
    while log.size < total:
        log.append_batch(entries(log.size, min(batch, total - log.size), pad), 1 + log.size)
        if log.size % (batch * 100) == 0:
            rate = log.size / (time.perf_counter() - start)
            print(f"  ... {log.size:,} entries ({rate:,.0f}/s)", flush=True)
    elapsed = time.perf_counter() - start
    log.close()
    return elapsed


def bench_proofs(log: TileLog, count: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    size = log.size
    inclusion = []
    for _ in range(count):
        index = rng.randrange(size)
        t0 = time.perf_counter()
        log.inclusion_proof(index, size)
        inclusion.append(time.perf_counter() - t0)
    consistency = []
    for _ in range(count):
        size1 = rng.randint(1, size)
        t0 = time.perf_counter()
        log.consistency_proof(size1, size)
        consistency.append(time.perf_counter() - t0)
    return statistics.median(inclusion), statistics.median(consistency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--build-batch", type=int, default=1024)
    parser.add_argument(
        "--dir", type=Path, default=None, help="work directory (default: a temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the built log")
    parser.add_argument(
        "--rebuild-index", action="store_true", help="also time rebuilding a lost SQLite index"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ct-bench-", dir=args.dir))
    pad = os.urandom(CERT_BYTES - 8)
    try:
        bench_appends(workdir, pad)
        root = workdir / "big"
        print(f"building a {args.entries:,}-entry log in batches of {args.build_batch}:")
        elapsed = build(root, args.entries, args.build_batch, pad)
        print(f"  built in {elapsed:.1f} s ({args.entries / elapsed:,.0f} entries/s)")

        opens = []
        for _ in range(5):
            t0 = time.perf_counter()
            log = open_log(root)
            opens.append(time.perf_counter() - t0)
            log.close()
        print(
            f"cold open (checkpoint verify, edge tiles, root recompute): "
            f"median {statistics.median(opens) * 1e3:.1f} ms"
        )

        log = open_log(root)
        print(f"proofs at {log.size:,} entries (2000 random of each, LRU of 1024 tiles):")
        for label in ("first pass", "same again"):
            reads = log.tile_reads
            inc, cons = bench_proofs(log, 2000, seed=1)
            print(
                f"  {label}: inclusion median {inc * 1e3:.3f} ms, consistency median "
                f"{cons * 1e3:.3f} ms, {log.tile_reads - reads} tile reads"
            )
        log.close()
        if args.rebuild_index:
            for f in root.glob("index.db*"):
                f.unlink()
            t0 = time.perf_counter()
            open_log(root).close()
            print(
                f"open with the index lost (rebuilt from tiles): {time.perf_counter() - t0:.1f} s"
            )

        allocated, apparent, files = disk_usage(root)
        payload = CERT_BYTES
        print(
            f"disk: {allocated / args.entries:,.0f} B/entry allocated, "
            f"{apparent / args.entries:,.0f} B/entry apparent "
            f"(certificate itself {payload} B), {files:,} files, "
            f"{allocated / 2**20:,.0f} MiB total"
        )
        for part in ("tiles/tile/data", "tiles/tile/0", "index.db"):
            p = root / part
            size = disk_usage(p)[1] if p.is_dir() else p.stat().st_size
            print(f"  {part}: {size / args.entries:,.1f} B/entry")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")


if __name__ == "__main__":
    main()
