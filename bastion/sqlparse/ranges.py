"""The ranges of one statement and the columns each one has, by the name a qualifier would use
(pure; for bastion.sqlparse.disguise, over a `names.GuardCatalog`).

Conservative by construction: a name is looked up in every range of that name anywhere in the
statement (PostgreSQL picks one of them by scope), an unqualified relation in every schema
(whatever the search_path), and a column counts only where every candidate has it. Columns the
guard cannot know (a relation the snapshot lacks, `*` over one, a function's record) are None.
"""

from __future__ import annotations

from typing import Any

from .names import Columns, GuardCatalog
from .tree import Node, string_list, unwrap

UNNAMED = "\0"
"""An output column whose name the guard does not derive: it matches no identifier, so a
reference to it is unproven rather than wrongly proven."""

Cols = Columns | None  # a range's columns; None when the guard cannot know them


def walk(tree: object) -> list[tuple[str, Node]]:
    """Every node of a tree, (kind, fields), without recursion."""
    out: list[tuple[str, Node]] = []
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            if len(item) == 1:
                ((kind, fields),) = item.items()
                if type(fields) is dict:
                    out.append((kind, fields))
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return out


def _alias(fields: Node) -> Node:
    alias = fields.get("alias")
    return alias if isinstance(alias, dict) else {}


def _renamed(cols: Cols, alias: Node) -> Cols:
    names = string_list(alias.get("colnames"))
    if cols is None:
        return None
    return tuple((names[i], t) if i < len(names) else (n, t) for i, (n, t) in enumerate(cols))


def _common(candidates: list[Cols]) -> Cols:
    """The columns every candidate has (in the first one's order); None if any is unknown."""
    if not candidates or any(c is None for c in candidates):
        return None
    first, *rest = [c for c in candidates if c is not None]
    kept = [(n, t) for n, t in first if all(any(n == m for m, _ in other) for other in rest)]
    # A field's type is known only where every candidate agrees on it.
    return tuple((n, t if all((n, t) in other for other in rest) else 0) for n, t in kept)


