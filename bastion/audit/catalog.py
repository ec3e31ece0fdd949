"""The queries bastion runs against a target's own pg_catalog (kept with the rest of its SQL)."""

from __future__ import annotations

# Every column of every table, view, materialized view, partitioned and foreign table outside
# the system schemas, with its type and whether the type is a string (typcategory 'S').
_COLUMNS_OF = """
SELECT c.oid AS relid, n.nspname AS schema, c.relname AS relation, c.relkind::text AS kind,
       a.attnum AS attnum, a.attname AS column_name, a.atttypid AS type_oid,
       t.typname AS type_name, t.typcategory = 'S' AS text_like
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
 WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
"""
_IN_ORDER = " ORDER BY n.nspname, c.relname, a.attnum\n"
COLUMNS = (
    _COLUMNS_OF
    + """   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""
    + _IN_ORDER
)

# Child to parent, for inheritance and partitions: a rule on a parent covers its children.
INHERITS = "SELECT inhrelid AS child, inhparent AS parent FROM pg_inherits"

# The text of every view and materialized view, for lineage through them.
VIEWS = """
SELECT c.oid AS relid, pg_get_viewdef(c.oid) AS definition
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


def metadata_columns(names: dict[str, tuple[str, ...]]) -> str:
    """COLUMNS for the system relations named (schema -> relation names) that a masked session
    may read: the catalog's own description, no data. The names are the bastion's constants."""
    wanted = " OR ".join(
        f"(n.nspname = '{schema}' AND c.relname IN ({', '.join(repr(r) for r in relations)}))"
        for schema, relations in sorted(names.items())
    )
    return _COLUMNS_OF + f"   AND ({wanted})\n" + _IN_ORDER


# Every relation name in pg_catalog: an unqualified name PostgreSQL would find there first.
SYSTEM_NAMES = """
SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'pg_catalog' AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
"""
