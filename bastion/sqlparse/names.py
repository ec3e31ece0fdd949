"""What a read grant's guard knows of a target's names: columns, fields, and its own functions.

A snapshot read when a session opens (pure once the rows are read). The guard uses it to prove
that `o.f` and `(x).f` select a column or field, since PostgreSQL otherwise reads them as a
call of a function f, and to see which built-in names, operators and casts the database has
also defined for itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Columns = tuple[tuple[str, int], ...]
"""A relation's or composite type's columns in order: (name, the pg_class OID of the column's
composite type, or 0 when its type is not composite)."""


@dataclass(frozen=True)
class Relation:
    relid: int
    schema: str
    name: str
    columns: Columns
    kind: str = "r"  # a pg_class relkind: r, v, m, p, f; c for a composite type

    @property
    def is_range(self) -> bool:
        """Whether FROM can name it (a composite type cannot)."""
        return self.kind != "c"

    def names(self) -> list[str]:
        return [name for name, _ in self.columns]


@dataclass(frozen=True, eq=False)
class GuardCatalog:
    """One target's names, as the session's role sees them when the session opens."""

    by_relid: Mapping[int, Relation] = field(default_factory=dict)
    by_name: Mapping[str, tuple[Relation, ...]] = field(default_factory=dict)
    # Built-in functions returning rows: per overload, its output column names (None: scalar,
    # named after the function or its alias; () : a record whose columns are not known).
    function_columns: Mapping[str, tuple[tuple[str, ...] | None, ...]] = field(default_factory=dict)
    own_functions: frozenset[str] = frozenset()  # names defined outside pg_catalog
    own_operators: frozenset[str] = frozenset()  # symbols defined outside pg_catalog
    own_cast_types: frozenset[str] = frozenset()  # casts to these run the database's code
    own_type_oids: frozenset[int] = frozenset()  # the same types, as Parse's parameter types
    cache: OrderedDict[str, str | None] = field(default_factory=OrderedDict, repr=False)
    """The guard's verdicts on this snapshot, by statement shape (bastion.sqlparse.disguise)."""

    @classmethod
    def from_rows(
        cls,
        columns: Iterable[Mapping[str, Any]],
        functions: Iterable[Mapping[str, Any]] = (),
        own_functions: Iterable[str] = (),
        own_operators: Iterable[str] = (),
        own_cast_types: Iterable[str] = (),
        *,
        own_type_oids: Iterable[int] = (),
    ) -> GuardCatalog:
        """Build the snapshot from the rows of bastion.audit.catalog's GUARD_ queries."""
        found: dict[int, tuple[str, str, str, list[tuple[str, int]]]] = {}
        for row in columns:
            relid = int(row["relid"])
            entry = found.setdefault(
                relid, (str(row["schema"]), str(row["relation"]), str(row["kind"]), [])
            )
            entry[3].append((str(row["column_name"]), int(row["type_relid"] or 0)))
        by_relid = {
            relid: Relation(relid, schema, name, tuple(cols), kind)
            for relid, (schema, name, kind, cols) in found.items()
        }
        by_name: dict[str, list[Relation]] = {}
        for relation in by_relid.values():
            by_name.setdefault(relation.name, []).append(relation)
        return cls(
            by_relid,
            {name: tuple(rels) for name, rels in by_name.items()},
            _function_columns(functions, by_relid),
            frozenset(own_functions),
            frozenset(own_operators),
            frozenset(own_cast_types),
            frozenset(own_type_oids),
        )

    def relations(self, name: str, schema: str | None = None) -> tuple[Relation, ...]:
        """Every relation or composite type of that name (in any schema unless one is given)."""
        found = self.by_name.get(name, ())
        return found if schema is None else tuple(r for r in found if r.schema == schema)


def _function_columns(
    rows: Iterable[Mapping[str, Any]], by_relid: Mapping[int, Relation]
) -> dict[str, tuple[tuple[str, ...] | None, ...]]:
    """Per function name, each overload's output columns; names whose overloads are all scalar
    are left out (a function the snapshot does not list is scalar)."""
    overloads: dict[str, list[tuple[str, ...] | None]] = {}
    for row in rows:
        outs, relid = row.get("outs"), int(row.get("relid") or 0)
        if outs:
            columns: tuple[str, ...] | None = tuple(str(outs).split(","))
        elif relid:
            relation = by_relid.get(relid)
            columns = tuple(relation.names()) if relation is not None else ()
        elif row.get("is_record") in (True, "t", "true"):
            columns = ()
        else:
            columns = None
        overloads.setdefault(str(row["name"]), []).append(columns)
    return {
        name: tuple(found) for name, found in overloads.items() if any(c is not None for c in found)
    }