class Ranges:
    """One statement's ranges (FROM items, joins with an alias, CTEs) and their columns."""

    def __init__(self, catalog: GuardCatalog, nodes: list[tuple[str, Node]]) -> None:
        self.catalog = catalog
        self.ranges: dict[str, list[tuple[str, Node]]] = {}
        self.ctes: dict[str, list[Node]] = {}
        self.memo: dict[int, Cols] = {}
        for kind, fields in nodes:
            if kind == "CommonTableExpr":
                self.ctes.setdefault(str(fields.get("ctename")), []).append(fields)
            name = _range_name(kind, fields)
            if name is not None:
                self.ranges.setdefault(name, []).append((kind, fields))

    def qualified(self, qualifier: list[str]) -> list[Cols]:
        """The columns of every range `qualifier` (alias, or [catalog.]schema.relation) could
        name in this statement."""
        if len(qualifier) == 1:
            return [self.columns(kind, f) for kind, f in self.ranges.get(qualifier[0], [])]
        schema, name = qualifier[-2], qualifier[-1]
        return [r.columns for r in self.catalog.relations(name, schema) if r.is_range]

    def every_range(self) -> list[Cols]:
        return [self.columns(kind, f) for found in self.ranges.values() for kind, f in found]

    def composite(self, relid: int) -> Cols:
        relation = self.catalog.by_relid.get(relid) if relid else None
        return relation.columns if relation is not None else None

    def columns(self, kind: str, fields: Node) -> Cols:
        key = id(fields)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = None  # a range that refers to itself (WITH RECURSIVE) stays unknown
        found = _RANGE_COLUMNS[kind](self, fields)
        self.memo[key] = found
        return found

    def _relation(self, fields: Node) -> Cols:
        name, schema = str(fields.get("relname", "")), fields.get("schemaname")
        candidates: list[Cols] = []
        if schema is None:
            candidates += [self._cte(cte) for cte in self.ctes.get(name, [])]
        relations = self.catalog.relations(name, str(schema) if schema else None)
        candidates += [r.columns for r in relations if r.is_range]
        return _renamed(_common(candidates), _alias(fields))

    def _cte(self, cte: Node) -> Cols:
        key = id(cte)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = None
        query = cte.get("ctequery")
        found: Cols = None
        if isinstance(query, dict) and "SelectStmt" in query:
            found = _renamed(
                self._output(query["SelectStmt"]), {"colnames": cte.get("aliascolnames")}
            )
        self.memo[key] = found
        return found

    def _subselect(self, fields: Node) -> Cols:
        query = fields.get("subquery")
        if not isinstance(query, dict) or "SelectStmt" not in query:
            return None
        return _renamed(self._output(query["SelectStmt"]), _alias(fields))

    def _function(self, fields: Node) -> Cols:
        alias = _alias(fields)
        functions = fields.get("functions", [])
        cols: list[tuple[str, int]] = []
        for item in functions:
            parts = item.get("List", {}).get("items", []) if isinstance(item, dict) else []
            call = parts[0] if parts else None
            defs = parts[1] if len(parts) > 1 else None
            found = self._function_columns(call, defs, alias, len(functions) > 1
                                           or bool(fields.get("is_rowsfrom")))  # fmt: skip
            if found is None or (not found and len(functions) == 1):
                # Overloads that disagree: the alias's column names still name the first
                # columns, whichever overload PostgreSQL picks.
                names = string_list(alias.get("colnames"))
                return tuple((n, 0) for n in names) if names else None
            cols += found
        if fields.get("ordinality"):
            cols.append(("ordinality", 0))
        return _renamed(tuple(cols), alias)

    def _function_columns(self, call: object, defs: object, alias: Node,
                          rows_from: bool) -> Cols:  # fmt: skip
        if isinstance(defs, dict) and defs.get("List", {}).get("items"):
            return tuple((str(d.get("ColumnDef", {}).get("colname", UNNAMED)), 0)
                         for d in defs["List"]["items"])  # fmt: skip
        if not isinstance(call, dict) or "FuncCall" not in call:
            return None
        name = string_list(call["FuncCall"].get("funcname"))[-1]
        scalar = ((name if rows_from else str(alias.get("aliasname", name))), 0)
        overloads = self.catalog.function_columns.get(name)
        if overloads is None:
            return (scalar,)
        candidates: list[Cols] = [
            (scalar,) if o is None else (tuple((n, 0) for n in o) if o else None) for o in overloads
        ]
        return _common(candidates)

    def _join(self, fields: Node) -> Cols:
        left = self._side(fields.get("larg"))
        right = self._side(fields.get("rarg"))
        if left is None or right is None:
            return None
        return _renamed(left + right, _alias(fields))

    def _side(self, wrapped: object) -> Cols:
        if not isinstance(wrapped, dict):
            return None
        kind, fields = unwrap(wrapped)
        if kind == "RangeTableSample":
            return self._side(fields.get("relation"))
        if kind not in _RANGE_COLUMNS:
            return None
        return self.columns(kind, fields)

    def _table_func(self, fields: Node) -> Cols:
        cols = tuple((str(c.get("RangeTableFuncCol", {}).get("colname", UNNAMED)), 0)
                     for c in fields.get("columns", []))  # fmt: skip
        return _renamed(cols, _alias(fields))

    def _output(self, select: Node) -> Cols:
        """A SELECT's output columns, by the names PostgreSQL gives them where the guard can
        tell (UNNAMED elsewhere)."""
        if select.get("op", "SETOP_NONE") != "SETOP_NONE":
            left = select.get("larg")
            return self._output(left) if isinstance(left, dict) else None
        rows = select.get("valuesLists")
        if rows:
            width = len(unwrap(rows[0])[1].get("items", []))
            return tuple((f"column{i + 1}", 0) for i in range(width))
        cols: list[tuple[str, int]] = []
        for target in select.get("targetList", []):
            res = target.get("ResTarget", {})
            value = res.get("val")
            stars = self._stars(value, select)
            if stars is not None:
                if isinstance(stars, str):  # "unknown"
                    return None
                cols += stars
                continue
            name = res.get("name") or _figure_name(value)
            cols.append((str(name), self._ref_type(value)))
        return tuple(cols)

    def _stars(self, value: object, select: Node) -> Columns | str | None:
        """The columns `*` or `t.*` expands to; "unknown" when they are not known; None when
        `value` is no star."""
        if not isinstance(value, dict) or "ColumnRef" not in value:
            return None
        parts = value["ColumnRef"].get("fields", [])
        if not parts or "A_Star" not in parts[-1]:
            return None
        qualifier = string_list(parts[:-1])
        if qualifier:
            found = _common(self.qualified(qualifier))
        else:
            sides = [self._side(item) for item in select.get("fromClause", [])]
            found = (
                None
                if any(s is None for s in sides)
                else tuple(c for s in sides if s is not None for c in s)
            )
        return "unknown" if found is None else found

    def _ref_type(self, value: object) -> int:
        """The composite type of an output column that is a column reference, if proven."""
        if not isinstance(value, dict) or "ColumnRef" not in value:
            return 0
        names = string_list(value["ColumnRef"].get("fields"))
        if len(names) < 2:
            return 0
        owners = self.qualified(names[:-1])
        types = {type_of(c, names[-1]) for c in owners}
        return types.pop() if len(types) == 1 and has(owners, names[-1]) else 0


