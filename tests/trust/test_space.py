"""PoSpace: an honest answer to a challenge passes; any block, path, index set, asset,
challenge or commitment that is not the one asked for fails with SpaceProofInvalid;
indices are deterministic, distinct, in range and unbiased; JSON is checked strictly.

Plots use the small default parameters (scrypt N = 16): a few hundred blocks plot in
tens of milliseconds."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustchain.actors.ct import merkle
from trustchain.actors.trust import formats, space
from trustchain.actors.trust.errors import SpaceProofInvalid
from trustchain.actors.trust.space import (
    Opening,
    Plot,
    SpaceParams,
    SpaceProof,
    answer_challenge,
    challenge_indices,
    check_space,
    compute_block,
)

from .strategies import json_values

PARAMS = SpaceParams()
ASSET = bytes(range(32))
OTHER_ASSET = bytes(range(1, 33))
N = 300  # not a power of two: the tree has a ragged right edge
K = 8
CHALLENGE = b"validator challenge 0001"
OTHER_CHALLENGE = b"validator challenge 0002"


@pytest.fixture(scope="module")
def plot() -> Plot:
    return space.plot(ASSET, N, PARAMS)


@pytest.fixture(scope="module")
def proof(plot: Plot) -> SpaceProof:
    return answer_challenge(plot, CHALLENGE, K)


def refused(proof: SpaceProof, match: str, **kw: Any) -> None:
    args: dict[str, Any] = {"asset_key": ASSET, "challenge": CHALLENGE, "k": K, "params": PARAMS}
    with pytest.raises(SpaceProofInvalid, match=match) as e:
        check_space(proof, **{**args, **kw})
    assert e.value.code == "space_proof_invalid"


def with_opening(proof: SpaceProof, i: int, **changes: Any) -> SpaceProof:
    openings = list(proof.openings)
    openings[i] = dataclasses.replace(openings[i], **changes)
    return dataclasses.replace(proof, openings=tuple(openings))


def test_an_honest_answer_passes(plot: Plot, proof: SpaceProof) -> None:
    check_space(proof, ASSET, CHALLENGE, K, PARAMS)
    assert proof.commitment == plot.root and proof.n == N
    assert [o.index for o in proof.openings] == challenge_indices(CHALLENGE, plot.root, N, K)


def test_the_commitment_is_the_rfc_9162_root_of_the_blocks(plot: Plot) -> None:
    assert plot.root == merkle.root_from_leaves(plot.blocks)
    assert plot.blocks[5] == compute_block(ASSET, 5, PARAMS)


@pytest.mark.parametrize("n", [*range(1, 18), 31, 32, 33, 100])
def test_every_block_of_a_plot_has_a_path_to_its_root(n: int) -> None:
    blocks = [bytes([i % 256, i // 256]) for i in range(n)]
    plot = Plot(blocks)
    assert plot.root == merkle.root_from_leaves(blocks)
    for i, block in enumerate(blocks):
        merkle.verify_inclusion(merkle.leaf_hash(block), i, n, plot.path(i), plot.root)


def test_a_block_binds_the_asset_the_index_and_the_parameters() -> None:
    block = compute_block(ASSET, 3, PARAMS)
    assert len(block) == PARAMS.block_size
    assert block != compute_block(OTHER_ASSET, 3, PARAMS)
    assert block != compute_block(ASSET, 4, PARAMS)
    assert block != compute_block(ASSET, 3, SpaceParams(cost=32))


def test_a_tampered_block_fails(proof: SpaceProof) -> None:
    block = bytearray(proof.openings[2].block)
    block[0] ^= 1
    refused(with_opening(proof, 2, block=bytes(block)), "not included under the commitment")


def test_a_block_of_the_wrong_size_fails(proof: SpaceProof) -> None:
    refused(with_opening(proof, 0, block=proof.openings[0].block[:-1]), "octets")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p: (p[0][:-1] + bytes([p[0][-1] ^ 1]), *p[1:]),  # a hash changed
        lambda p: p[:-1],  # a hash missing
        lambda p: (*p, bytes(32)),  # a hash too many
        lambda p: tuple(reversed(p)),  # hashes out of order
    ],
)
def test_a_tampered_path_fails(proof: SpaceProof, tamper: Any) -> None:
    path = tamper(proof.openings[1].path)
    refused(with_opening(proof, 1, path=path), "not included under the commitment")


def test_openings_at_other_indices_fail(plot: Plot, proof: SpaceProof) -> None:
    wanted = [o.index for o in proof.openings]
    others = [i for i in range(N) if i not in wanted][:K]
    refused(space.open(plot, others), "other blocks than the challenge")
    refused(space.open(plot, [*wanted[:-1], others[0]]), "other blocks than the challenge")
    refused(space.open(plot, list(reversed(wanted))), "other blocks than the challenge")
    refused(space.open(plot, [*wanted[:-1], wanted[0]]), "other blocks than the challenge")


def test_a_proof_for_another_asset_fails(proof: SpaceProof) -> None:
    refused(proof, "not asset " + OTHER_ASSET.hex(), asset_key=OTHER_ASSET)


def test_a_proof_for_another_challenge_fails(proof: SpaceProof) -> None:
    refused(proof, "other blocks than the challenge", challenge=OTHER_CHALLENGE)


def test_a_commitment_over_other_blocks_fails(plot: Plot) -> None:
    """Well-formed Merkle openings of blocks that are not the asset's: the commitment is
    honest about the blocks, the blocks are wrong."""
    garbage = Plot([os.urandom(PARAMS.block_size) for _ in range(N)])
    refused(answer_challenge(garbage, CHALLENGE, K), "not asset")
    # The asset's blocks but one: caught when the challenge lands on it (k / n of the time).
    for wrong in range(N):
        blocks = list(plot.blocks)
        blocks[wrong] = bytes(PARAMS.block_size)
        mixed = Plot(blocks)
        if wrong in challenge_indices(CHALLENGE, mixed.root, N, K):
            refused(answer_challenge(mixed, CHALLENGE, K), f"block {wrong} is not asset")
            break
    else:
        raise AssertionError("no challenge landed on the wrong block")


def test_another_plots_commitment_fails(proof: SpaceProof) -> None:
    other = space.plot(ASSET, N - 1, PARAMS)
    refused(dataclasses.replace(proof, commitment=other.root), "other blocks|not included")


def test_a_proof_opening_fewer_blocks_than_asked_fails(plot: Plot) -> None:
    """The first k' < k indices of a challenge are those of k', so a proof for k' is a
    prefix of the one asked for: its count alone gives it away."""
    short = answer_challenge(plot, CHALLENGE, K // 2)
    assert [o.index for o in short.openings] == challenge_indices(CHALLENGE, plot.root, N, K)[:4]
    refused(short, f"opens {K // 2} blocks; the challenge asks for {K}")
    refused(answer_challenge(plot, CHALLENGE, K + 1), f"opens {K + 1} blocks")


def test_a_plot_below_the_minimum_size_fails(proof: SpaceProof) -> None:
    refused(proof, f"minimum is {N + 1}", params=SpaceParams(min_blocks=N + 1))
    small = space.plot(ASSET, 16, PARAMS)
    refused(answer_challenge(small, CHALLENGE, 16), "cannot open 17", k=17)


def test_other_parameters_than_the_plots_fail(proof: SpaceProof) -> None:
    refused(proof, "not asset", params=SpaceParams(cost=32))
    refused(proof, "octets", params=SpaceParams(block_size=512))


def test_parameters_refuse_blocks_longer_than_scrypts_state() -> None:
    with pytest.raises(ValueError, match="1024"):
        SpaceParams(block_size=1025)
    with pytest.raises(ValueError, match="power of two"):
        SpaceParams(cost=24)
    with pytest.raises(ValueError):
        space.plot(ASSET, 15, PARAMS)  # below min_blocks


# Indices ---------------------------------------------------------------------------------


@given(st.binary(max_size=40), st.binary(min_size=32, max_size=32), st.integers(1, 2**40))
def test_indices_are_deterministic_distinct_and_in_range(
    challenge: bytes, commitment: bytes, n: int
) -> None:
    k = min(n, 16)
    indices = challenge_indices(challenge, commitment, n, k)
    assert indices == challenge_indices(challenge, commitment, n, k)
    assert len(indices) == k == len(set(indices))
    assert all(0 <= i < n for i in indices)


def test_all_blocks_of_a_small_plot_can_be_asked_for() -> None:
    assert sorted(challenge_indices(b"c", bytes(32), 5, 5)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        challenge_indices(b"c", bytes(32), 5, 6)
    with pytest.raises(ValueError):
        challenge_indices(b"c", bytes(32), 5, 0)


@given(st.binary(max_size=40), st.binary(max_size=40), st.binary(min_size=32, max_size=32))
def test_distinct_challenges_or_commitments_give_different_indices(
    a: bytes, b: bytes, commitment: bytes
) -> None:
    n, k = 2**30, 8
    if a != b:
        assert challenge_indices(a, commitment, n, k) != challenge_indices(b, commitment, n, k)
    other = bytes([commitment[0] ^ 1]) + commitment[1:]
    assert challenge_indices(a, commitment, n, k) != challenge_indices(a, other, n, k)


def test_indices_are_spread_evenly_over_a_small_plot() -> None:
    """Chi-squared over 10 indices, 5,000 deterministic challenges (9 degrees of
    freedom: 27.9 is the 0.1 % critical value)."""
    n, draws = 10, 5000
    counts = Counter(
        challenge_indices(i.to_bytes(4, "big"), bytes(32), n, 1)[0] for i in range(draws)
    )
    expected = draws / n
    assert sum((counts[i] - expected) ** 2 / expected for i in range(n)) < 27.9


def test_no_modulo_bias_where_it_would_show() -> None:
    """With n = 2/3 of 2^256, taking draws mod n would put two thirds of the indices in
    the lower half of the range; rejection sampling puts half there."""
    n = (1 << 257) // 3
    lower = sum(
        challenge_indices(i.to_bytes(4, "big"), bytes(32), n, 1)[0] < n // 2 for i in range(3000)
    )
    assert 0.45 < lower / 3000 < 0.55


def test_a_draw_in_the_biased_tail_is_rejected() -> None:
    n = 3
    limit = (1 << 256) - (1 << 256) % n
    tail = (limit).to_bytes(32, "big")  # the first value rejection sampling refuses
    last = (limit - 1).to_bytes(32, "big")
    assert list(space._uniform_below(n, iter([tail, last, tail]))) == [(limit - 1) % n]


def test_indices_follow_the_documented_derivation() -> None:
    n = 1000
    expected = []
    for j in range(3):
        draw = hashlib.sha256(formats.SPACE_CHALLENGE + formats.frame(b"c", bytes(32), j)).digest()
        expected.append(int.from_bytes(draw, "big") % n)  # rejection is ~2^-246 likely here
    assert challenge_indices(b"c", bytes(32), n, 3) == expected


# JSON ------------------------------------------------------------------------------------


def test_a_proof_round_trips_through_json(proof: SpaceProof) -> None:
    text = json.dumps(proof.to_json())
    again = SpaceProof.from_json(json.loads(text))
    assert again == proof
    check_space(again, ASSET, CHALLENGE, K, PARAMS)


def _good(proof: SpaceProof) -> dict[str, Any]:
    return json.loads(json.dumps(proof.to_json()))


_MISSING = object()

MALFORMED: list[tuple[tuple[Any, ...], object]] = [
    (("commitment",), _MISSING),
    (("n",), _MISSING),
    (("openings",), _MISSING),
    (("extra",), 1),
    (("commitment",), "00" * 31),
    (("commitment",), "00" * 33),
    (("commitment",), "AB" * 32),
    (("commitment",), 5),
    (("n",), "300"),
    (("n",), 300.0),
    (("n",), True),
    (("n",), 0),
    (("n",), -1),
    (("n",), 2**40 + 1),
    (("n",), 10**4000),
    (("n",), 5),  # an opening's index is then outside the plot
    (("openings",), {}),
    (("openings",), [None]),
    (("openings",), [{}] * 5000),
    (("openings", 0, "index"), _MISSING),
    (("openings", 0, "index"), "1"),
    (("openings", 0, "index"), -1),
    (("openings", 0, "index"), 2**64),
    (("openings", 0, "block"), ""),
    (("openings", 0, "block"), "0"),
    (("openings", 0, "block"), "00" * 1025),
    (("openings", 0, "block"), None),
    (("openings", 0, "path"), "00" * 32),
    (("openings", 0, "path"), ["00" * 31]),
    (("openings", 0, "path"), ["00" * 32] * 41),
    (("openings", 0, "path"), [32]),
    (("openings", 0, "extra"), []),
]


@pytest.mark.parametrize(("path", "value"), MALFORMED)
def test_malformed_json_is_refused_with_space_proof_invalid(
    proof: SpaceProof, path: tuple[Any, ...], value: object
) -> None:
    obj = _good(proof)
    target: Any = obj
    for key in path[:-1]:
        target = target[key]
    if value is _MISSING:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(SpaceProofInvalid) as e:
        SpaceProof.from_json(obj)
    assert e.value.code == "space_proof_invalid"


@given(json_values)
def test_any_json_is_a_proof_or_space_proof_invalid(obj: object) -> None:
    try:
        SpaceProof.from_json(obj)
    except SpaceProofInvalid:
        pass


@given(
    st.fixed_dictionaries(
        {
            "commitment": st.sampled_from(["00" * 32, "0" * 64, "ff" * 31, ""]),
            "n": st.integers(-2, 2**41),
            "openings": st.lists(
                st.fixed_dictionaries(
                    {
                        "index": st.integers(-2, 2**41),
                        "block": st.sampled_from(["", "00", "00" * 1024, "0g"]),
                        "path": st.lists(st.sampled_from(["11" * 32, "11"]), max_size=3),
                    }
                ),
                max_size=3,
            ),
        }
    )
)
def test_near_miss_proofs_are_a_proof_or_space_proof_invalid(obj: dict[str, Any]) -> None:
    try:
        parsed = SpaceProof.from_json(obj)
    except SpaceProofInvalid:
        return
    assert parsed.to_json() == obj
    assert all(isinstance(o, Opening) for o in parsed.openings)
