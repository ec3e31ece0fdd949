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


# -- a read grant's guard (bastion.sqlparse.names) ------------------------------------------

# Every column of every relation and composite type the session's role can name, system
# schemas included (a read grant may read them), each with the pg_class OID of its type when
# that type is composite: what proves that `o.f` and `(o.addr).street` select a column.
GUARD_COLUMNS = """
SELECT c.oid AS relid, n.nspname AS schema, c.relname AS relation, c.relkind::text AS kind,
       a.attname AS column_name, COALESCE(NULLIF(t.typrelid, 0), b.typrelid, 0) AS type_relid
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
 WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'c')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
 ORDER BY c.oid, a.attnum
"""

# The built-in functions that may return rows or records: each overload of such a name (the
# scalar ones too) with its output column names (OUT, INOUT and TABLE parameters), or its
# composite result type, or whether it returns a record.
GUARD_FUNCTIONS = """
SELECT p.proname AS name,
       (SELECT array_to_string(array_agg(u.n ORDER BY u.i), ',')
          FROM unnest(p.proargnames, p.proargmodes) WITH ORDINALITY AS u(n, m, i)
         WHERE u.m IN ('o', 'b', 't')) AS outs,
       t.typrelid AS relid, p.prorettype = 'pg_catalog.record'::pg_catalog.regtype AS is_record
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_type t ON t.oid = p.prorettype
 WHERE p.pronamespace = 'pg_catalog'::pg_catalog.regnamespace
   AND p.proname IN (
       SELECT q.proname FROM pg_catalog.pg_proc q JOIN pg_catalog.pg_type r ON r.oid = q.prorettype
        WHERE q.pronamespace = 'pg_catalog'::pg_catalog.regnamespace
          AND (q.proargmodes IS NOT NULL OR r.typrelid <> 0
               OR q.prorettype = 'pg_catalog.record'::pg_catalog.regtype))
"""

# Function names and operator symbols defined outside pg_catalog: an unqualified call of that
# name, or that symbol, may find the database's own code rather than the built-in.
GUARD_OWN_FUNCTIONS = """
SELECT DISTINCT p.proname AS name FROM pg_catalog.pg_proc p
 WHERE p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace
"""
GUARD_OWN_OPERATORS = """
SELECT DISTINCT o.oprname AS name FROM pg_catalog.pg_operator o
 WHERE o.oprnamespace <> 'pg_catalog'::pg_catalog.regnamespace
"""

# Types whose values may run the database's own code wherever a statement names them: every
# domain outside the system schemas (its checks, or its base domain's, may call a function),
# a type whose input, receive or typmod function is not a built-in, the target of a cast whose
# function is not a built-in, and, transitively, each array, domain, range and composite type
# (or table row) built on one of those.
GUARD_OWN_CAST_TYPES = """
WITH RECURSIVE own(oid) AS (
  SELECT t.oid FROM pg_catalog.pg_type t
   WHERE (t.typtype = 'd'
          AND t.typnamespace NOT IN ('pg_catalog'::pg_catalog.regnamespace,
                                     'information_schema'::pg_catalog.regnamespace))
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                  WHERE p.oid IN (t.typinput, t.typreceive, t.typmodin)
                    AND p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace)
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast k JOIN pg_catalog.pg_proc p
                     ON p.oid = k.castfunc
                  WHERE k.casttarget = t.oid
                    AND p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace)
  UNION
  SELECT t.oid FROM pg_catalog.pg_type t, own
   WHERE t.typelem = own.oid OR t.typbasetype = own.oid
      OR EXISTS (SELECT 1 FROM pg_catalog.pg_range r
                  WHERE r.rngtypid = t.oid AND r.rngsubtype = own.oid)
      OR (t.typrelid <> 0
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                         AND a.atttypid = own.oid))
)
SELECT t.oid AS oid, t.typname AS name FROM pg_catalog.pg_type t
 WHERE t.oid IN (SELECT oid FROM own)
"""
