"""Merkle hashing and proofs against published RFC 6962 vectors and the RFC's own recursion."""

from __future__ import annotations

import base64
import hashlib

import pytest

from signet.evidence import merkle

# The leaves of the Certificate Transparency reference tests (RFC 6962 test data, also in
# transparency-dev/merkle), and published roots and proofs for trees built from them.
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


def _b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


# (leaf index, tree size, proof) published as happy-path inclusion vectors.
CT_INCLUSION = [
    (
        1,
        5,
        [
            "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0=",
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
        ],
    ),
    (
        5,
        8,
        [
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
            "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
        ],
    ),
    (2, 3, ["+sVCA+fMaWzw38tCySodnbr3CtnmIfS9jZhmLwDjwSU="]),
]
# (first size, second size, proof) published as happy-path consistency vectors.
CT_CONSISTENCY = [
    (
        2,
        5,
        [
            "Xwg/ChozygdqlSeYMlgNs+DvRYS9/x9UyKNg9Q3jAx4=",
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
        ],
    ),
    (
        6,
        7,
        [
            "DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
            "sIaT7C5yFZcTBkHoIR5+7cy0wmQTlj7ubB4u0W/7Gl8=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
        ],
    ),
    (
        6,
        8,
        [
            "DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
            "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
        ],
    ),
]


# ---- the RFC 9162 definitions, written recursively and independently of the module -------


def _mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_path(m, leaves[:k]), _mth(leaves[k:])]
    return [*_path(m - k, leaves[k:]), _mth(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), _mth(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _mth(leaves[:k])]


def _tree(data: list[bytes]) -> dict[merkle.NodeKey, bytes]:
    """Every complete subtree of the tree over ``data``, built with new_nodes one leaf a time."""
    nodes: dict[merkle.NodeKey, bytes] = {}
    for index, item in enumerate(data):
        border = {k: nodes[k] for k in merkle.compact_range(index)}
        nodes.update(merkle.new_nodes(index, border, [merkle.leaf_hash(item)]))
    return nodes


def _root(nodes: dict[merkle.NodeKey, bytes], size: int) -> bytes:
    return merkle.fold([nodes[k] for k in merkle.compact_range(size)])


def test_roots_match_the_published_ct_roots() -> None:
    nodes = _tree(CT_LEAVES)
    for size, want in CT_ROOTS.items():
        assert _root(nodes, size).hex() == want
        assert (
            merkle.root_from_leaves([merkle.leaf_hash(d) for d in CT_LEAVES[:size]]).hex() == want
        )


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert merkle.root_from_leaves([]) == hashlib.sha256(b"").digest()


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_inclusion_proofs_match_published_vectors(index: int, size: int, proof: list[str]) -> None:
    nodes = _tree(CT_LEAVES)
    made = merkle.inclusion_proof(index, size, nodes.__getitem__)
    assert made == _b64(proof)
    root = bytes.fromhex(CT_ROOTS[size])
    merkle.verify_inclusion(index, size, merkle.leaf_hash(CT_LEAVES[index]), made, root)


@pytest.mark.parametrize(("first", "second", "proof"), CT_CONSISTENCY)
def test_consistency_proofs_match_published_vectors(
    first: int, second: int, proof: list[str]
) -> None:
    nodes = _tree(CT_LEAVES)
    made = merkle.consistency_proof(first, second, nodes.__getitem__)
    assert made == _b64(proof)
    merkle.verify_consistency(
        first, second, bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second]), made
    )


def test_proofs_equal_the_rfc_recursion_for_every_size_up_to_70() -> None:
    data = [f"entry-{i}".encode() for i in range(70)]
    nodes = _tree(data)
    for size in range(1, len(data) + 1):
        root = _root(nodes, size)
        assert root == _mth(data[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(index, size, nodes.__getitem__)
            assert proof == _path(index, data[:size])
            merkle.verify_inclusion(index, size, merkle.leaf_hash(data[index]), proof, root)
        for first in range(1, size + 1):
            proof = merkle.consistency_proof(first, size, nodes.__getitem__)
            assert proof == (_subproof(first, data[:size], True) if first < size else [])
            merkle.verify_consistency(first, size, _root(nodes, first), root, proof)


def test_every_flipped_bit_of_an_inclusion_proof_fails() -> None:
    data = [bytes([i]) for i in range(13)]
    nodes = _tree(data)
    root = _root(nodes, 13)
    proof = merkle.inclusion_proof(6, 13, nodes.__getitem__)
    for i in range(len(proof)):
        broken = list(proof)
        broken[i] = bytes([broken[i][0] ^ 1]) + broken[i][1:]
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(6, 13, merkle.leaf_hash(data[6]), broken, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(7, 13, merkle.leaf_hash(data[6]), proof, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(6, 13, merkle.leaf_hash(data[6]), proof[:-1], root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(6, 13, merkle.leaf_hash(data[6]), [*proof, root], root)


def test_inconsistent_trees_fail_the_consistency_check() -> None:
    data = [bytes([i]) for i in range(11)]
    nodes = _tree(data)
    proof = merkle.consistency_proof(5, 11, nodes.__getitem__)
    rewritten = _tree([*data[:2], b"forged", *data[3:]])
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(5, 11, _root(rewritten, 5), _root(nodes, 11), proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(5, 11, _root(nodes, 5), _root(rewritten, 11), proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(4, 11, _root(nodes, 4), _root(nodes, 11), [])


def test_range_nodes_refuses_unaligned_ranges() -> None:
    with pytest.raises(ValueError, match="aligned"):
        merkle.range_nodes(1, 5)
    assert merkle.range_nodes(8, 15) == [(2, 2), (1, 6), (0, 14)]
