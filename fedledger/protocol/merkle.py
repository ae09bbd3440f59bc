"""A binary SM3 Merkle tree over update-entry leaves, with inclusion proofs.

Leaves are already domain-separated (prefix 0x00, see ``UpdateEntry.leaf``); inner nodes hash
0x01 || left || right. An odd node at the end of a level is promoted unchanged rather than
paired with itself, so no two different leaf lists share a root.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.digests import sm3

EMPTY_ROOT = sm3(b"fedledger/empty-updates")


def _parent(left: bytes, right: bytes) -> bytes:
    return sm3(b"\x01" + left + right)


def merkle_root(leaves: list[bytes]) -> bytes:
    """Root of the tree over ``leaves`` in the given order (callers sort them canonically)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        nxt = [_parent(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


@dataclass(frozen=True)
class MerkleProof:
    """Sibling hashes from a leaf up to the root; ``left[i]`` says the sibling sits on the left."""

    index: int
    siblings: list[bytes]
    left: list[bool]

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "siblings": ["0x" + s.hex() for s in self.siblings],
            "sibling_on_left": list(self.left),
        }


def merkle_proof(leaves: list[bytes], index: int) -> MerkleProof:
    """Inclusion proof of ``leaves[index]``."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} out of range for {len(leaves)} leaves")
    siblings: list[bytes] = []
    left: list[bool] = []
    level, pos = list(leaves), index
    while len(level) > 1:
        sibling = pos ^ 1
        if sibling < len(level):
            siblings.append(level[sibling])
            left.append(sibling < pos)
        nxt = [_parent(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, pos = nxt, pos // 2
    return MerkleProof(index=index, siblings=siblings, left=left)


def verify_proof(leaf: bytes, proof: MerkleProof, root: bytes) -> bool:
    """True when ``proof`` links ``leaf`` to ``root``."""
    node = leaf
    for sibling, on_left in zip(proof.siblings, proof.left, strict=True):
        node = _parent(sibling, node) if on_left else _parent(node, sibling)
    return node == root
