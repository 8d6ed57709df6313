"""PoTime: evaluate's proofs verify for their digest and t only; forged, negated,
rebound and out-of-range proofs, and prime indices that name no prime, are refused
with TimeProofInvalid.

Most algebra runs in a 1024-bit group whose factors the test knows (so the output
can be checked against x^(2^t mod λ(N)), computed without t squarings); one test
runs the real RSA-2048 group with t = 2^10.
"""

from __future__ import annotations

import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.actors.trust import formats
from trustchain.actors.trust.errors import TimeProofInvalid, TrustError
from trustchain.actors.trust.vdf import (
    PRIME_BITS,
    PRIME_INDEX_LIMIT,
    RSA_2048,
    canonical,
    check_time_proof,
    decode_group_element,
    encode_group_element,
    evaluate,
    find_prime,
    hash_to_prime,
    prime_at,
    vdf_input,
)

P = int(gmpy2.next_prime(2**511 + 2**300 + 17))  # two known 512-bit primes
Q = int(gmpy2.next_prime(2**511 + 2**400 + 91))
N = P * Q
LAMBDA = (P - 1) * (Q - 1) // int(gmpy2.gcd(P - 1, Q - 1))
T = 512
DIGEST = formats.request_digest(b"csr", bytes(32), 1)
OTHER_DIGEST = formats.request_digest(b"csr", bytes(32), 2)
X = vdf_input(DIGEST, N)
Y, PROOF, INDEX = evaluate(X, T, N)
digests = st.binary(min_size=32, max_size=32)


def refused(
    digest: bytes, y: object, proof: object, t: int = T, modulus: int = N, index: object = None
):
    if index is None:  # the index a forger would name: the first prime for its (x, y, t)
        named = isinstance(y, int) and 2 <= y < modulus and len(digest) == 32
        index = find_prime(vdf_input(digest, modulus), y, t, modulus)[0] if named else INDEX
    with pytest.raises(TimeProofInvalid) as caught:
        check_time_proof(digest, y, proof, index, t, modulus)  # type: ignore[arg-type]
    assert caught.value.code == "time_proof_invalid"
    assert isinstance(caught.value, TrustError)
    return caught.value


def test_rsa_2048_is_the_challenge_number() -> None:
    digits = str(RSA_2048)
    assert len(digits) == 617
    assert RSA_2048.bit_length() == 2048
    # RSA Laboratories also published it in hex: C7970CEE...1CC7E5
    assert f"{RSA_2048:x}".startswith("c7970ceedcc3b0754490201a7aa613cd")
    assert f"{RSA_2048:x}".endswith("bc16399d48c6361cc7e5")
    assert digits.startswith("2519590847565789349402718324004839857142928212620403")
    assert digits.endswith("6564391212010397122822120720357")
    assert not gmpy2.is_prime(RSA_2048)
    assert gmpy2.gcd(RSA_2048, gmpy2.primorial(100_000)) == 1  # no small factor


def test_the_small_group_is_made_of_two_512_bit_primes() -> None:
    assert P != Q and P.bit_length() == Q.bit_length() == 512
    assert gmpy2.is_prime(P, 50) and gmpy2.is_prime(Q, 50)


@settings(max_examples=20, deadline=None)
@given(digests, st.integers(PRIME_BITS, 3000))
def test_a_proof_from_evaluate_verifies(digest: bytes, t: int) -> None:
    x = vdf_input(digest, N)
    y, proof, index = evaluate(x, t, N)
    check_time_proof(digest, y, proof, index, t, N)


