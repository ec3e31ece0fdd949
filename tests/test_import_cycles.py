"""The door packages import in one direction: no module imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bastion"
DOORS = ("ssh", "pgproxy")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every bastion module `path` names in an import, at the top, under TYPE_CHECKING or
    inside a function alike: a cycle hidden in a function body is a cycle all the same."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("bastion.")}


def graph(package: str) -> dict[str, set[str]]:
    paths = sorted((PACKAGE / package).glob("*.py"))
    names = {module_name(p) for p in paths}
    return {module_name(p): imported(p) & names for p in paths}


def cycle_from(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


@pytest.mark.parametrize("package", DOORS)
def test_no_import_cycles_in_the_doors(package: str) -> None:
    edges = graph(package)
    for start in sorted(edges):
        found = cycle_from(start, edges)
        assert found is None, " -> ".join(found or [])
