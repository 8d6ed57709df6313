"""RFC 9162 §2.1 Merkle Tree Hash, audit paths and consistency proofs.

Hashing: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right),
empty tree = SHA-256(""). Proof *generation* never sees the leaves: it is given
``node(level, index)``, the hash of the complete subtree covering leaves
``[index * 2**level, (index + 1) * 2**level)``. The RFC recursions (§2.1.3.1
PATH, §2.1.4.1 SUBPROOF) only ask for MTH(D[a:b]) where ``a`` is a multiple of
a power of two >= b - a; such a range is a descending run of complete subtrees
(``range_hash``), so a proof costs O(log n) node look-ups, and a tiled store
answers each from one tile. Proofs are returned in RFC order (leaf-most first).

Verification implements §2.1.3.2 and §2.1.4.2 exactly and raises ``ProofError``
saying what failed. Extensions beyond the RFC (which assumes 0 < first < second):
a consistency proof from size 0, or between equal sizes, is the empty list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from .errors import IndexOutOfRange, ProofError, TreeSizeOutOfRange

NodeHash = Callable[[int, int], bytes]
"""``node(level, index)`` -> hash of the complete subtree [index << level, (index+1) << level)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, folding complete subtrees bottom-up (O(n))."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # an odd right node is promoted unchanged (RFC split)
        level = nxt
    return level[0]


def root_from_leaves(leaves: Sequence[bytes]) -> bytes:
    return root_from_leaf_hashes([leaf_hash(d) for d in leaves])


def complete_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Decompose [start, end) left to right into maximal aligned complete subtrees."""
    out = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length()
        while start + (1 << level) > end:
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def range_hash(node: NodeHash, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range the RFC recursions produce (see module doc)."""
    if start >= end:
        return EMPTY_ROOT
    parts = [node(level, index) for level, index in complete_subtrees(start, end)]
    acc = parts[-1]
    for h in reversed(parts[:-1]):
        acc = node_hash(h, acc)
    return acc


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(node: NodeHash, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size])."""
    if not 0 <= index < size:
        raise IndexOutOfRange(f"leaf index {index} is not in a tree of size {size}")
    path = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(range_hash(node, start + k, end))
            end = start + k
        else:
            path.append(range_hash(node, start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(node: NodeHash, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(size1, D[0:size2])."""
    if not 0 <= size1 <= size2:
        raise TreeSizeOutOfRange(f"no consistency proof from size {size1} to size {size2}")
    if size1 in (0, size2):
        return []
    proof = []
    start, end, m, complete = 0, size2, size1, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(range_hash(node, start + k, end))
            end = start + k
        else:
            proof.append(range_hash(node, start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        proof.append(range_hash(node, start, end))
    proof.reverse()
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2; ``leaf`` is the leaf *hash*. Raises ``ProofError``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root hash")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. Raises ``ProofError``."""
    if not 0 <= size1 <= size2:
        raise ProofError(f"sizes {size1} and {size2} are not increasing")
    if size1 == 0 or size1 == size2:
        if proof:
            raise ProofError("a proof from the empty tree or to the same size is empty")
        if size1 == size2 and root1 != root2:
            raise ProofError("two tree heads of the same size have different roots")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the tree is deep")
    if fr != root1:
        raise ProofError("consistency proof does not lead to the first root")
    if sr != root2:
        raise ProofError("consistency proof does not lead to the second root")
