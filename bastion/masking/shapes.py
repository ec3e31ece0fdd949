"""The shapes of parse-tree nodes that the lineage analysis reads: an expression's nodes, its
default output name, the calls of a function in FROM and the items of a GROUP BY (pure)."""

from __future__ import annotations

from collections.abc import Iterator

from bastion.sqlparse.tree import Node, string_list, unwrap


def grouping_items(clause: object) -> list[object]:
    """The items of a GROUP BY, with ROLLUP, CUBE, GROUPING SETS and parenthesised lists
    opened: each item inside them may name an output column by name or position too."""
    found: list[object] = []
    for item in clause if isinstance(clause, list) else []:
        name, node = unwrap(item) if isinstance(item, dict) and len(item) == 1 else ("", {})
        if name == "GroupingSet":
            found.extend(grouping_items(node.get("content", [])))
        elif name == "RowExpr":
            found.append(item)  # read as a row too
            found.extend(grouping_items(node.get("args", [])))
        else:
            found.append(item)
    return found


def items(value: object) -> list[object]:
    return value.get("List", {}).get("items", []) if isinstance(value, dict) else []


def expr_name(name: str, node: Node) -> str:
    if name == "FuncCall":
        return string_list(node.get("funcname"))[-1]
    return "?column?"


def walk(value: object) -> Iterator[tuple[str, Node]]:
    """Every wrapped node under `value`, outermost first; sub-selects are not entered."""
    if isinstance(value, list):
        for item in value:
            yield from walk(item)
    elif isinstance(value, dict):
        if len(value) == 1:
            ((name, fields),) = value.items()
            if isinstance(fields, dict) and name[:1].isupper():
                yield name, fields
                if name in ("SubLink", "ColumnRef"):
                    return
                for child in fields.values():
                    yield from walk(child)
                return
        for child in value.values():
            yield from walk(child)
