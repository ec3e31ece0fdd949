"""Where each output column of a query comes from, and whether a sensitive column is used other
than by being projected as it is (pure; PostgreSQL's own grammar through pglast's JSON tree).

Fail closed: a relation, function or node the analysis does not know refuses the statement; a
sensitive column anywhere but a bare projection refuses it too, naming the column and the use.
Whatever compares, sorts, deduplicates or groups rows is a use of the columns it compares, even
with no expression naming them: set operations other than UNION ALL, DISTINCT, NATURAL and
USING joins, output positions in DISTINCT ON and grouping sets, SEARCH and CYCLE.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from pglast import parser

from bastion.masking import catalog_reads as reads
from bastion.masking import functions, settings
from bastion.masking.catalog import SYSTEM_SCHEMAS, Catalog, Relation
from bastion.masking.functions import MASKED_ALLOWED
from bastion.masking.shapes import (
    CLAUSES,
    CTE_CLAUSES,
    SELECT_FIELDS,
    SET_OPERATIONS,
    expr_name,
    grouping_items,
    has_name,
    items,
    names_in,
    output_ref,
    walk,
)
from bastion.sqlparse.tree import Node, string_list, unwrap

Source = tuple[int, int]  # (relation OID, attnum)
MAX_VIEW_DEPTH = 8
MAX_RECURSIVE_PASSES = 16

# Built-in functions a masked session may call (pg_catalog, unqualified): the table, with why,
# is bastion.masking.functions; set_config is SET by another name (bastion.masking.settings).
SAFE_FUNCTIONS = frozenset(MASKED_ALLOWED)


class Refused(Exception):
    """The statement cannot run in masked mode; the message says why, naming the column."""


class UnknownRelation(Refused):
    """A relation the catalog snapshot does not hold (maybe created since it was read)."""


def statements(sql: str) -> list[tuple[str, Node]]:
    """Every statement in `sql`, parsed, in order (none for text with only comments)."""
    parsed = json.loads(parser.parse_sql_json(sql))
    return [unwrap(s["stmt"]) for s in parsed.get("stmts", [])]


def only_statement(sql: str) -> tuple[str, Node]:
    """The one statement in `sql`, parsed; Refused when there are more (or none)."""
    found = statements(sql)
    if len(found) != 1:
        raise Refused("send one statement at a time in masked mode")
    return found[0]


@dataclass(frozen=True)
class Col:
    """One column of a result or a range: its sources and whether it is a bare projection."""

    name: str
    sources: frozenset[Source] = frozenset()
    bare: bool = False
    row: int = 0  # which occurrence of a relation a bare column comes from (0: none proven)
    # Values from sides that differ (a set operation): one keyed hash over them all would let
    # a value of the engineer's choosing be compared with the real one.
    mixed: bool = False


OPEN = Col("\0open")  # marks a function in FROM whose output columns are not known by name


@dataclass
class Scope:
    """The ranges visible to an expression (alias → columns), and the enclosing scope."""

    entries: list[tuple[str, list[Col]]] = field(default_factory=list)
    parent: Scope | None = None
    ctes: dict[str, list[Col]] = field(default_factory=dict)

    def cte(self, name: str) -> list[Col] | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.ctes:
                return scope.ctes[name]
            scope = scope.parent
        return None


@dataclass
class Analyzer:
    catalog: Catalog
    sensitive: Callable[[Source], bool]
    search_path: tuple[str, ...] = ("public",)
    depth: int = 0
    occurrences: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    recursing: int = 0  # WITH RECURSIVE passes being analysed, one inside another
    passes: int = 0  # passes analysed under the outermost WITH RECURSIVE
    # Parameters the statement passes to current_setting as a name: checked at each Bind.
    setting_params: set[int] = field(default_factory=set)

    # -- statements -------------------------------------------------------------------

    def statement(self, sql: str) -> list[Col]:
        """The output columns of the one SELECT in `sql` (Refused for anything else)."""
        name, fields = only_statement(sql)
        if name != "SelectStmt":
            raise Refused(f"{name} is not allowed in masked mode")
        return self.select(fields, None)

    def select(self, node: Node, outer: Scope | None) -> list[Col]:
        unknown = sorted(k for k, v in node.items() if v and k not in SELECT_FIELDS)
        if unknown:
            raise Refused(f"SELECT with {', '.join(unknown)} is not analysed in masked mode")
        if node.get("intoClause") or node.get("lockingClause"):
            raise Refused("SELECT INTO and FOR UPDATE/SHARE are not allowed in masked mode")
        scope = Scope(parent=outer)
        self._with(node.get("withClause"), scope)
        if node.get("op", "SETOP_NONE") != "SETOP_NONE":
            cols = self._set_operation(node, scope)
        elif node.get("valuesLists"):
            cols = self._values(node["valuesLists"], scope)
        else:
            for item in node.get("fromClause", []):
                scope.entries.extend(self._range(item, scope))
            cols = self._targets(node.get("targetList", []), scope)
            for key, use in CLAUSES:
                self._use(node.get(key), scope, use, [])
            self._distinct(node.get("distinctClause"), scope, cols)
            self._use(grouping_items(node.get("groupClause")), scope, "GROUP BY", cols)
        self._use(node.get("sortClause"), scope, "ORDER BY", cols)
        self._use(node.get("limitCount"), scope, "LIMIT", [])
        self._use(node.get("limitOffset"), scope, "OFFSET", [])
        return cols

    def _with(self, clause: Node | None, scope: Scope) -> None:
        if not clause:
            return
        for item in clause.get("ctes", []):
            _, cte = unwrap(item)
            _, query = unwrap(cte["ctequery"])
            if "SelectStmt" not in cte["ctequery"]:
                raise Refused("only SELECT may appear in WITH in masked mode")
            if clause.get("recursive"):
                scope.ctes[cte["ctename"]] = self._recursive(cte, query, scope)
            else:
                cols = self.select(query, scope)
                scope.ctes[cte["ctename"]] = _renamed(cols, cte.get("aliascolnames"))

    def _recursive(self, cte: Node, query: Node, scope: Scope) -> list[Col]:
        """A CTE of WITH RECURSIVE. The UNION that joins its terms is checked as any set
        operation; SEARCH sorts by its columns and CYCLE compares them, so both use them."""
        if self.recursing >= reads.MAX_RECURSIVE_NESTING:
            raise Refused("WITH RECURSIVE nested this deeply is not analysed in masked mode")
        if not self.recursing:
            self.passes = 0
        self.recursing += 1
        try:
            cols = self._fixpoint(cte, query, scope)
        finally:
            self.recursing -= 1
        added: list[Col] = []
        for key, listed, extra, use in CTE_CLAUSES:
            found = cte.get(key)
            if found:
                wanted = [c for c in cols if c.name in string_list(found.get(listed))]
                self._compared(wanted, use)
                sources = frozenset(s for c in wanted for s in c.sources)
                added.extend(Col(str(found[k]), sources) for k in extra if found.get(k))
        return cols + added

    def _fixpoint(self, cte: Node, query: Node, scope: Scope) -> list[Col]:
        """The non-recursive term's columns, then the whole query's with each pass's columns
        as the CTE's, until their sources stop growing."""
        name, names = cte["ctename"], cte.get("aliascolnames")

        def columns(node: Node) -> list[Col]:
            return [
                replace(c, bare=False, row=0) for c in _renamed(self.select(node, scope), names)
            ]

        cols = columns(query["larg"] if query.get("op") == "SETOP_UNION" else query)
        for _ in range(MAX_RECURSIVE_PASSES):
            self.passes += 1
            if self.passes > reads.MAX_NESTED_PASSES:
                raise Refused(f"WITH RECURSIVE {name} needs too many passes to be analysed")
            scope.ctes[name] = cols
            again = columns(query)
            if again == cols:
                return cols
            cols = again
        raise Refused(f"WITH RECURSIVE {name} cannot be traced to its sources")

    def _set_operation(self, node: Node, scope: Scope) -> list[Col]:
        left, right = self.select(node["larg"], scope), self.select(node["rarg"], scope)
        if len(left) != len(right):
            raise Refused("each side of a set operation must have as many columns")
        # A row comes from either side: no occurrence is proven.
        cols = [Col(a.name, a.sources | b.sources, a.bare and b.bare,
                    mixed=a.mixed or b.mixed or a.sources != b.sources)
                for a, b in zip(left, right, strict=True)]  # fmt: skip
        op = SET_OPERATIONS.get(node["op"])
        if op is None:
            raise Refused(f"set operation {node['op']} is not analysed in masked mode")
        if op != "UNION" or not node.get("all"):
            shown = f"{op} ALL" if node.get("all") else op
            hint = " (UNION ALL does not)" if shown == "UNION" else ""
            self._compared(cols, f"{shown}, which compares every column it combines{hint}")
        return cols

    def _distinct(self, clause: list[Node] | None, scope: Scope, cols: list[Col]) -> None:
        """DISTINCT compares every output column; DISTINCT ON its expressions, which may name
        an output column by name or position as ORDER BY does."""
        if not clause:
            return
        if any(not item for item in clause):
            self._compared(cols, "DISTINCT, which compares every column it returns")
        self._use([item for item in clause if item], scope, "DISTINCT ON", cols)

    def _compared(self, cols: list[Col], use: str) -> None:
        for col in cols:
            self._check(col, use)

    def _values(self, rows: list[Node], scope: Scope) -> list[Col]:
        for row in rows:
            self._use(row, scope, "VALUES", [])
        width = len(unwrap(rows[0])[1].get("items", []))
        return [Col(f"column{i + 1}") for i in range(width)]

    # -- ranges (FROM) ----------------------------------------------------------------

    def _range(self, item: Node, scope: Scope) -> list[tuple[str, list[Col]]]:
        name, node = unwrap(item)
        if name == "RangeVar":
            return [self._relation(node, scope)]
        if name == "RangeSubselect":
            alias = node.get("alias", {})
            inner = Scope(entries=list(scope.entries) if node.get("lateral") else [],
                          parent=scope.parent, ctes=scope.ctes)  # fmt: skip
            cols = self.select(unwrap(node["subquery"])[1], inner)
            return [(alias.get("aliasname", ""), _renamed(cols, alias.get("colnames")))]
        if name == "JoinExpr":
            left, right = self._range(node["larg"], scope), self._range(node["rarg"], scope)
            entries = left + right
            joined = Scope(entries=scope.entries + entries, parent=scope.parent, ctes=scope.ctes)
            self._use(node.get("quals"), joined, "a JOIN condition", [])
            self._join_columns(node, left, right)
            return entries
        if name == "RangeFunction":
            return [self._range_function(node, scope)]
        raise Refused(f"{name} in FROM is not allowed in masked mode")

    def _join_columns(self, node: Node, left: list[tuple[str, list[Col]]],
                      right: list[tuple[str, list[Col]]]) -> None:  # fmt: skip
        """USING and NATURAL compare the columns of that name on both sides (every column of
        that name: a side may itself be a join), so each is used."""
        names = set(string_list(node.get("usingClause")))
        use = f"JOIN ... USING ({', '.join(sorted(names))})"
        if node.get("isNatural"):
            use = "a NATURAL JOIN, which compares the columns both sides share"
            left_names, right_names = names_in(left), names_in(right)
            if OPEN.name in left_names and OPEN.name in right_names:
                raise Refused("name the columns of a function in FROM: a NATURAL JOIN of two"
                              " cannot be traced")  # fmt: skip
            # A function in FROM whose columns are not known might share any name.
            if OPEN.name in left_names:
                names |= right_names
            elif OPEN.name in right_names:
                names |= left_names
            else:
                names |= left_names & right_names
        for _, cols in left + right:
            for col in cols:
                if col.name in names:
                    self._check(col, use)

    def _relation(self, node: Node, scope: Scope) -> tuple[str, list[Col]]:
        relname, schema = node["relname"], node.get("schemaname")
        alias = node.get("alias", {})
        own = scope.cte(relname) if schema is None else None
        if own is not None:
            # Each reference to a CTE is its own occurrence of the rows inside it.
            fresh: dict[int, int] = {}
            own = [replace(c, row=fresh.setdefault(c.row, next(self.occurrences)) if c.row else 0)
                   for c in own]  # fmt: skip
            return alias.get("aliasname", relname), _renamed(own, alias.get("colnames"))
        relation = self._lookup(schema, relname)
        if relation.definition is not None:
            cols = self._view(relation)
        else:
            row = next(self.occurrences)
            cols = [Col(a.name, frozenset({(relation.relid, a.attnum)}), True, row)
                    for a in relation.attributes]  # fmt: skip
        return alias.get("aliasname", relname), _renamed(cols, alias.get("colnames"))

    def _lookup(self, schema: str | None, name: str) -> Relation:
        # PostgreSQL looks in pg_catalog before the search_path unless the path names it.
        for candidate in [schema] if schema else ["pg_catalog", *self.search_path]:
            for relation in self.catalog.relations.values():
                if relation.schema == candidate and relation.name == name:
                    return relation
            if schema is None and candidate == "pg_catalog" and name in self.catalog.system_names:
                schema = candidate  # found there by the server: not one a masked session reads
                break
        shown = f"{schema}.{name}" if schema else name
        if schema in SYSTEM_SCHEMAS:
            raise Refused(f"{shown} is not allowed in masked mode (only the catalog's"
                          " description of tables, columns, types and roles is)")  # fmt: skip
        raise UnknownRelation(
            f"relation {shown} is not in the catalog bastion knows; nothing unproven runs"
        )

    def _view(self, relation: Relation) -> list[Col]:
        if self.depth >= MAX_VIEW_DEPTH:
            raise Refused(f"view {relation.schema}.{relation.name} nests too deeply to analyse")
        inner = Analyzer(self.catalog, self.sensitive, self.search_path, self.depth + 1,
                         self.occurrences)  # fmt: skip
        try:
            cols = inner.statement(relation.definition or "")
        except Refused as exc:
            raise Refused(f"view {relation.schema}.{relation.name}: {exc}") from None
        return [replace(c, name=a.name)
                for a, c in zip(relation.attributes, cols, strict=False)]  # fmt: skip

    def _range_function(self, node: Node, scope: Scope) -> tuple[str, list[Col]]:
        called: list[str] = []
        for function in node.get("functions", []):
            for call in items(function):
                self._use(call, scope, "a function in FROM", [])
                if isinstance(call, dict) and "FuncCall" in call:
                    called.append(string_list(call["FuncCall"].get("funcname"))[-1])
        alias = node.get("alias", {})
        names = [str(n) for n in string_list(alias.get("colnames"))]
        if names:
            return alias.get("aliasname", ""), [Col(n) for n in names]
        if len(called) == 1 and reads.one_column(node):
            name = alias.get("aliasname", called[0])
            return name, [Col(name)]
        # Named by the function, or by its OUT parameters, which the snapshot does not hold:
        # any name the other ranges lack is one of them (allowlisted, its arguments clean).
        return alias.get("aliasname", called[0] if called else ""), [Col(n) for n in called] + [
            OPEN
        ]

    # -- expressions ------------------------------------------------------------------

    def _targets(self, targets: list[Node], scope: Scope) -> list[Col]:
        cols: list[Col] = []
        for target in targets:
            _, res = unwrap(target)
            value = res.get("val", {})
            name, node = unwrap(value)
            if name == "ColumnRef":
                cols.extend(self._column_target(node, scope, res.get("name")))
                continue
            sources = self._sources(value, scope)
            self._check(sources, "an expression")
            cols.append(Col(res.get("name") or expr_name(name, node), frozenset(sources)))
        return cols

    def _column_target(self, node: Node, scope: Scope, alias: str | None) -> list[Col]:
        fields = node["fields"]
        if "A_Star" in fields[-1]:
            qualifier = string_list(fields[:-1])
            entries = [e for e in scope.entries if not qualifier or e[0] == qualifier[-1]]
            if qualifier and not entries:
                raise Refused(f"no range named {qualifier[-1]}")
            if any(OPEN in cols for _, cols in entries):
                raise Refused("name the columns of a function in FROM: * cannot be expanded")
            return [c for _, cols in entries for c in cols]
        found = self._resolve(string_list(fields), scope)
        if isinstance(found, Col):
            return [replace(found, name=alias or found.name)]
        self._check(found, "a whole-row reference")
        return [Col(alias or string_list(fields)[-1], frozenset(found))]

    def _resolve(self, names: list[str], scope: Scope) -> Col | set[Source]:
        """A column by name (maybe qualified), or a whole row's sources by range alias."""
        found = self._find(names, scope)
        if found is not None:
            return found
        current: Scope | None = scope
        while current is not None:
            for alias, cols in current.entries:
                if OPEN in cols and (len(names) == 1 or names[-2] == alias):
                    return Col(names[-1])  # an output column of a function in FROM
            current = current.parent
        system = reads.system_column(names, scope)
        if system is not None:
            return Col(names[-1], frozenset({system[0]}), True, system[1])
        raise Refused(f"column {'.'.join(names)} cannot be traced to a source")

    def _find(self, names: list[str], scope: Scope) -> Col | set[Source] | None:
        current: Scope | None = scope
        while current is not None:
            for alias, cols in current.entries:
                if len(names) == 1 and names[0] == alias and not has_name(cols, alias):
                    return {s for c in cols for s in c.sources}
                if len(names) >= 2 and names[-2] != alias:
                    continue
                for col in cols:
                    if col.name == names[-1] and col is not OPEN:
                        return col
            current = current.parent
        return None

    def _sources(self, value: object, scope: Scope) -> set[Source]:
        """Every source an expression reads (sub-selects analysed in their own scope)."""
        found: set[Source] = set()
        for name, node in walk(value):
            if name == "ColumnRef":
                if "A_Star" in node["fields"][-1]:
                    found |= self._whole_rows(string_list(node["fields"][:-1]), scope)
                    continue
                resolved = self._resolve(string_list(node["fields"]), scope)
                found |= resolved.sources if isinstance(resolved, Col) else resolved
            elif name == "SubLink":
                for col in self.select(unwrap(node["subselect"])[1], scope):
                    found |= col.sources
                found |= self._sources(node.get("testexpr"), scope)
            elif name == "FuncCall":
                self._function(node)
                if string_list(node.get("funcname"))[-1] == "current_setting":
                    self._setting_name(node, scope)
        return found

    def _setting_name(self, node: Node, scope: Scope) -> None:
        listed = self.catalog.column_source("pg_catalog", "pg_settings", "name")
        reads_ = lambda a: self._sources(a, scope)  # noqa: E731
        param, why = settings.setting_param(node.get("args"), reads_, listed)
        if why is not None:
            raise Refused(why)
        if param is not None:
            self.setting_params.add(param)

    def _whole_rows(self, qualifier: list[str], scope: Scope) -> set[Source]:
        """`t.*` (or `*`) inside an expression, as in count(t.*) or ROW(t.*): the sources of
        every column of that range (of every range in this scope, for a bare `*`)."""
        current: Scope | None = scope
        while current is not None:
            entries = [cols for alias, cols in current.entries
                       if not qualifier or alias == qualifier[-1]]  # fmt: skip
            if entries:
                return {s for cols in entries for c in cols for s in c.sources}
            current = current.parent
        raise Refused(f"no range named {'.'.join(qualifier) or '*'}")

    def _function(self, node: Node) -> None:
        names = string_list(node.get("funcname"))
        if reads.catalog_function(names):
            return
        if names in (["set_config"], ["pg_catalog", "set_config"]):
            why = settings.set_config_refusal(node.get("args"))
        else:
            why = functions.refusal(names)
        if why is not None:
            raise Refused(why)

    def _use(self, value: object, scope: Scope, use: str, outputs: list[Col]) -> None:
        """Check a clause that reads columns without returning them (WHERE, ORDER BY, ...)."""
        if value is None:
            return
        for item in value if isinstance(value, list) else [value]:
            # ORDER BY and GROUP BY may name an output column; both readings are checked.
            target = output_ref(item, outputs)
            try:
                sources = self._sources(item, scope)
            except Refused:
                if target is None:
                    raise
                sources = set()
            self._check(sources | (target.sources if target else set()), use)

    def _check(self, sources: Col | set[Source], use: str) -> None:
        found = sources.sources if isinstance(sources, Col) else sources
        for source in sorted(found):
            if self.sensitive(source):
                raise Refused(f"{self.catalog.describe(source)} is sensitive: it may only be"
                              " selected as"
                              f" it is (and is then masked), not used in {use}")  # fmt: skip


def _renamed(cols: list[Col], colnames: object) -> list[Col]:
    names = string_list(colnames)
    return [replace(c, name=names[i]) if i < len(names) else c for i, c in enumerate(cols)]
