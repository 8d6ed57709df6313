"""PoTime: a Wesolowski verifiable delay function over the request digest.

Wesolowski, "Efficient verifiable delay functions" (EUROCRYPT 2019; J. Cryptology
2020), in an RSA group as surveyed by Boneh, Bünz and Fisch, "A Survey of Two
Verifiable Delay Functions" (ePrint 2018/712):

    x = vdf_input(request digest)      hashed into the group (below)
    y = x^(2^t)                        t sequential squarings: the delay
    l = hash_to_prime(N, x, y, t)      a 256-bit prime, Fiat-Shamir; its index i
    π = x^floor(2^t / l)               the proof, about as costly as y again
    accept iff π^l · x^(2^t mod l) = y    two 256-bit exponentiations: O(log t)
    (the proof is (y, π, i): the verifier hashes once for l, see "The prime")

The group is Z_N^*/{±1}: every element is written by its canonical representative
min(v, N - v), in 2..(N-1)/2 (1 is the identity). Working modulo ±1 follows the
survey's advice for RSA groups, because -1 is an element of known order 2 in
Z_N^*: there, from an honest (y, π) anyone gets (-y, -π), which verifies for an
output that is not x^(2^t) (l is odd). Here -y *is* y, and a value that is not
canonical (N - y, N - π, 0, 1, N - 1, N and above, negative) is refused, so each
digest and t have exactly one accepted output.

The input: SHA-256(VDF_INPUT || digest || i (8 octets)) for i = 0, 1, ... gives
at least bits(N) + 128 bits (9 blocks for RSA-2048), reduced mod N (so within
2^-128 of uniform), then squared:
x = |u^2 mod N|, a quadratic residue. Squaring keeps x away from the elements of
small order anyone knows (0, 1, N-1 all land on 0 or 1, which are skipped by
moving on to the next blocks) and puts it in the subgroup of squares, which is
what the low-order and adaptive-root assumptions are stated for.

The prime: the prover takes for l the first candidate SHA-256(VDF_PRIME || frame(N, x,
y, t) || i (8 octets)), top bit and low bit set, that is prime, for i = 0, 1, ...
(about 90 candidates on average), and sends its index i with the proof; the
verifier hashes that one candidate and tests it, instead of searching again (the
search was 0.28-0.35 ms of a 1.2-1.8 ms request check, per validator). Any index
below ``PRIME_INDEX_LIMIT`` whose candidate is prime is accepted, not only the first:
that gives a cheating prover nothing that hashing does not give it already. Each
(x, y, i) it tries is one more random-oracle query answered by a fresh random prime,
exactly as each other output y it might try is, and Fiat-Shamir's soundness is
counted in such queries. y stays unique for a digest and t (the replay guard keys on
it); π is unique for (y, i).

What a valid proof shows: that whoever made it performed t squarings one after
another in Z_N (or knows N's factors, which turn 2^t into 2^t mod λ(N) and make
it instant). It says nothing about wall time: t squarings take a second on one
machine and less on faster hardware (an ASIC is the known risk); nor that the
work was done recently, or by the asset; replay is the store's business. The
modulus must be of unknown factorisation: the default, RSA_2048, is the RSA
Factoring Challenge's 2048-bit number, whose factors nobody is known to hold
(RSA Laboratories made it on an offline machine whose disk, they state, was
then destroyed).
"""

from __future__ import annotations

import hashlib
from typing import Any

import gmpy2

from trustchain.actors.trust import bignum, formats
from trustchain.actors.trust.errors import TimeProofInvalid

# RSA-2048 from the RSA Factoring Challenge (1991): 617 decimal digits, 2048 bits,
# unfactored. Digits checked against four public copies (among them Zerocoin's
# parameters), which agree digit for digit; tests/trust/test_vdf.py checks its size.
RSA_2048 = int(
    "25195908475657893494027183240048398571429282126204032027777137836043662020707595"
    "55626401852588078440691829064124951508218929855914917618450280848912007284499268"
    "73928072877767359714183472702618963750149718246911650776133798590957000973304597"
    "48808428401797429100642458691817195118746121515172654632282216869987549182422433"
    "63725908514186546204357679842338718477444792073993423658482382428119816381501067"
    "48104516603773060562016196762561338441436038339044149526344321901146575444541784"
    "24020924616515723350778707749817125772467962926386356373289912154831438167899885"
    "040445364023527381951378636564391212010397122822120720357"
)

