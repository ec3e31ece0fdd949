"""What tools' catalog queries need from masked mode's lineage analysis (pure): the functions
they call, a table's system columns, functions in FROM that return one column, and a budget
for one WITH RECURSIVE inside another (psql, pgcli, SQLAlchemy, asyncpg, pgjdbc, GUI tools)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bastion.masking.shapes import items
from bastion.sqlparse.functions import (
    MASKED_CATALOG_FUNCTIONS,
    MASKED_INFORMATION_SCHEMA_FUNCTIONS,
)
from bastion.sqlparse.tree import Node, string_list

# WITH RECURSIVE inside another (asyncpg's type introspection has one): each outer pass re-reads
# the inner one, so the passes multiply. Two levels at most, and one outermost WITH RECURSIVE
# and all inside it share a budget of passes (asyncpg's needs under 10), so a statement cannot
# buy much more analysis per byte than with one level.
MAX_RECURSIVE_NESTING = 2
MAX_NESTED_PASSES = 48

# A table's system columns (PostgreSQL's attnums): row versions and places, no stored value.
# psql's \dd and \dL join the catalogs on tableoid. Projected, they are masked by the origin
# cross-check (the catalog snapshot knows no such attnum).
SYSTEM_COLUMNS = {"tableoid": -6, "cmax": -5, "xmax": -4, "cmin": -3, "xmin": -2, "ctid": -1}
ONE_COLUMN = frozenset({"generate_series", "generate_subscripts"})  # and unnest of one array


class Column(Protocol):
    """What lineage's Col offers here."""

    @property
    def sources(self) -> frozenset[tuple[int, int]]: ...

    @property
    def bare(self) -> bool: ...

    @property
    def row(self) -> int: ...


class Scope(Protocol):
    """What lineage's Scope offers here: its ranges, then the enclosing scope's."""

    @property
    def entries(self) -> Sequence[tuple[str, Sequence[Column]]]: ...

    @property
    def parent(self) -> Scope | None: ...


def catalog_function(names: list[str]) -> bool:
    """Whether masked mode allows this function for tools' catalog queries (bastion.sqlparse.
    functions' masked block): unqualified or in pg_catalog, or information_schema's helper."""
    schema, name = names[:-1], names[-1]
    if schema == ["information_schema"]:
        return name in MASKED_INFORMATION_SCHEMA_FUNCTIONS
    return schema in ([], ["pg_catalog"]) and name in MASKED_CATALOG_FUNCTIONS


def one_column(node: Node) -> bool:
    """A RangeFunction that returns one column, named after its alias or the function: unnest
    of one array, generate_series, generate_subscripts (pgcli reads `*` of unnest(...))."""
    functions = node.get("functions", [])
    if len(functions) != 1 or node.get("ordinality"):
        return False
    calls = [c for c in items(functions[0]) if isinstance(c, dict) and "FuncCall" in c]
    if len(calls) != 1:
        return False
    call = calls[0]["FuncCall"]
    names = string_list(call.get("funcname"))
    if names[:-1] not in ([], ["pg_catalog"]):
        return False
    if names[-1] == "unnest":
        return len(call.get("args", [])) == 1
    return names[-1] in ONE_COLUMN


def system_column(names: list[str], scope: Scope | None) -> tuple[tuple[int, int], int] | None:
    """The (relation OID, attnum) and occurrence of a system column (tableoid, ctid, ...) named
    by `names`, of the first visible range that is one table's columns; None if there is none."""
    attnum = SYSTEM_COLUMNS.get(names[-1])
    while scope is not None and attnum is not None:
        for alias, cols in scope.entries:
            if len(names) >= 2 and names[-2] != alias:
                continue
            relids = {relid for c in cols for relid, _ in c.sources}
            if len(relids) == 1 and all(c.bare and len(c.sources) == 1 for c in cols):
                return (relids.pop(), attnum), cols[0].row
        scope = scope.parent
    return None
