"""RFC 9162 hashing and proofs, checked against pymerkle as the reference."""

from __future__ import annotations

import random

import pytest
from pymerkle import InmemoryTree

from trustchain.actors.ct import merkle
from trustchain.actors.ct.errors import IndexOutOfRange, ProofError, TreeSizeOutOfRange


class NodeTable:
    """Every complete node of a list of leaf hashes: the reference node source."""

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        self.levels = [leaf_hashes]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(
                [merkle.node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    def __call__(self, level: int, index: int) -> bytes:
        return self.levels[level][index]


def build(count: int, seed: int) -> tuple[InmemoryTree, list[bytes], NodeTable]:
    rng = random.Random(seed)
    tree = InmemoryTree(algorithm="sha256")
    data = [rng.randbytes(rng.randint(0, 40)) for _ in range(count)]
    for d in data:
        tree.append_entry(d)
    hashes = [merkle.leaf_hash(d) for d in data]
    return tree, hashes, NodeTable(hashes)


@pytest.fixture(scope="module")
def small() -> tuple[InmemoryTree, list[bytes], NodeTable]:
    return build(1000, seed=7)


@pytest.fixture(scope="module")
def large() -> tuple[InmemoryTree, list[bytes], NodeTable]:
    return build(70_000, seed=8)


def test_hashing_uses_rfc9162_prefixes_and_empty_root() -> None:
    assert merkle.root_from_leaves([]) == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert merkle.leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_root_of_every_size_up_to_1000_matches_pymerkle(small) -> None:
    tree, hashes, nodes = small
    for size in range(1, 1001):
        expected = tree.get_root(size)
        assert merkle.range_hash(nodes, 0, size) == expected, size
    assert merkle.root_from_leaf_hashes(hashes[:777]) == tree.get_root(777)


def test_inclusion_paths_match_pymerkle_for_every_size_up_to_1000(small) -> None:
    tree, hashes, nodes = small
    rng = random.Random(11)
    for size in range(1, 1001):
        indices = {0, size - 1, *(rng.randrange(size) for _ in range(3))}
        root = tree.get_root(size)
        for index in indices:
            path = merkle.inclusion_proof(nodes, index, size)
            assert path == list(tree.prove_inclusion(index + 1, size).path[1:]), (index, size)
            merkle.verify_inclusion(hashes[index], index, size, path, root)


def test_roots_and_inclusion_paths_match_pymerkle_at_random_large_sizes(large) -> None:
    tree, hashes, nodes = large
    rng = random.Random(12)
    sizes = [256, 257, 65_535, 65_536, 65_537, 70_000] + [
        rng.randint(1001, 70_000) for _ in range(20)
    ]
    for size in sizes:
        root = tree.get_root(size)
        assert merkle.range_hash(nodes, 0, size) == root
        for index in {0, size - 1, rng.randrange(size), rng.randrange(size)}:
            path = merkle.inclusion_proof(nodes, index, size)
            assert path == list(tree.prove_inclusion(index + 1, size).path[1:])
            merkle.verify_inclusion(hashes[index], index, size, path, root)


def test_consistency_proofs_verify_for_all_small_pairs_and_random_large_ones(small, large) -> None:
    tree, _, nodes = small
    roots = {s: tree.get_root(s) for s in range(1, 101)}
    for size2 in range(1, 101):
        for size1 in range(1, size2 + 1):
            proof = merkle.consistency_proof(nodes, size1, size2)
            merkle.verify_consistency(size1, size2, roots[size1], roots[size2], proof)
    big_tree, _, big_nodes = large
    rng = random.Random(13)
    for _ in range(200):
        size2 = rng.randint(2, 70_000)
        size1 = rng.randint(1, size2)
        proof = merkle.consistency_proof(big_nodes, size1, size2)
        root1, root2 = big_tree.get_root(size1), big_tree.get_root(size2)
        merkle.verify_consistency(size1, size2, root1, root2, proof)


def _tamperings(proof: list[bytes]) -> list[list[bytes]]:
    out = [proof[:-1], [*proof, proof[-1]], [bytes(32), *proof]]
    for i in range(len(proof)):
        flipped = bytes([proof[i][0] ^ 1]) + proof[i][1:]
        out.append([*proof[:i], flipped, *proof[i + 1 :]])
    if len(proof) > 1:
        out.append(list(reversed(proof)))
    return [p for p in out if p != proof]


def test_tampered_consistency_proofs_fail(small) -> None:
    tree, _, nodes = small
    rng = random.Random(14)
    for _ in range(150):
        size2 = rng.randint(2, 1000)
        size1 = rng.randint(1, size2 - 1)
        proof = merkle.consistency_proof(nodes, size1, size2)
        root1, root2 = tree.get_root(size1), tree.get_root(size2)
        for bad in _tamperings(proof):
            with pytest.raises(ProofError):
                merkle.verify_consistency(size1, size2, root1, root2, bad)
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, root2, root1, proof)


def test_tampered_inclusion_proofs_fail(small) -> None:
    tree, hashes, nodes = small
    rng = random.Random(15)
    for _ in range(150):
        size = rng.randint(2, 1000)
        index = rng.randrange(size)
        path = merkle.inclusion_proof(nodes, index, size)
        root = tree.get_root(size)
        for bad in _tamperings(path):
            with pytest.raises(ProofError):
                merkle.verify_inclusion(hashes[index], index, size, bad, root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(hashes[index], index ^ 1, size, path, root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(bytes(32), index, size, path, root)


def test_degenerate_consistency_cases_are_empty_proofs(small) -> None:
    tree, _, nodes = small
    assert merkle.consistency_proof(nodes, 0, 10) == []
    assert merkle.consistency_proof(nodes, 10, 10) == []
    merkle.verify_consistency(0, 10, merkle.EMPTY_ROOT, tree.get_root(10), [])
    merkle.verify_consistency(10, 10, tree.get_root(10), tree.get_root(10), [])
    with pytest.raises(ProofError):
        merkle.verify_consistency(10, 10, tree.get_root(10), tree.get_root(9), [])
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 10, tree.get_root(3), tree.get_root(10), [])


def test_proof_requests_outside_the_tree_raise_typed_errors(small) -> None:
    _, _, nodes = small
    with pytest.raises(IndexOutOfRange):
        merkle.inclusion_proof(nodes, 5, 5)
    with pytest.raises(IndexOutOfRange):
        merkle.inclusion_proof(nodes, -1, 5)
    with pytest.raises(TreeSizeOutOfRange):
        merkle.consistency_proof(nodes, 6, 5)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(bytes(32), 5, 5, [], bytes(32))
    with pytest.raises(ProofError):
        merkle.verify_consistency(6, 5, bytes(32), bytes(32), [])