PRIME_BITS = 256  # l: 2λ bits for λ = 128, the usual size for 128-bit security
# gmpy2.is_prime(c, 24): GMP (6.2 and later; the wheel's is 6.3) runs trial division
# then the Baillie-PSW test, and reps - 24 Miller-Rabin rounds on top: none with 24.
# No composite is known to pass BPSW, and none below 2^64 does; the 16 extra rounds of
# reps = 40 cost a verification 0.19 ms (mean, 300 statements: 0.54 -> 0.35 ms for
# hash_to_prime) and picked the same prime for every statement tried. A prover using
# 40 rounds derives the same l (it could differ only at a BPSW pseudoprime).
PRIME_TEST_ROUNDS = 24
# The verifier accepts a prime's index below this (8 octets on the wire, as hashed):
# the chance that none of the first 2^16 candidates is prime is about e^-739.
PRIME_INDEX_LIMIT = 2**16
MIN_T = PRIME_BITS  # for smaller t, 2^t < l: the quotient is 0 and π is always 1
MAX_T = 2**64 - 1  # t is framed in 8 octets
_HASH_MARGIN_BITS = 128  # extra input bits: u mod N is 2^-128-close to uniform
_MIN_MODULUS_BITS = 256


def _check_modulus(modulus: int) -> None:
    if modulus.bit_length() < _MIN_MODULUS_BITS or modulus % 2 == 0:
        raise ValueError(f"a VDF modulus is an odd number of {_MIN_MODULUS_BITS}+ bits")


def _check_t(t: int) -> None:
    if not MIN_T <= t <= MAX_T:
        raise ValueError(f"the VDF's t (squarings) must be {MIN_T}..2^64-1, not {t}")


def element_bytes(modulus: int) -> int:
    """How many octets a group element takes on the wire: 256 for a 2048-bit N."""
    return (modulus.bit_length() + 7) // 8


def canonical(v: int, modulus: int) -> int:
    """The representative of v's class {v, N - v} in Z_N^*/{±1}: the smaller one."""
    v %= modulus
    return min(v, modulus - v)


