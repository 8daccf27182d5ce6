"""Merkle trees over the transition log's leaf hashes (pure functions, no database).

The tree of an audit batch: the leaves are its entries' leaf hashes (hex) in ``leaf_index``
order; a leaf node is SHA-256(0x00 || leaf), an inner node SHA-256(0x01 || left || right), so a
node can never pass for a leaf. Each level pairs its nodes left to right and an odd last node
goes up unchanged (never paired with itself, so two different leaf lists never share a root).
This is the tree of RFC 6962 (largest power of two on the left), which ``MerkleBuilder`` also
builds from a stream of leaves with one node per level in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TypedDict

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


class PathStep(TypedDict):
    side: str  # "left" or "right": where the sibling sits
    hash: str


def _leaf_node(leaf: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(leaf)).digest()


def _inner(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _levels(leaves: Sequence[str]) -> list[list[bytes]]:
    level = [_leaf_node(leaf) for leaf in leaves]
    levels = [level]
    while len(level) > 1:
        paired = [_inner(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        levels.append(level)
    return levels


def merkle_root(leaves: Sequence[str]) -> str:
    """The root (hex) of the leaves (hex hashes) in order; ``EMPTY_ROOT`` for none."""
    if not leaves:
        return EMPTY_ROOT
    return _levels(leaves)[-1][0].hex()


def merkle_path(leaves: Sequence[str], index: int) -> list[PathStep]:
    """The siblings from leaf ``index`` up to the root, lowest first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} of {len(leaves)}")
    path: list[PathStep] = []
    for level in _levels(leaves)[:-1]:
        if index % 2:
            path.append({"side": "left", "hash": level[index - 1].hex()})
        elif index + 1 < len(level):
            path.append({"side": "right", "hash": level[index + 1].hex()})
        index //= 2
    return path


def merkle_path_root(leaf: str, path: Iterable[PathStep]) -> str:
    """The root that ``leaf`` and its sibling ``path`` lead to (compare it with the batch's)."""
    node = _leaf_node(leaf)
    for step in path:
        sibling = bytes.fromhex(step["hash"])
        if step["side"] == "left":
            node = _inner(sibling, node)
        elif step["side"] == "right":
            node = _inner(node, sibling)
        else:
            raise ValueError(f"a path step's side is left or right, not {step['side']!r}")
    return node.hex()


class MerkleBuilder:
    """The root of a stream of leaves, keeping one pending node per level (log2 n in memory)."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, node), heights strictly decreasing
        self.count = 0

    def add(self, leaf: str) -> None:
        height, node = 0, _leaf_node(leaf)
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            height, node = height + 1, _inner(left, node)
        self._stack.append((height, node))
        self.count += 1

    def root(self) -> str:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = _inner(left, node)
        return node.hex()


def merkle_path_sides(index: int, count: int) -> list[str]:
    """The sides of the siblings a path from leaf ``index`` of ``count`` leaves has, lowest first
    (a proof whose path has another shape is not of that leaf)."""
    if not 0 <= index < count:
        raise IndexError(f"leaf {index} of {count}")
    sides: list[str] = []
    while count > 1:
        if index % 2:
            sides.append("left")
        elif index + 1 < count:
            sides.append("right")
        index, count = index // 2, (count + 1) // 2
    return sides
