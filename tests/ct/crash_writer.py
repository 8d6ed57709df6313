"""A log writer for the SIGKILL test: appends forever, reporting what was acknowledged.

Usage: python crash_writer.py <directory> <run> <seed> [journal]. After every
``append_batch`` returns it prints, and flushes, one ``ack <index> <run> <seq>``
line per new entry and one ``sth <size> <root hex>`` line. The parent kills it
with SIGKILL at a random moment (often in the middle of deleting superseded
partial tiles) and checks the log against these lines.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.actors.ct import LocalDirectoryStorage, LogEntryInput, TileLog

ORIGIN = "ct.trustchain.test/crash"
KEY = ec.derive_private_key(4242, ec.SECP256R1())
GRACE_MS = 3  # the clock ticks 1 ms a batch: superseded partial tiles go 3 batches later
MATERIALIZE_MS = 5  # with the journal: the edge's tiles and checkpoint written every 5 batches


def certificate(run: int, seq: int) -> bytes:
    return f"certificate run={run} seq={seq} ".encode() * 4


def sign(data: bytes) -> bytes:
    return KEY.sign(data, ec.ECDSA(hashes.SHA256()))


def main() -> None:
    root, run, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    journal = sys.argv[4:] == ["journal"]  # batches committed by the journal's records
    rng = random.Random(seed)
    storage = LocalDirectoryStorage(root / "tiles")
    log = TileLog.open(storage, sign, KEY.public_key(), ORIGIN, root / "index.db", now_ms=1,
                       partial_grace_ms=GRACE_MS, journal=journal,
                       materialize_ms=MATERIALIZE_MS)  # fmt: skip
    print("ready", flush=True)
    seq, now = 0, 1_000_000 * run
    while True:
        count = rng.choice([1, 1, 3, 17, 60, 250])
        batch = [LogEntryInput.x509(certificate(run, seq + i)) for i in range(count)]
        now += 1
        results = log.append_batch(batch, now)
        lines = [f"ack {r.leaf_index} {run} {seq + i}" for i, r in enumerate(results)]
        lines.append(f"sth {log.size} {log.root.hex()}")
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        seq += count


if __name__ == "__main__":
    main()