def _is_canonical(v: object, modulus: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= (modulus - 1) // 2


def encode_group_element(v: int, modulus: int) -> bytes:
    """v as a fixed-length big-endian octet string (``element_bytes(modulus)`` octets)."""
    if not 0 <= v < modulus:
        raise ValueError("a group element is in 0..N-1")
    return v.to_bytes(element_bytes(modulus), "big")


def decode_group_element(data: bytes, modulus: int) -> int:
    """The element ``data`` encodes; TimeProofInvalid unless it is exactly
    ``element_bytes(modulus)`` octets spelling a canonical element (2..(N-1)/2)."""
    size = element_bytes(modulus)
    if len(data) != size:
        raise TimeProofInvalid(
            f"a group element is {size} octets, not {len(data)}", octets=len(data)
        )
    v = int.from_bytes(data, "big")
    if not _is_canonical(v, modulus):
        raise TimeProofInvalid("a group element must be canonical: 2 <= v <= (N-1)/2")
    return v


def vdf_input(digest: bytes, modulus: int) -> int:
    """x: the request digest hashed into the group's squares (see the module's theory)."""
    if len(digest) != formats.DIGEST_BYTES:
        raise ValueError(f"a request digest is {formats.DIGEST_BYTES} octets, not {len(digest)}")
    _check_modulus(modulus)
    blocks = -(-(modulus.bit_length() + _HASH_MARGIN_BITS) // 256)
    counter = 0
    while True:
        stream = b"".join(
            hashlib.sha256(formats.VDF_INPUT + digest + (counter + i).to_bytes(8, "big")).digest()
            for i in range(blocks)
        )
        counter += blocks
        u = int.from_bytes(stream, "big") % modulus
        x = canonical(int(gmpy2.powmod(u, 2, modulus)), modulus)
        if x > 1 and gmpy2.gcd(u, modulus) == 1:  # else u was 0, ±1 or a factor's multiple
            return x


def _prime_prefix(x: int, y: int, t: int, modulus: int) -> Any:
    """SHA-256 over VDF_PRIME || frame(N, x, y, t): each candidate hashes on from it."""
    _check_modulus(modulus)
    statement = formats.VDF_PRIME + formats.frame(
        modulus.to_bytes(element_bytes(modulus), "big"),
        encode_group_element(x, modulus),
        encode_group_element(y, modulus),
        t,
    )
    return hashlib.sha256(statement)


def _candidate(prefix: Any, index: int) -> int:
    h = prefix.copy()
    h.update(index.to_bytes(8, "big"))
    return int.from_bytes(h.digest(), "big") | (1 << (PRIME_BITS - 1)) | 1


def find_prime(x: int, y: int, t: int, modulus: int) -> tuple[int, int]:
    """(i, l): the first index whose candidate passes ``gmpy2.is_prime(c, 24)`` (BPSW),
    and that 256-bit prime (top bit set). What the prover does (see "The prime").

    Hashing N and x as well as y and t binds l to the whole statement (strong
    Fiat-Shamir). Deterministic; about 90 candidates are tried on average.
    """
    prefix = _prime_prefix(x, y, t, modulus)  # the statement is hashed once
    for index in range(PRIME_INDEX_LIMIT):
        candidate = _candidate(prefix, index)
        if gmpy2.is_prime(candidate, PRIME_TEST_ROUNDS):
            return index, candidate
    raise AssertionError("unreachable: primes of 256 bits are dense")  # pragma: no cover


def hash_to_prime(x: int, y: int, t: int, modulus: int) -> int:
    """l: the first prime of ``find_prime``."""
    return find_prime(x, y, t, modulus)[1]


def prime_at(x: int, y: int, t: int, modulus: int, index: int) -> int | None:
    """The verifier's side: the candidate at ``index`` if it is prime, else None."""
    candidate = _candidate(_prime_prefix(x, y, t, modulus), index)
    return candidate if gmpy2.is_prime(candidate, PRIME_TEST_ROUNDS) else None


def evaluate(x: int, t: int, modulus: int) -> tuple[int, int, int]:
    """(y, π, i) for input x: y = x^(2^t) by t squarings, π = x^floor(2^t / l), and
    the index i of the prime l (``find_prime``).

    Costs about 2t modular squarings (t for y, t - 256 plus a window's
    multiplications for π). x must be canonical (``vdf_input`` gives one).
    """
    _check_modulus(modulus)
    _check_t(t)
    if not _is_canonical(x, modulus):
        raise ValueError("the VDF input must be canonical: 2 <= x <= (N-1)/2")
    # powmod with the exponent 2^t is t squarings one after another: its only set
    # bit gives no window to skip with, and the group's order is unknown.
    y = canonical(bignum.powmod(x, 1 << t, modulus), modulus)
    index, prime = find_prime(x, y, t, modulus)
    proof = canonical(bignum.powmod(x, (1 << t) // prime, modulus), modulus)
    return y, proof, index


def check_time_proof(
    digest: bytes, y: int, proof: int, prime_index: int, t: int, modulus: int
) -> None:
    """Raise TimeProofInvalid unless (y, proof, prime_index) is the VDF of ``digest``
    for t squarings.

    ``t`` and ``modulus`` are the verifier's own (config): values it could not
    have meant are a ValueError. Costs one hash and primality test for l, and
    two exponentiations by 256-bit numbers, in one pass (``bignum.product_of_powers``).
    """
    _check_modulus(modulus)
    _check_t(t)
    if len(digest) != formats.DIGEST_BYTES:
        raise TimeProofInvalid(
            f"the request digest is {len(digest)} octets; PoTime binds a"
            f" {formats.DIGEST_BYTES}-octet digest",
            digest_octets=len(digest),
        )
    for name, value in (("output y", y), ("proof", proof)):
        if not _is_canonical(value, modulus):
            raise TimeProofInvalid(
                f"the PoTime {name} is not a canonical group element (2 <= v <= (N-1)/2)",
                field=name,
            )
    if (
        not isinstance(prime_index, int)
        or isinstance(prime_index, bool)
        or not 0 <= prime_index < PRIME_INDEX_LIMIT
    ):
        raise TimeProofInvalid(
            f"the PoTime prime index must be an integer 0..{PRIME_INDEX_LIMIT - 1}",
            field="prime index",
        )
    x = vdf_input(digest, modulus)
    prime = prime_at(x, y, t, modulus, prime_index)
    if prime is None:
        raise TimeProofInvalid(
            f"the PoTime prime index {prime_index} does not name a prime for this output;"
            " evaluate it again",
            field="prime index",
        )
    remainder = int(gmpy2.powmod(2, t, prime))
    seen = bignum.product_of_powers(proof, prime, x, remainder, modulus)
    if canonical(seen, modulus) != y:
        raise TimeProofInvalid(
            f"the PoTime proof does not verify: (y, proof) is not the VDF of this request's"
            f" digest for t = {t} squarings in this group; evaluate it again",
            t=t,
        )
