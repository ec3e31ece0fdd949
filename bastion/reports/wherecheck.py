"""Whether a DELETE's or UPDATE's WHERE (a pglast tree) may let every row through; pure.

It may when it is missing, reads no column (`true`, `1 = 1`, `NOT false`; and `$1`, `$1 = $2`
as the query log redacts literals: a constant is true or false for every row alike), or is
a tautology provable from its shape: the same expression on both sides of `=`, `<=`, `>=`
or IS NOT DISTINCT FROM; an OR with such a branch or with a condition and its opposite
(`x OR NOT x`, `x IS NULL OR x IS NOT NULL`, `a < b OR a >= b`); an AND of such parts;
`x IN (x, ...)`; `LIKE '%'`; a lone `IS NOT NULL`; `NOT` of a contradiction; a subquery
that reads the same table unfiltered (`id IN` a subquery of all ids of the table) or an
unfiltered EXISTS.
"True for every row with a value" counts: `id = id` passes every row whose id is not NULL.

Flagging is the safe side (a reviewer looks), so anything else that reads a column is taken
as restricting; what it cannot prove (a function that always returns true, a condition on
a column the schema makes constant) is not flagged. Tests keep a corpus of ordinary WHEREs
that must not be flagged (tests/reports/test_sqlcheck.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pglast import ast

_SELF_TRUE = frozenset({"=", "<=", ">="})  # x op x holds whenever x has a value
_SELF_FALSE = frozenset({"<>", "!=", "<", ">"})  # x op x never holds
_OPPOSITE = {"=": "<>", "<>": "=", "!=": "=", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_TESTS_OPPOSITE = {"IS_TRUE": "IS_NOT_TRUE", "IS_NOT_TRUE": "IS_TRUE", "IS_FALSE": "IS_NOT_FALSE",
                   "IS_NOT_FALSE": "IS_FALSE", "IS_UNKNOWN": "IS_NOT_UNKNOWN",
                   "IS_NOT_UNKNOWN": "IS_UNKNOWN", "IS_NULL": "IS_NOT_NULL",
                   "IS_NOT_NULL": "IS_NULL"}  # fmt: skip


def walk(node: object) -> Iterator[ast.Node]:
    """Every node of a tree, the outer ones first."""
    if isinstance(node, ast.Node):
        yield node
        fields: tuple[str, ...] = getattr(type(node), "__slots__", ())
        for name in fields:
            yield from walk(getattr(node, name, None))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from walk(item)


def restricts(where: ast.Node | None, relation: ast.Node | None) -> bool:
    """True when the WHERE provably does not let every row of `relation` through, as far as
    its shape tells; False for a missing, constant or tautological one."""
    if isinstance(where, ast.CurrentOfExpr):
        return True  # WHERE CURRENT OF c: the cursor's one row
    return where is not None and not _passes_all(where, relation)


def _reads_column(node: object) -> bool:
    return any(isinstance(found, ast.ColumnRef) for found in walk(node))


def _name(node: ast.Node) -> str:
    names = getattr(node, "name", None) or ()
    return str(getattr(names[-1], "sval", "")) if names else ""


def _kind(node: ast.Node, field: str) -> str:
    return str(getattr(getattr(node, field, None), "name", ""))


def _passes_all(node: ast.Node, relation: ast.Node | None) -> bool:
    """May be true for every row (with a value)."""
    if not _reads_column(node):
        return True  # a constant: true for every row or for none
    if isinstance(node, ast.BoolExpr):
        return _bool_passes_all(node, relation)
    if isinstance(node, ast.A_Expr):
        return _expr_passes_all(node)
    if isinstance(node, ast.NullTest):
        return _kind(node, "nulltesttype") == "IS_NOT_NULL"
    if isinstance(node, ast.SubLink):
        return _unfiltered(node, relation)
    return False


def _bool_passes_all(node: ast.BoolExpr, relation: ast.Node | None) -> bool:
    op, args = _kind(node, "boolop"), node.args or ()
    if op == "AND_EXPR":
        return all(_passes_all(a, relation) for a in args)
    if op == "OR_EXPR":
        return any(_passes_all(a, relation) for a in args) or _has_opposites(args)
    return bool(args) and _passes_none(args[0])


def _expr_passes_all(node: ast.A_Expr) -> bool:
    kind, op = _kind(node, "kind"), _name(node)
    if (kind == "AEXPR_OP" and op in _SELF_TRUE) or kind == "AEXPR_NOT_DISTINCT":
        return node.lexpr is not None and node.lexpr == node.rexpr
    if kind == "AEXPR_IN" and op == "=" and isinstance(node.rexpr, tuple):
        return any(node.lexpr == item for item in node.rexpr)
    if kind in ("AEXPR_LIKE", "AEXPR_ILIKE") and op in ("~~", "~~*"):
        pattern = getattr(getattr(node.rexpr, "val", None), "sval", None)
        return isinstance(pattern, str) and bool(pattern) and set(pattern) == {"%"}
    return False


def _passes_none(node: ast.Node) -> bool:
    """Provably false for every row: `x <> x`, `x AND NOT x`, NOT of a tautology."""
    if isinstance(node, ast.A_Expr):
        kind, op = _kind(node, "kind"), _name(node)
        return kind == "AEXPR_OP" and op in _SELF_FALSE and node.lexpr == node.rexpr
    if isinstance(node, ast.BoolExpr):
        op, args = _kind(node, "boolop"), node.args or ()
        if op == "AND_EXPR":
            return any(_passes_none(a) for a in args) or _has_opposites(args)
        if op == "OR_EXPR":
            return all(_passes_none(a) for a in args)
        return bool(args) and _reads_column(args[0]) and _passes_all(args[0], None)
    return False


def _has_opposites(args: Sequence[ast.Node]) -> bool:
    """Two of the branches are a condition and its opposite."""
    return any(_opposite(a, b) for i, a in enumerate(args) for b in args[i + 1 :])


def _opposite(a: ast.Node, b: ast.Node) -> bool:
    for x, y in ((a, b), (b, a)):
        if isinstance(x, ast.BoolExpr) and _kind(x, "boolop") == "NOT_EXPR" and x.args == (y,):
            return True
    if isinstance(a, ast.NullTest) and isinstance(b, ast.NullTest):
        return a.arg == b.arg and _TESTS_OPPOSITE.get(_kind(a, "nulltesttype")) == _kind(
            b, "nulltesttype"
        )
    if isinstance(a, ast.BooleanTest) and isinstance(b, ast.BooleanTest):
        return a.arg == b.arg and _TESTS_OPPOSITE.get(_kind(a, "booltesttype")) == _kind(
            b, "booltesttype"
        )
    if isinstance(a, ast.A_Expr) and isinstance(b, ast.A_Expr):
        same_kind = _kind(a, "kind") == _kind(b, "kind") == "AEXPR_OP"
        same_sides = a.lexpr == b.lexpr and a.rexpr == b.rexpr
        return same_kind and same_sides and _OPPOSITE.get(_name(a)) == _name(b)
    return False


def _unfiltered(node: ast.SubLink, relation: ast.Node | None) -> bool:
    """EXISTS over an unfiltered query, or a column IN all of its own table's values."""
    select = node.subselect
    if not isinstance(select, ast.SelectStmt) or select.whereClause or select.havingClause:
        return False
    if select.limitCount is not None or select.groupClause:
        return False
    kind = _kind(node, "subLinkType")
    if kind == "EXISTS_SUBLINK":
        return True
    sources = select.fromClause or ()
    same_table = (
        len(sources) == 1 and isinstance(sources[0], ast.RangeVar)
        and isinstance(relation, ast.RangeVar) and sources[0].relname == relation.relname
        and sources[0].schemaname == relation.schemaname
    )  # fmt: skip
    targets = select.targetList or ()
    picked = getattr(targets[0], "val", None) if len(targets) == 1 else None
    return (kind == "ANY_SUBLINK" and _name(node) in ("", "=") and same_table
            and _same_column(node.testexpr, picked))  # fmt: skip


def _same_column(a: object, b: object) -> bool:
    """Two column references naming the same column (qualified or not)."""
    if not isinstance(a, ast.ColumnRef) or not isinstance(b, ast.ColumnRef):
        return False
    return bool(a.fields and b.fields) and (a.fields or ())[-1] == (b.fields or ())[-1]
