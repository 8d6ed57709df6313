"""Benchmark the per-request proofs, PoTime and PoWork: prints figures, asserts nothing.

    .venv/bin/python bench/vdf.py [--repeat 5] [--work-repeat 12] [--no-2-20]

Sans-IO, one thread, no actors: the domain functions of ``actors/trust/vdf.py``
and ``actors/trust/work.py`` called directly, each run ``--repeat`` times on
distinct request digests (``--work-repeat`` for PoWork, whose solving time
varies with luck); medians are printed (with min and max).

* PoTime at RSA-2048 (the RSA Factoring Challenge number): ``evaluate`` (the
  asset's t squarings and the proof, about 2t squarings in all) at t = 2^16
  and, unless ``--no-2-20``, at t = 2^20 (skipped when 16 times the 2^16 figure
  exceeds 10 s); ``check_time_proof`` (the validator: the input hash, the prime
  the proof names, tested once, and two 256-bit exponentiations in one pass, with
  OpenSSL's ``BN_mod_exp2_mont`` where libcrypto loads, ``bignum.BACKEND``; the input
  and the prime alone are shown too, and the prover's search for the prime, which
  the verifier no longer repeats) and beside it the same check with GMP (Shamir's
  trick in Python over gmpy2: the fallback) and with Python's own ``pow`` for the two
  exponentiations, as peer figures; ``evaluate`` with GMP too;
* PoWork: ``solve_work`` (2^D SHA-256 on average, so its spread is wide) and
  ``check_work`` (one hash) at D = 16 and 20 bits.

What the figures mean: evaluate's time is the delay a given t buys on *this*
machine; it says nothing of faster hardware. The check should stay in the
low milliseconds whatever t is (O(log t)).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
from collections.abc import Callable

from trustchain.actors.trust import bignum
from trustchain.actors.trust.vdf import (
    RSA_2048,
    canonical,
    check_time_proof,
    evaluate,
    hash_to_prime,
    prime_at,
    vdf_input,
)
from trustchain.actors.trust.work import check_work, solve_work

EVALUATE_BUDGET_S = 10.0  # t = 2^20 is run when its estimate (16 x t = 2^16) is below this


def digests(count: int, label: str) -> list[bytes]:
    return [hashlib.sha256(f"bench/{label}/{i}".encode()).digest() for i in range(count)]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def show(name: str, samples: list[float], unit: str = "ms") -> None:
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
    med, low, high = statistics.median(samples), min(samples), max(samples)
    print(
        f"  {name:<44} median {med * scale:10.3f} {unit}"
        f"   (min {low * scale:.3f}, max {high * scale:.3f}, n={len(samples)})"
    )


def python_check(digest: bytes, y: int, proof: int, index: int, t: int, modulus: int) -> bool:
    """The check equation with Python's pow (the input and the prime still via vdf.py)."""
    x = vdf_input(digest, modulus)
    prime = prime_at(x, y, t, modulus, index)
    assert prime is not None
    seen = pow(proof, prime, modulus) * pow(x, pow(2, t, prime), modulus) % modulus
    return canonical(seen, modulus) == y


def bench_time(t: int, repeat: int) -> float:
    print(f"PoTime, RSA-2048, t = 2^{t.bit_length() - 1} ({t} squarings)")
    runs = []
    for digest in digests(repeat, f"vdf-{t}"):
        x = vdf_input(digest, RSA_2048)
        start = time.perf_counter()
        y, proof, index = evaluate(x, t, RSA_2048)
        runs.append((digest, y, proof, index, time.perf_counter() - start))
    evaluate_s = [r[4] for r in runs]
    show(f"evaluate (y and proof), {bignum.BACKEND}", evaluate_s, "s")
    with bignum.gmp_only():
        gmp = [timed(lambda r=r: evaluate(vdf_input(r[0], RSA_2048), t, RSA_2048)) for r in runs]
    show("  the same with GMP (peer figure)", gmp, "s")
    per_squaring = statistics.median(evaluate_s) / (2 * t)
    print(f"  {'per squaring (evaluate / 2t)':<44} median {per_squaring * 1e6:10.3f} us")
    checks = [timed(lambda r=r: check_time_proof(*r[:4], t, RSA_2048)) for r in runs * 2]
    show(f"check_time_proof ({bignum.BACKEND})", checks)
    primes = [timed(lambda r=r: prime_at(vdf_input(r[0], RSA_2048), r[1], t, RSA_2048, r[3]))
              for r in runs * 2]  # fmt: skip
    show("  of which vdf_input + the named prime", primes)
    searches = [timed(lambda r=r: hash_to_prime(vdf_input(r[0], RSA_2048), r[1], t, RSA_2048))
                for r in runs * 2]  # fmt: skip
    show("  (the prover's search, hash_to_prime)", searches)
    with bignum.gmp_only():
        gmp = [timed(lambda r=r: check_time_proof(*r[:4], t, RSA_2048)) for r in runs * 2]
    show("same check with GMP (peer figure)", gmp)
    peers = [timed(lambda r=r: python_check(*r[:4], t, RSA_2048)) for r in runs * 2]
    show("same check, Python pow() (peer figure)", peers)
    return statistics.median(evaluate_s)


def bench_work(bits: int, repeat: int) -> None:
    print(f"PoWork, D = {bits} bits (2^{bits} = {2**bits:,} hashes expected)")
    solved = []
    for digest in digests(repeat, f"work-{bits}"):
        start = time.perf_counter()
        nonce = solve_work(digest, bits)
        solved.append((digest, nonce, time.perf_counter() - start))
    show("solve_work", [s[2] for s in solved])
    hashes = sum(s[1] + 1 for s in solved) / sum(s[2] for s in solved)
    print(f"  {'hash rate while solving':<44} {hashes / 1e6:10.2f} M SHA-256/s")
    show("check_work", [timed(lambda s=s: check_work(s[0], s[1], bits)) for s in solved * 10], "us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="digests per figure")
    parser.add_argument("--work-repeat", type=int, default=12, help="digests per PoWork figure")
    parser.add_argument("--no-2-20", action="store_true", help="skip evaluate at t = 2^20")
    args = parser.parse_args()

    at_2_16 = bench_time(2**16, args.repeat)
    estimate = 16 * at_2_16
    if args.no_2_20:
        pass
    elif estimate < EVALUATE_BUDGET_S:
        bench_time(2**20, max(1, args.repeat // 2))
    else:
        print(f"PoTime at t = 2^20 skipped: estimated {estimate:.1f} s per evaluate")
    for bits in (16, 20):
        bench_work(bits, args.work_repeat)


if __name__ == "__main__":
    main()