def _range_name(kind: str, fields: Node) -> str | None:
    """The name a qualifier uses for a range: its alias, else its relation's or function's."""
    alias = _alias(fields).get("aliasname")
    if kind == "RangeVar":
        return str(alias or fields.get("relname", ""))
    if kind in ("RangeSubselect", "JoinExpr", "RangeTableFunc"):
        return str(alias) if alias else None
    if kind == "RangeFunction":
        if alias:
            return str(alias)
        functions = fields.get("functions", [])
        if len(functions) == 1 and not fields.get("is_rowsfrom"):
            parts = functions[0].get("List", {}).get("items", [])
            if parts and isinstance(parts[0], dict) and "FuncCall" in parts[0]:
                return string_list(parts[0]["FuncCall"].get("funcname"))[-1]
    return None


def has(candidates: list[Cols], name: str) -> bool:
    """Whether `name` is proven a column: every candidate is known and has it."""
    return bool(candidates) and all(named(c, name) for c in candidates)


def named(cols: Cols, name: str) -> bool:
    return cols is not None and any(n == name for n, _ in cols)


def type_of(cols: Cols, name: str) -> int:
    if cols is None:
        return 0
    return next((t for n, t in cols if n == name), 0)


def _figure_name(value: object) -> str:
    """PostgreSQL's name for an unnamed output column, where it is plain; UNNAMED elsewhere."""
    if not isinstance(value, dict) or len(value) != 1:
        return UNNAMED
    kind, fields = unwrap(value)
    names: list[str] = []
    if kind == "ColumnRef":
        names = string_list(fields.get("fields"))
    elif kind == "FuncCall":
        names = string_list(fields.get("funcname"))
    elif kind == "A_Indirection":
        names = string_list((fields.get("indirection") or [None])[-1:])
    elif kind == "TypeCast":
        inner = _figure_name(fields.get("arg"))
        if inner != UNNAMED:
            return inner
        type_name = fields.get("typeName")
        names = string_list(type_name.get("names")) if isinstance(type_name, dict) else []
    return names[-1] if names else UNNAMED


_RANGE_COLUMNS = {
    "RangeVar": Ranges._relation,
    "RangeSubselect": Ranges._subselect,
    "RangeFunction": Ranges._function,
    "JoinExpr": Ranges._join,
    "RangeTableFunc": Ranges._table_func,
}
