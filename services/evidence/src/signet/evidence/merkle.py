"""RFC 9162 (RFC 6962) Merkle tree hashing, proofs and their verification.

Pure functions on bytes, no storage and no I/O, so the offline verifier uses exactly the
code the log proves with. Notation follows RFC 9162 section 2.1: ``MTH(D[n])`` is the
tree hash of ``n`` leaves, ``leaf_hash(d) = SHA-256(0x00 || d)``,
``node_hash(l, r) = SHA-256(0x01 || l || r)``.

Proofs are built from *range hashes*: every hash in an audit path or consistency proof is
``MTH(D[a:b])`` for a range ``[a, b)`` that starts on a multiple of the largest power of two
below ``b - a``. Such a range splits into complete, aligned subtrees (:func:`range_nodes`),
which a log can store once and fetch by ``(level, index)`` instead of reading every leaf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeKey = tuple[int, int]
"""A complete subtree ``(level, index)``: leaves ``[index * 2**level, (index + 1) * 2**level)``."""


class ProofError(ValueError):
    """A proof does not verify (wrong length, wrong hashes, impossible sizes)."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one log entry."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an interior node."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeKey]:
    """The complete subtrees whose right fold is ``MTH(D[start:end])``, left to right.

    ``start`` must be a multiple of ``split_point(end - start)`` (true of every range a
    proof uses); the subtrees are then the binary decomposition of ``end - start``.
    """
    if not 0 <= start < end:
        raise ValueError("empty or negative range")
    nodes: list[NodeKey] = []
    position = start
    remaining = end - start
    while remaining:
        level = remaining.bit_length() - 1
        size = 1 << level
        if position % size:
            raise ValueError("range is not aligned to its subtrees")
        nodes.append((level, position >> level))
        position += size
        remaining -= size
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Right fold of subtree hashes: ``node(h0, node(h1, ... node(hk-1, hk)))``."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for value in reversed(hashes[:-1]):
        acc = node_hash(value, acc)
    return acc


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH`` of a whole list of leaf hashes (linear time, for small trees and tests)."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    # Pairwise reduction keeps every complete subtree's shape; a lone right-most node is
    # carried up unchanged, which is exactly RFC 9162's split at the largest power of two.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form ``PATH(index, D[size])``, leaf level first."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    # Walk down from the root; record the sibling at each split, then reverse.
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo = lo + k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The ranges whose hashes form ``PROOF(first, D[second])`` (RFC 9162 2.1.4.1)."""
    if not 0 < first <= second:
        raise ValueError("consistency needs 0 < first <= second")
    if first == second:
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, second, first, True
    # SUBPROOF(m, D[lo:hi], b) unrolled; the recorded hashes come out root first.
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                ranges.append((lo, hi))
            break
        k = split_point(n)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    ranges.reverse()
    return ranges


def nodes_for(ranges: Sequence[tuple[int, int]]) -> set[NodeKey]:
    """Every stored subtree the hashes of ``ranges`` need."""
    return {key for a, b in ranges for key in range_nodes(a, b)}


def hash_ranges(ranges: Sequence[tuple[int, int]], nodes: Mapping[NodeKey, bytes]) -> list[bytes]:
    """The hashes of ``ranges`` from the subtree hashes ``nodes`` (KeyError if one is missing)."""
    return [fold([nodes[key] for key in range_nodes(a, b)]) for a, b in ranges]


def inclusion_proof(index: int, size: int, node: Callable[[NodeKey], bytes]) -> list[bytes]:
    """``PATH(index, D[size])`` with subtree hashes from ``node`` (tests and small trees)."""
    ranges = inclusion_ranges(index, size)
    return hash_ranges(ranges, {key: node(key) for key in nodes_for(ranges)})


def consistency_proof(first: int, second: int, node: Callable[[NodeKey], bytes]) -> list[bytes]:
    """``PROOF(first, D[second])`` with subtree hashes from ``node``."""
    ranges = consistency_ranges(first, second)
    return hash_ranges(ranges, {key: node(key) for key in nodes_for(ranges)})


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an audit path leads to (RFC 9162 2.1.3.2); ProofError when it cannot."""
    if not 0 <= index < size:
        raise ProofError("leaf index outside the tree")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless ``proof`` shows leaf ``index`` in the tree ``(size, root)``."""
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError("the inclusion proof does not lead to the tree head's root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless ``proof`` shows tree ``first`` is a prefix of tree ``second``.

    RFC 9162 section 2.1.4.2. ``first == 0`` is trivially consistent with an empty proof.
    """
    if first < 0 or second < first:
        raise ProofError("consistency needs 0 <= first <= second")
    if any(len(p) != HASH_SIZE for p in proof):
        raise ProofError("hashes must be 32 bytes")
    if first == 0:
        if proof:
            raise ProofError("a proof from the empty tree must be empty")
        return
    if first == second:
        if proof:
            raise ProofError("a proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("equal sizes with different roots")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    if first & (first - 1) == 0:
        # first is a power of two: its root is the first node of the path.
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the proof is longer than the trees need")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is shorter than the trees need")
    if fr != first_root:
        raise ProofError("the proof does not lead to the first root")
    if sr != second_root:
        raise ProofError("the proof does not lead to the second root")


def compact_range(size: int) -> list[NodeKey]:
    """The complete subtrees covering ``[0, size)``, largest first (the log's right border)."""
    return range_nodes(0, size) if size else []


def new_nodes(
    start: int, border: Mapping[NodeKey, bytes], leaves: Sequence[bytes]
) -> dict[NodeKey, bytes]:
    """Subtree hashes completed by appending ``leaves`` at index ``start``.

    ``border`` holds the hashes of :func:`compact_range(start) <compact_range>`. The result
    holds every new complete subtree (the leaves at level 0 included), so the new root is
    ``fold`` over :func:`compact_range` of the new size taken from border and result.
    """
    known: dict[NodeKey, bytes] = dict(border)
    created: dict[NodeKey, bytes] = {}
    for offset, value in enumerate(leaves):
        level, index = 0, start + offset
        created[(level, index)] = value
        known[(level, index)] = value
        # A right child completes its parent; keep climbing while that holds.
        while index & 1:
            parent = node_hash(known[(level, index - 1)], known[(level, index)])
            level, index = level + 1, index >> 1
            created[(level, index)] = parent
            known[(level, index)] = parent
    return created
