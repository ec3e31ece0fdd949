"""Calls in disguise under a read grant (pure): `o.f` and `(x).f`, which PostgreSQL reads as a
call f(o) when f is not a column or field of o, and a built-in name, operator symbol or cast
that the database has also defined for itself, which PostgreSQL may resolve to its own code.

Fail closed, with positive proof: a qualified name or field selection runs only when the
target's catalog snapshot (`names.GuardCatalog`) proves it names a column of every range the
qualifier could mean (each relation of that name in any schema, whatever the search_path, and
each CTE, subquery, function or join of that alias in the statement). Anything unproven is
judged as the function call it may be: refused unless the name is on the read grant's function
allow-list and the database defines no function of that name outside pg_catalog.

Limits: operators a type uses without a symbol in the text (ORDER BY, DISTINCT, GROUP BY, IN,
CASE, joins) and implicit casts are not visible to a parser; a database's own type with its own
operator class or implicit cast function still runs that function. The upstream session's
default_transaction_read_only stops writes there (and the door ends a session whose guard a
function lifted). Views, row-level security policies and triggers run their owners' code too.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import suppress
from typing import Any

from .functions import WRITE_HINT, function_refusal
from .names import Columns, GuardCatalog
from .tree import CACHE_MAX_CHARS, CACHE_SIZE, Node, normalize, parse, string_list, unwrap

UNNAMED = "\0"
"""An output column whose name the guard does not derive: it matches no identifier, so a
reference to it is unproven rather than wrongly proven."""
_BETWEEN = frozenset({"<", "<=", ">", ">="})

Cols = Columns | None  # a range's columns; None when the guard cannot know them


def refusal(sql: str, catalog: GuardCatalog) -> str | None:
    """Why a read grant may not run `sql` because of a call in disguise; None if none.

    Cached per catalog by text and by shape (constants never change the verdict)."""
    if len(sql) > CACHE_MAX_CHARS:
        return _check_text(sql, catalog)
    cache: OrderedDict[str, str | None] = catalog.cache
    try:
        key = normalize(sql)
    except Exception:  # the classifier refuses what does not parse; check the text anyway
        key = "\0" + sql
    if key in cache:
        with suppress(KeyError):
            cache.move_to_end(key)
        return cache.get(key)
    verdict = _check_text(sql, catalog)
    cache[key] = verdict
    while len(cache) > CACHE_SIZE:
        with suppress(KeyError):
            cache.popitem(last=False)
    return verdict


def _check_text(sql: str, catalog: GuardCatalog) -> str | None:
    try:
        statements = parse(sql)
    except Exception:  # fail closed: the classifier says why
        return "cannot parse the statement"
    try:
        for kind, node in statements:
            reason = _Statement(catalog, {kind: node}).refusal()
            if reason is not None:
                return reason
    except RecursionError:
        return "the statement is nested too deeply to check"
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        return f"the statement could not be checked ({type(exc).__name__})"
    return None


def _walk(tree: object) -> list[tuple[str, Node]]:
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


class _Statement:
    """One statement's ranges (by the name a qualifier would use) and its checks."""

    def __init__(self, catalog: GuardCatalog, tree: Node) -> None:
        self.catalog = catalog
        self.tree = tree
        self.nodes = _walk(tree)
        self.ranges: dict[str, list[tuple[str, Node]]] = {}
        self.ctes: dict[str, list[Node]] = {}
        self.memo: dict[int, Cols] = {}
        for kind, fields in self.nodes:
            if kind == "CommonTableExpr":
                self.ctes.setdefault(str(fields.get("ctename")), []).append(fields)
            name = _range_name(kind, fields)
            if name is not None:
                self.ranges.setdefault(name, []).append((kind, fields))

    # -- checks -----------------------------------------------------------------------

    def refusal(self) -> str | None:
        for kind, fields in self.nodes:
            check = _CHECKS.get(kind)
            reason = check(self, fields) if check is not None else None
            if reason is not None:
                return reason
        return None

    def _column_ref(self, fields: Node) -> str | None:
        parts = fields.get("fields", [])
        names = string_list(parts)
        if len(parts) < 2 or len(names) != len(parts):
            return None  # a bare name is never a call; `t.*` selects every column
        if _has(self._qualified(names[:-1]), names[-1]):
            return None
        return self._call(".".join(names), names[-1], ".".join(names[:-1]))

    def _indirection(self, fields: Node) -> str | None:
        found = self._selected(fields)
        return found if isinstance(found, str) else None

    def _selected(self, fields: Node) -> list[Cols] | str:
        """The fields of what an A_Indirection selects, or the refusal of a step in it."""
        arg = fields.get("arg")
        current: list[Cols]
        if isinstance(arg, dict) and "A_Indirection" in arg:
            inner = self._selected(arg["A_Indirection"])
            current = [None] if isinstance(inner, str) else inner
        else:
            current = self._value_type(arg)
        shown = _shown(arg)
        for item in fields.get("indirection", []):
            if not isinstance(item, dict) or "String" not in item:
                current = [None]  # a subscript: the element's type is not known
                continue
            name = str(item["String"].get("sval", ""))
            if not _has(current, name):
                reason = self._call(f"({shown}).{name}", name, f"({shown})")
                if reason is not None:
                    return reason
                current = [None]
                continue
            current = [self._composite(_type_of(c, name)) for c in current]
            shown = f"({shown}).{name}"
        return current

    def _func_call(self, fields: Node) -> str | None:
        names = string_list(fields.get("funcname"))
        if len(names) == 1 and names[0] in self.catalog.own_functions:
            return _overload(names[0])
        return None

    def _operators(self, symbols: list[str], kind: object = None) -> str | None:
        if kind in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN", "AEXPR_BETWEEN_SYM",
                    "AEXPR_NOT_BETWEEN_SYM"):  # fmt: skip
            symbols = sorted(_BETWEEN)
        elif len(symbols) != 1:
            return None  # OPERATOR(schema.op): the classifier allows only pg_catalog's
        for symbol in symbols:
            if symbol in self.catalog.own_operators:
                return (f"operator {symbol} is also defined by the database, which PostgreSQL"
                        f" may pick over the built-in; write OPERATOR(pg_catalog.{symbol})"
                        + WRITE_HINT)  # fmt: skip
        return None

    def _a_expr(self, fields: Node) -> str | None:
        return self._operators(string_list(fields.get("name")), fields.get("kind"))

    def _case(self, fields: Node) -> str | None:
        """CASE x WHEN y compares with the = operator PostgreSQL finds for their types."""
        return self._operators(["="]) if fields.get("arg") else None

    def _sub_link(self, fields: Node) -> str | None:
        return self._operators(string_list(fields.get("operName")))

    def _sort_by(self, fields: Node) -> str | None:
        return self._operators(string_list(fields.get("useOp")))

    def _type_cast(self, fields: Node) -> str | None:
        type_name = fields.get("typeName")
        names = string_list(type_name.get("names")) if isinstance(type_name, dict) else []
        if names and names[-1] in self.catalog.own_cast_types:
            return (f"a cast to {'.'.join(names)} runs a function the database defined (its"
                    " own cast or domain check)" + WRITE_HINT)  # fmt: skip
        return None

    def _call(self, shown: str, name: str, of: str) -> str | None:
        """`shown` is not a proven column or field: PostgreSQL would call name(of)."""
        reason = function_refusal([name])
        if reason is None and name in self.catalog.own_functions:
            reason = _overload(name)
        if reason is None:
            return None
        return (f"{shown} is not a column the bastion can prove, so PostgreSQL may read it as"
                f" a call {name}({of}); {reason}{self._missing()}")  # fmt: skip

    def _missing(self) -> str:
        """A hint naming the statement's relations that the snapshot lacks (maybe new)."""
        missing = sorted(
            str(f.get("relname"))
            for found in self.ranges.values()
            for kind, f in found
            if kind == "RangeVar"
            and not self.catalog.relations(str(f.get("relname")), f.get("schemaname"))
            and (f.get("schemaname") or str(f.get("relname")) not in self.ctes)
        )
        if not missing:
            return ""
        return f" ({', '.join(missing)} not among the names read at connect: if new, connect again)"

    # -- what a name can mean -----------------------------------------------------------

    def _qualified(self, qualifier: list[str]) -> list[Cols]:
        """The columns of every range `qualifier` (alias, or [catalog.]schema.relation) could
        name in this statement."""
        if len(qualifier) == 1:
            return [self._columns(kind, f) for kind, f in self.ranges.get(qualifier[0], [])]
        schema, name = qualifier[-2], qualifier[-1]
        return [r.columns for r in self.catalog.relations(name, schema) if r.is_range]

    def _value_type(self, arg: object) -> list[Cols]:
        """The fields of a value whose field is selected: a whole row or a composite column."""
        if not isinstance(arg, dict) or "ColumnRef" not in arg:
            return [None]
        names = string_list(arg["ColumnRef"].get("fields"))
        if len(names) != len(arg["ColumnRef"].get("fields", [])) or not names:
            return [None]
        if len(names) == 1:
            # PostgreSQL tries a column of that name first, then a range (a whole row); a
            # range whose columns are unknown may hold a column of that name.
            every = self._every_range()
            found = [self._composite(_type_of(c, names[0])) for c in every if _named(c, names[0])]
            found += [self._columns(kind, f) for kind, f in self.ranges.get(names[0], [])]
            if any(c is None for c in every):
                found.append(None)
            return found or [None]
        owners = self._qualified(names[:-1])
        if not _has(owners, names[-1]):
            return [None]
        return [self._composite(_type_of(c, names[-1])) for c in owners]

    def _every_range(self) -> list[Cols]:
        return [self._columns(kind, f) for found in self.ranges.values() for kind, f in found]

    def _composite(self, relid: int) -> Cols:
        relation = self.catalog.by_relid.get(relid) if relid else None
        return relation.columns if relation is not None else None

    def _columns(self, kind: str, fields: Node) -> Cols:
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
            if found is None:
                return None
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
        return self._columns(kind, fields)

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
            found = _common(self._qualified(qualifier))
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
        owners = self._qualified(names[:-1])
        types = {_type_of(c, names[-1]) for c in owners}
        return types.pop() if len(types) == 1 and _has(owners, names[-1]) else 0


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


