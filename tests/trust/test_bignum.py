"""bignum: libcrypto's exponentiations and GMP's give Python's ``pow``'s answers, on
every thread, for every modulus; values they cannot take are a ValueError. Each test
runs on both backends (``openssl`` where libcrypto loads, and ``gmpy2``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.actors.trust import bignum, formats
from trustchain.actors.trust.vdf import RSA_2048, check_time_proof, evaluate, vdf_input

N = int(gmpy2.next_prime(2**1023 + 2**500 + 7)) * int(gmpy2.next_prime(2**1023 + 2**600 + 3))
LIBCRYPTO = bignum._LIB


@pytest.fixture(params=["openssl", "gmpy2"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "openssl" and LIBCRYPTO is None:
        pytest.skip("no libcrypto on this machine")
    with contextlib.nullcontext() if request.param == "openssl" else bignum.gmp_only():
        yield request.param


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2 * N), st.integers(0, 2**300), st.integers(0, 2 * N), st.integers(0, 2**300))
def test_the_joint_exponentiation_is_two_powers(a: int, e: int, b: int, f: int) -> None:
    for context in (contextlib.nullcontext(), bignum.gmp_only()):
        with context:
            assert bignum.product_of_powers(a, e, b, f, N) == pow(a, e, N) * pow(b, f, N) % N
            assert bignum.powmod(a, e, N) == pow(a, e, N)


def test_zero_exponents_and_small_values(backend: str) -> None:
    assert bignum.product_of_powers(5, 0, 7, 0, N) == 1
    assert bignum.product_of_powers(0, 0, 1, 1, N) == 1
    assert bignum.product_of_powers(2, 1, 0, 0, N) == 2
    assert bignum.powmod(0, 0, N) == 1
    assert bignum.product_of_powers(0, 3, 7, 2, N) == 0
    assert bignum.product_of_powers(1, 2**256, N - 1, 3, N) == N - 1
    assert bignum.powmod(2, 0, 3) == 1
    assert bignum.powmod(N + 2, 5, N) == 32


@pytest.mark.parametrize(
    "args",
    [(2, 3, 4, 5, 10), (2, 3, 4, 5, 1), (2, 3, 4, 5, 0), (-2, 3, 4, 5, 11), (2, -3, 4, 5, 11)],
)
def test_an_even_or_tiny_modulus_or_a_negative_number_is_refused(
    backend: str, args: tuple[int, int, int, int, int]
) -> None:
    with pytest.raises(ValueError):
        bignum.product_of_powers(*args)
    with pytest.raises(ValueError):
        bignum.powmod(args[0], args[1], args[4])


def test_many_moduli_one_after_another(backend: str) -> None:
    moduli = [int(gmpy2.next_prime(2**200 + 1000 * i)) for i in range(3 * bignum._MAX_MONTGOMERY)]
    for m in moduli + moduli:
        assert (
            bignum.product_of_powers(3, 2**90 + 1, 5, 77, m)
            == pow(3, 2**90 + 1, m) * pow(5, 77, m) % m
        )


def test_threads_each_keep_their_own_numbers_and_free_them_at_the_end(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    got: dict[int, bool] = {}
    closed: list[int] = []
    close = bignum._Scratch.close

    def counted(scratch: bignum._Scratch) -> None:
        closed.append(id(scratch))
        close(scratch)

    monkeypatch.setattr(bignum._Scratch, "close", counted)
    made: set[int] = set()
    start = threading.Barrier(4)

    def work(k: int) -> None:
        start.wait()
        a, e = 3 + k, 2**255 + k
        got[k] = all(
            bignum.product_of_powers(a, e, a + 1, e + 1, N)
            == pow(a, e, N) * pow(a + 1, e + 1, N) % N
            for _ in range(20)
        )
        if bignum._LIB is not None:
            made.add(id(bignum._scratch()))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == {0: True, 1: True, 2: True, 3: True}
    assert len(made) == (4 if backend == "openssl" else 0)  # one each
    assert set(closed) == made  # and each freed when its thread ended


def test_a_proof_made_with_one_backend_verifies_with_the_other() -> None:
    if LIBCRYPTO is None:
        pytest.skip("no libcrypto on this machine")
    digest = formats.request_digest(b"csr", bytes(32), 1)
    x, t = vdf_input(digest, RSA_2048), 2**10
    made = evaluate(x, t, RSA_2048)
    with bignum.gmp_only():
        assert evaluate(x, t, RSA_2048) == made
        check_time_proof(digest, *made, t, RSA_2048)
    check_time_proof(digest, *made, t, RSA_2048)
