"""Calls in disguise under a read grant (pure): `o.f` and `(x).f`, which PostgreSQL reads as a
call f(o) when f is not a column or field of o, a built-in name, operator symbol or cast that
the database has also defined for itself, which PostgreSQL may resolve to its own code, and a
type of the database's own (a domain's CHECK, an input or cast function) wherever a statement
or Parse's parameter types name one: a cast, a column-definition list, XMLTABLE or JSON_TABLE
columns, a typed literal, RETURNING (every TypeName in the tree, found generically).

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

from pglast import ast as pg_ast

from .functions import WRITE_HINT, function_refusal
from .names import GuardCatalog
from .ranges import Cols, Ranges, has, named, type_of, walk
from .tree import CACHE_MAX_CHARS, CACHE_SIZE, Node, normalize, parse, string_list

_BETWEEN = frozenset({"<", "<=", ">", ">="})


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


def parameter_refusal(param_types: tuple[int, ...], catalog: GuardCatalog) -> str | None:
    """Why a read grant may not prepare a statement with these parameter types (Parse's
    OIDs, which the text never shows): a value Bind sends is read into each of them."""
    for n, oid in enumerate(param_types, start=1):
        if oid in catalog.own_type_oids:
            return (f"parameter ${n} is of a type the database defined (type OID {oid}), whose"
                    " input, cast or domain check is its own code" + WRITE_HINT)  # fmt: skip
    return None


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


class _Statement:
    """One statement's ranges (by the name a qualifier would use) and its checks."""

    def __init__(self, catalog: GuardCatalog, tree: Node) -> None:
        self.catalog = catalog
        self.tree = tree
        self.nodes = walk(tree)
        self.ranges = Ranges(catalog, self.nodes)

    # -- checks -----------------------------------------------------------------------

    def refusal(self) -> str | None:
        for kind, fields in self.nodes:
            check = _CHECKS.get(kind)
            reason = check(self, fields) if check is not None else None
            if reason is not None:
                return reason
        return self._types()

    def _types(self) -> str | None:
        """A type the database defined, wherever the statement names one (a cast, a column-
        definition list, XMLTABLE or JSON_TABLE columns, a typed literal, RETURNING, PREPARE's
        types...): its input, cast or domain check is the database's own code."""
        for type_name in type_names(self.tree):
            names = string_list(type_name.get("names"))
            if names and names[-1] in self.catalog.own_cast_types:
                return (f"the type {'.'.join(names)} runs a function the database defined (its"
                        " own input, cast or domain check)" + WRITE_HINT)  # fmt: skip
        return None

    def _column_ref(self, fields: Node) -> str | None:
        parts = fields.get("fields", [])
        names = string_list(parts)
        if len(parts) < 2 or len(names) != len(parts):
            return None  # a bare name is never a call; `t.*` selects every column
        if has(self.ranges.qualified(names[:-1]), names[-1]):
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
            if not has(current, name):
                reason = self._call(f"({shown}).{name}", name, f"({shown})")
                if reason is not None:
                    return reason
                current = [None]
                continue
            current = [self.ranges.composite(type_of(c, name)) for c in current]
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
            for found in self.ranges.ranges.values()
            for kind, f in found
            if kind == "RangeVar"
            and not self.catalog.relations(str(f.get("relname")), f.get("schemaname"))
            and (f.get("schemaname") or str(f.get("relname")) not in self.ranges.ctes)
        )
        if not missing:
            return ""
        return f" ({', '.join(missing)} not among the names read at connect: if new, connect again)"

    # -- what a name can mean -----------------------------------------------------------
    def _value_type(self, arg: object) -> list[Cols]:
        """The fields of a value whose field is selected: a whole row, a composite column, or a
        value cast to a composite type (`($1::parcel).label`)."""
        if isinstance(arg, dict) and "TypeCast" in arg:
            return self._cast_type(arg["TypeCast"].get("typeName"))
        if not isinstance(arg, dict) or "ColumnRef" not in arg:
            return [None]
        names = string_list(arg["ColumnRef"].get("fields"))
        if len(names) != len(arg["ColumnRef"].get("fields", [])) or not names:
            return [None]
        if len(names) == 1:
            # PostgreSQL tries a column of that name first, then a range (a whole row); a
            # range whose columns are unknown may hold a column of that name.
            every = self.ranges.every_range()
            found = [
                self.ranges.composite(type_of(c, names[0])) for c in every if named(c, names[0])
            ]
            found += [
                self.ranges.columns(kind, f) for kind, f in self.ranges.ranges.get(names[0], [])
            ]
            if any(c is None for c in every):
                found.append(None)
            return found or [None]
        owners = self.ranges.qualified(names[:-1])
        if not has(owners, names[-1]):
            return [None]
        return [self.ranges.composite(type_of(c, names[-1])) for c in owners]

    def _cast_type(self, type_name: object) -> list[Cols]:
        """The fields of the composite type (or table's row type) a value is cast to; every
        type of that name in any schema, as the session's search_path may pick any."""
        if not isinstance(type_name, dict) or type_name.get("arrayBounds"):
            return [None]
        names = string_list(type_name.get("names"))
        if not names or len(names) > 2:
            return [None]
        found = self.catalog.relations(names[-1], names[0] if len(names) == 2 else None)
        return [r.columns for r in found] or [None]


def _overload(name: str) -> str:
    return (f"function {name}() is also defined by the database outside pg_catalog, and"
            f" PostgreSQL may pick that one; call pg_catalog.{name}() by its full name"
            + WRITE_HINT)  # fmt: skip


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
}


def _type_fields() -> frozenset[str]:
    """Every node field that holds a TypeName, read from pglast's node definitions so that a
    position added by a new grammar is checked too (a TypeName in a list is wrapped as one)."""
    found = {"typeName"}
    for node in vars(pg_ast).values():
        slots = getattr(node, "__slots__", None)
        if isinstance(node, type) and isinstance(slots, dict):
            found.update(k for k, v in slots.items() if "TypeName*" in str(v))
    return frozenset(found)


TYPE_FIELDS = _type_fields()


def type_names(tree: object) -> list[Node]:
    """Every TypeName in a tree, wherever it sits: the value of a TypeName-typed field of any
    node, wrapped nodes and the unwrapped structs nested in them alike (no recursion)."""
    out: list[Node] = []
    stack: list[object] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, dict) and (key == "TypeName" or key in TYPE_FIELDS):
                    out.append(value)
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return out
