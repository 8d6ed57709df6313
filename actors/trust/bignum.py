"""Modular exponentiation for PoTime: OpenSSL's BIGNUM where it is there, GMP otherwise.

A validator's check of a request's PoTime is one joint exponentiation,
π^l · x^r mod N with 256-bit l and r in RSA-2048, and it is the largest part of
every check (three per certificate with N = 4). OpenSSL's ``BN_mod_exp2_mont``
(libcrypto's joint exponentiation, the one DSA verification uses) does it in
Montgomery form with shared squarings in C; measured on this machine, medians of
300: 300 us, against 532 us for the same product in Python over gmpy2 (Shamir's
trick, below) and 327 us for *one* of the two powers with GMP's ``powmod``. The
prover's long exponentiations gain less (x^(2^16): 63 against 69 ms; π: 57 against
92 ms) but gain, so ``powmod`` goes the same way.

libcrypto is reached with ctypes: the ``cryptography`` package carries its own
OpenSSL and exposes no BIGNUM, and the system's libcrypto (3.x, or 1.1.1) is on
every machine that has ``openssl``. ctypes lets the GIL go for the call, so a
thread exponentiating does not stop the process's other threads. Where no libcrypto
can be loaded, ``BACKEND`` is ``"gmpy2"`` and the same functions compute with GMP:
same results, slower (``tests/trust/test_bignum.py`` runs both).

Only public values go through here (proofs, outputs, the modulus): OpenSSL's
non-constant-time paths are what a verifier wants. Each thread keeps its own
``BN_CTX``, numbers and Montgomery context per modulus (``_Scratch``), freed when the
thread ends; nothing is shared between threads.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gmpy2

_LIBRARIES = ("libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so")
_MAX_MONTGOMERY = 4  # moduli a thread keeps the Montgomery form of (config has one)
_WINDOW_BITS = 4  # the gmpy2 joint exponentiation's windows


class _LibCrypto:
    """The handful of libcrypto functions used, with their C signatures."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        ptr, num, cint = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int

        def fn(name: str, restype: Any, *argtypes: Any) -> Any:
            f = getattr(lib, name)  # AttributeError: not a libcrypto we can use
            f.restype, f.argtypes = restype, list(argtypes)
            return f

        self.ctx_new = fn("BN_CTX_new", ptr)
        self.ctx_free = fn("BN_CTX_free", None, ptr)
        self.bn_new = fn("BN_new", ptr)
        self.bn_free = fn("BN_free", None, ptr)
        self.bin2bn = fn("BN_bin2bn", ptr, num, cint, ptr)
        self.bn2binpad = fn("BN_bn2binpad", cint, ptr, num, cint)
        self.mont_new = fn("BN_MONT_CTX_new", ptr)
        self.mont_free = fn("BN_MONT_CTX_free", None, ptr)
        self.mont_set = fn("BN_MONT_CTX_set", cint, ptr, ptr, ptr)
        self.mod_exp_mont = fn("BN_mod_exp_mont", cint, ptr, ptr, ptr, ptr, ptr, ptr)
        self.mod_exp2_mont = fn("BN_mod_exp2_mont", cint, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr)


def _load() -> _LibCrypto | None:
    for name in _LIBRARIES:
        try:
            return _LibCrypto(ctypes.CDLL(name))
        except (OSError, AttributeError):
            continue
    return None


_LIB = _load()
BACKEND = "openssl" if _LIB is not None else "gmpy2"