@settings(max_examples=20, deadline=None)
@given(digests, st.integers(PRIME_BITS, 3000))
def test_the_output_is_x_to_the_2_to_the_t(digest: bytes, t: int) -> None:
    x = vdf_input(digest, N)
    y, proof, index = evaluate(x, t, N)
    # The factors' shortcut: exponents reduce modulo λ(N).
    assert y == canonical(pow(x, pow(2, t, LAMBDA), N), N)
    prime = hash_to_prime(x, y, t, N)
    assert prime == prime_at(x, y, t, N, index)
    assert proof == canonical(pow(x, (2**t // prime) % LAMBDA, N), N)


def test_rsa_2048_proof_at_t_1024_verifies_and_travels_in_256_octets() -> None:
    t = 2**10
    x = vdf_input(DIGEST, RSA_2048)
    y, proof, index = evaluate(x, t, RSA_2048)
    check_time_proof(DIGEST, y, proof, index, t, RSA_2048)
    wire = encode_group_element(y, RSA_2048), encode_group_element(proof, RSA_2048)
    assert [len(w) for w in wire] == [256, 256]
    assert [decode_group_element(w, RSA_2048) for w in wire] == [y, proof]
    refused(OTHER_DIGEST, y, proof, t, RSA_2048, index)
    refused(DIGEST, y, proof, t + 1, RSA_2048, index)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["y", "proof"]), st.integers(0, 1023))
def test_a_bit_flip_in_the_output_or_the_proof_is_refused(which: str, bit: int) -> None:
    y, proof = (Y ^ (1 << bit), PROOF) if which == "y" else (Y, PROOF ^ (1 << bit))
    refused(DIGEST, y, proof)


def test_a_proof_for_another_digest_is_refused() -> None:
    refused(OTHER_DIGEST, Y, PROOF)


@pytest.mark.parametrize("t", [T - 1, T + 1, 2 * T, PRIME_BITS])
def test_a_proof_checked_for_another_t_is_refused(t: int) -> None:
    error = refused(DIGEST, Y, PROOF, t)
    assert error.details["t"] == t


def test_the_negated_output_and_proof_are_refused() -> None:
    # In Z_N^* the pair (-y, -π) satisfies the check equation (l is odd) for an
    # output that is not x^(2^t): what working modulo ±1 closes.
    prime = hash_to_prime(X, Y, T, N)
    assert pow(N - PROOF, prime, N) * pow(X, pow(2, T, prime), N) % N == N - Y
    refused(DIGEST, N - Y, N - PROOF)
    refused(DIGEST, N - Y, PROOF)
    refused(DIGEST, Y, N - PROOF)


@pytest.mark.parametrize("bad", [0, 1, N - 1, N, N + 5, -1, -Y, (N - 1) // 2 + 1, True, 2.0])
@pytest.mark.parametrize("field", ["y", "proof"])
def test_values_outside_the_canonical_range_are_refused(field: str, bad: object) -> None:
    error = refused(DIGEST, bad, PROOF) if field == "y" else refused(DIGEST, Y, bad)
    assert error.details["field"] == ("output y" if field == "y" else "proof")


@pytest.mark.parametrize("length", [0, 31, 33])
def test_a_digest_of_the_wrong_length_is_refused(length: int) -> None:
    refused(bytes(length), Y, PROOF)


def test_hash_to_prime_is_a_256_bit_prime_fixed_by_every_input() -> None:
    prime = hash_to_prime(X, Y, T, N)
    assert prime.bit_length() == PRIME_BITS
    assert gmpy2.is_prime(prime, 64)
    assert prime == hash_to_prime(X, Y, T, N)
    others = {
        hash_to_prime(X + 1, Y, T, N),
        hash_to_prime(X, Y + 1, T, N),
        hash_to_prime(X, Y, T + 1, N),
        hash_to_prime(X, Y, T, RSA_2048),
    }
    assert prime not in others and len(others) == 4


@settings(max_examples=30, deadline=None)
@given(st.integers(2, N - 1), st.integers(2, N - 1), st.integers(0, 2**64 - 1))
def test_hash_to_prime_always_gives_a_256_bit_prime(x: int, y: int, t: int) -> None:
    prime = hash_to_prime(x, y, t, N)
    assert prime.bit_length() == PRIME_BITS and gmpy2.is_prime(prime, 64)


@settings(max_examples=30, deadline=None)
@given(digests)
def test_the_input_is_a_canonical_square_that_depends_on_the_digest(digest: bytes) -> None:
    x = vdf_input(digest, N)
    assert 2 <= x <= (N - 1) // 2
    assert x == vdf_input(digest, N)
    square = x if gmpy2.legendre(x, P) == 1 else N - x  # x is u^2 or -u^2
    assert gmpy2.legendre(square, P) == gmpy2.legendre(square, Q) == 1
    assert x != vdf_input(bytes(b ^ 1 for b in digest), N)


def test_whoever_knows_the_factors_proves_any_t_without_the_work() -> None:
    # Why the modulus's factors must be unknown: t = 2^40 costs two short powers.
    t = 2**40
    y = canonical(pow(X, pow(2, t, LAMBDA), N), N)
    index, prime = find_prime(X, y, t, N)
    proof = canonical(pow(X, (pow(2, t, prime * LAMBDA) // prime), N), N)
    check_time_proof(DIGEST, y, proof, index, t, N)


def test_group_elements_encode_to_fixed_length_and_decode_with_range_checks() -> None:
    assert encode_group_element(2, RSA_2048) == bytes(255) + b"\x02"
    assert len(encode_group_element(2, N)) == 128
    assert decode_group_element(encode_group_element(Y, N), N) == Y
    for bad in (0, 1, N - 1, (N - 1) // 2 + 1):
        with pytest.raises(TimeProofInvalid):
            decode_group_element(encode_group_element(bad, N), N)
    for wrong_length in (bytes(127), bytes(129), b""):
        with pytest.raises(TimeProofInvalid):
            decode_group_element(wrong_length, N)
    for out in (-1, N, N + 1):
        with pytest.raises(ValueError):
            encode_group_element(out, N)


def test_a_t_or_modulus_the_verifier_cannot_mean_is_a_value_error() -> None:
    for t in (PRIME_BITS - 1, 0, -1, 2**64):
        with pytest.raises(ValueError):
            evaluate(X, t, N)
        with pytest.raises(ValueError):
            check_time_proof(DIGEST, Y, PROOF, INDEX, t, N)
    for modulus in (N + 1, 2**255 - 1, 0):
        with pytest.raises(ValueError):
            check_time_proof(DIGEST, Y, PROOF, INDEX, T, modulus)
    with pytest.raises(ValueError):
        evaluate(N - X, T, N)  # not canonical


def _prime_indices(x: int, y: int, t: int, count: int) -> list[int]:
    return [i for i in range(PRIME_INDEX_LIMIT) if prime_at(x, y, t, N, i)][:count]


def test_the_prime_index_names_the_first_prime_and_is_checked() -> None:
    first, second = _prime_indices(X, Y, T, 2)
    assert first == INDEX
    assert all(prime_at(X, Y, T, N, i) is None for i in range(first))
    # An index whose candidate is composite names no prime: refused before any power.
    assert first > 0 or second > 1
    composite = next(i for i in range(second) if i != first)
    error = refused(DIGEST, Y, PROOF, index=composite)
    assert error.details["field"] == "prime index"
    # Out of range, or not an integer.
    for bad in (-1, PRIME_INDEX_LIMIT, True, 1.0, "0"):
        assert refused(DIGEST, Y, PROOF, index=bad).details["field"] == "prime index"


def test_a_later_prime_verifies_with_its_own_proof_only() -> None:
    # Any prime index is accepted (see vdf.py, "The prime"), each with the proof for
    # its prime; the first prime's proof does not verify under another prime.
    second = _prime_indices(X, Y, T, 2)[1]
    prime = prime_at(X, Y, T, N, second)
    assert prime is not None
    proof = canonical(pow(X, 2**T // prime, N), N)
    check_time_proof(DIGEST, Y, proof, second, T, N)
    refused(DIGEST, Y, PROOF, index=second)
    refused(DIGEST, Y, proof, index=INDEX)
