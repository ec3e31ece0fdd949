"""The shapes of parse-tree nodes that the lineage analysis reads: the fields of a SELECT and
which of them compare, an expression's nodes, its default output name, the calls of a function
in FROM and the items of a GROUP BY (pure)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar

from bastion.sqlparse.tree import Node, string_list, unwrap

# Clauses that read columns without returning them, and how a refusal names each.
CLAUSES = (("whereClause", "a WHERE clause"), ("havingClause", "HAVING"),
           ("windowClause", "a window"))  # fmt: skip
# Every field of a SELECT the analysis reads (a field a newer grammar adds refuses it).
SELECT_FIELDS = frozenset({
    "distinctClause", "intoClause", "targetList", "fromClause", "whereClause", "groupClause",
    "groupDistinct", "havingClause", "windowClause", "valuesLists", "sortClause", "limitOffset",
    "limitCount", "limitOption", "lockingClause", "withClause", "op", "all", "larg", "rarg",
})  # fmt: skip
# The SEARCH and CYCLE clauses of a recursive CTE: the columns they list, the columns they add
# (made of the listed ones), and how a refusal names them.
CTE_CLAUSES = (
    ("search_clause", "search_col_list", ("search_seq_column",),
     "SEARCH, which sorts by the columns it lists"),
    ("cycle_clause", "cycle_col_list", ("cycle_mark_column", "cycle_path_column"),
     "CYCLE, which compares the columns it lists"),
)  # fmt: skip
# Set operations compare whole rows (to drop duplicates, to match rows from both sides), so
# every column they combine is used; only UNION ALL just appends one side to the other.
SET_OPERATIONS = {"SETOP_UNION": "UNION", "SETOP_INTERSECT": "INTERSECT",
                  "SETOP_EXCEPT": "EXCEPT"}  # fmt: skip


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


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def names_in(entries: Sequence[tuple[str, Sequence[_Named]]]) -> set[str]:
    """Every column name of a scope's entries."""
    return {c.name for _, cols in entries for c in cols}


def has_name(cols: Sequence[_Named], name: str) -> bool:
    return any(c.name == name for c in cols)


def output_ref(item: object, outputs: Sequence[N]) -> N | None:
    """ORDER BY / GROUP BY naming an output column by position or by its name."""
    if not isinstance(item, dict) or not outputs:
        return None
    name, node = unwrap(item)
    if name == "SortBy":
        return output_ref(node.get("node"), outputs)
    if name == "A_Const" and "ival" in node:
        index = int(node["ival"].get("ival", 0)) - 1
        return outputs[index] if 0 <= index < len(outputs) else None
    if name == "ColumnRef":
        names = string_list(node["fields"])
        if len(names) == 1:
            return next((c for c in outputs if c.name == names[0]), None)
    return None