class _Scratch:
    """One thread's libcrypto state: a BN_CTX, five numbers, and the modulus and its
    Montgomery context for each modulus seen. Freed when the thread ends."""

    def __init__(self, lib: _LibCrypto) -> None:
        self.lib = lib
        self.ctx = lib.ctx_new()
        self.nums = [lib.bn_new() for _ in range(5)]
        self.moduli: dict[int, tuple[int, int]] = {}  # modulus -> (BIGNUM, BN_MONT_CTX)
        if not self.ctx or not all(self.nums):
            self.close()
            raise MemoryError("libcrypto could not allocate its numbers")

    def montgomery(self, modulus: int) -> tuple[int, int]:
        got = self.moduli.get(modulus)
        if got is None:
            if len(self.moduli) >= _MAX_MONTGOMERY:
                self._free_moduli()
            bn, mont = self.lib.bn_new(), self.lib.mont_new()
            try:
                if not bn or not mont:
                    raise MemoryError("libcrypto could not allocate a Montgomery context")
                self.set(bn, modulus)
                if self.lib.mont_set(mont, bn, self.ctx) != 1:
                    raise ArithmeticError("libcrypto refused the modulus (BN_MONT_CTX_set)")
            except BaseException:
                self.lib.mont_free(mont)
                self.lib.bn_free(bn)
                raise
            got = self.moduli[modulus] = (bn, mont)
        return got

    def set(self, bn: int, value: int) -> None:
        if value < 0:
            raise ValueError("only non-negative numbers")
        data = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
        if not self.lib.bin2bn(data, len(data), bn):
            raise MemoryError("libcrypto could not hold a number (BN_bin2bn)")

    def get(self, bn: int, modulus: int) -> int:
        size = max(1, (modulus.bit_length() + 7) // 8)
        out = ctypes.create_string_buffer(size)
        if self.lib.bn2binpad(bn, out, size) != size:
            raise ArithmeticError("a result did not fit its modulus (BN_bn2binpad)")
        return int.from_bytes(out.raw, "big")

    def _free_moduli(self) -> None:
        for bn, mont in self.moduli.values():
            self.lib.mont_free(mont)
            self.lib.bn_free(bn)
        self.moduli.clear()

    def close(self) -> None:
        self._free_moduli()
        for bn in self.nums:
            self.lib.bn_free(bn)
        self.nums = []
        self.lib.ctx_free(self.ctx)
        self.ctx = None

    def __del__(self) -> None:  # the thread's local storage goes when the thread does
        if self.ctx is not None:
            self.close()


_local = threading.local()


@contextmanager
def gmp_only() -> Iterator[None]:
    """Within it, every thread computes with GMP even where libcrypto loaded: the peer
    figure of ``bench/vdf.py``, and the tests of the fallback. Not for a running tree."""
    global _LIB
    kept, _LIB = _LIB, None
    try:
        yield
    finally:
        _LIB = kept


def _scratch() -> _Scratch:
    scratch: _Scratch | None = getattr(_local, "scratch", None)
    if scratch is None:
        assert _LIB is not None
        scratch = _local.scratch = _Scratch(_LIB)
    return scratch


def _check(modulus: int, *values: int) -> None:
    if modulus <= 1 or modulus % 2 == 0 or min(values) < 0:
        raise ValueError("an odd modulus greater than 1, and numbers that are not negative")


def powmod(base: int, exponent: int, modulus: int) -> int:
    """base^exponent mod modulus (modulus odd, > 1; base and exponent >= 0)."""
    _check(modulus, base, exponent)
    if _LIB is None:
        with gmpy2.context(allow_release_gil=True):  # the prover's long ones run beside
            return int(gmpy2.powmod(base, exponent, modulus))  # the process's threads
    if exponent == 0:  # as Python and GMP: x^0 is 1, 0^0 too
        return 1
    s = _scratch()
    n, mont = s.montgomery(modulus)
    a, e, r = s.nums[0], s.nums[1], s.nums[4]
    s.set(a, base % modulus)
    s.set(e, exponent)
    if s.lib.mod_exp_mont(r, a, e, n, s.ctx, mont) != 1:
        raise ArithmeticError("libcrypto's BN_mod_exp_mont failed")
    return s.get(r, modulus)


def product_of_powers(a: int, e: int, b: int, f: int, modulus: int) -> int:
    """a^e · b^f mod modulus in one pass (modulus odd, > 1; every other value >= 0)."""
    _check(modulus, a, e, b, f)
    if _LIB is None:
        return _product_of_powers_gmpy2(a, e, b, f, modulus)
    if e == 0:  # libcrypto answers 0 for 0^0 within a product; Python and GMP say 1
        a = 1
    if f == 0:
        b = 1
    s = _scratch()
    n, mont = s.montgomery(modulus)
    x, y, p, q, r = s.nums
    s.set(x, a % modulus)
    s.set(p, e)
    s.set(y, b % modulus)
    s.set(q, f)
    if s.lib.mod_exp2_mont(r, x, p, y, q, n, s.ctx, mont) != 1:
        raise ArithmeticError("libcrypto's BN_mod_exp2_mont failed")
    return s.get(r, modulus)


def _product_of_powers_gmpy2(a: int, e: int, b: int, f: int, modulus: int) -> int:
    """a^e · b^f mod modulus, Shamir's trick with fixed windows of ``_WINDOW_BITS``:
    the squarings are shared (about 30 % fewer modular multiplications than two
    ``powmod``s; 552 against 674 us here, though each step is a Python call)."""
    n = gmpy2.mpz(modulus)
    size = 1 << _WINDOW_BITS
    mask = size - 1
    a, b = a % modulus, b % modulus
    powers_a, powers_b = [gmpy2.mpz(1), gmpy2.mpz(a)], [gmpy2.mpz(1), gmpy2.mpz(b)]
    for _ in range(size - 2):
        powers_a.append(powers_a[-1] * a % n)
        powers_b.append(powers_b[-1] * b % n)
    acc = gmpy2.mpz(1)
    for i in range(-(-max(e.bit_length(), f.bit_length()) // _WINDOW_BITS) - 1, -1, -1):
        for _ in range(_WINDOW_BITS):
            acc = acc * acc % n
        shift = i * _WINDOW_BITS
        if digit := (e >> shift) & mask:
            acc = acc * powers_a[digit] % n
        if digit := (f >> shift) & mask:
            acc = acc * powers_b[digit] % n
    return int(acc)