def _has(candidates: list[Cols], name: str) -> bool:
    """Whether `name` is proven a column: every candidate is known and has it."""
    return bool(candidates) and all(_named(c, name) for c in candidates)


def _named(cols: Cols, name: str) -> bool:
    return cols is not None and any(n == name for n, _ in cols)


def _type_of(cols: Cols, name: str) -> int:
    if cols is None:
        return 0
    return next((t for n, t in cols if n == name), 0)


def _overload(name: str) -> str:
    return (f"function {name}() is also defined by the database outside pg_catalog, and"
            f" PostgreSQL may pick that one; call pg_catalog.{name}() by its full name"
            + WRITE_HINT)  # fmt: skip


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


def _shown(arg: object) -> str:
    if isinstance(arg, dict) and "ColumnRef" in arg:
        return ".".join(string_list(arg["ColumnRef"].get("fields"))) or "..."
    return "..."


_CHECKS = {
    "ColumnRef": _Statement._column_ref,
    "A_Indirection": _Statement._indirection,
    "FuncCall": _Statement._func_call,
    "A_Expr": _Statement._a_expr,
    "SubLink": _Statement._sub_link,
    "CaseExpr": _Statement._case,
    "SortBy": _Statement._sort_by,
    "TypeCast": _Statement._type_cast,
}
_RANGE_COLUMNS = {
    "RangeVar": _Statement._relation,
    "RangeSubselect": _Statement._subselect,
    "RangeFunction": _Statement._function,
    "JoinExpr": _Statement._join,
    "RangeTableFunc": _Statement._table_func,
}
