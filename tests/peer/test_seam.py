"""MeteredPeer and RemotePeer touch each other only through the members ``seam`` lists."""

from __future__ import annotations

import ast
from pathlib import Path

from metered_realtime.peer import seam

PEER = Path(seam.__file__).parent


def members(protocol: type) -> set[str]:
    names = {n for n in vars(protocol) if not n.startswith("__")}
    return names | set(getattr(protocol, "__annotations__", {}))


def accesses(path: Path, is_other: object) -> set[str]:
    """Attribute names read or written on expressions that ``is_other`` recognises."""
    tree = ast.parse(path.read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and is_other(node.value)  # type: ignore[operator]
    }


def is_owner(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "owner"
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "_owner"
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


def is_remote(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "remote"


def test_remote_peer_touches_only_what_owner_lists() -> None:
    used = accesses(PEER / "remote.py", is_owner)
    assert used and used <= members(seam.Owner), used - members(seam.Owner)


def test_metered_peer_touches_only_what_member_lists() -> None:
    private = {a for a in accesses(PEER / "metered.py", is_remote) if a.startswith("_")}
    assert private and private <= members(seam.Member), private - members(seam.Member)
