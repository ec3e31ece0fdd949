"""The SQL `bastion target harden` runs on a target: least-privilege roles for the door (built
here with the rest of bastion's SQL; the identifiers come from the target's own catalog)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A quoted SQL string literal (standard_conforming_strings, the default since 9.1)."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Hardening:
    """What to create: the roles, the database, the schemas to pin, and per relation
    (schema, name) the columns the masked role may read."""

    database: str
    masked_role: str
    unmasked_role: str
    schemas: Sequence[str]
    clean_columns: Mapping[tuple[str, str], Sequence[str]]
    keep_temp_for: Sequence[str] = ()  # roles that keep TEMP once PUBLIC loses it


def role_statements(role: str, password: str, search_path: Sequence[str]) -> list[str]:
    """A login role with nothing beyond what it is granted, read-only, on a pinned path."""
    path = ", ".join(ident(s) for s in search_path) or "pg_catalog"
    return [
        f"CREATE ROLE {ident(role)} LOGIN PASSWORD {literal(password)} NOSUPERUSER NOCREATEDB"
        " NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT",
        f"ALTER ROLE {ident(role)} SET default_transaction_read_only = on",
        f"ALTER ROLE {ident(role)} SET search_path = {path}",
    ]


def statements(plan: Hardening, masked_password: str, unmasked_password: str) -> list[str]:
    """Every statement, in order; run in one transaction."""
    db = ident(plan.database)
    masked, unmasked = ident(plan.masked_role), ident(plan.unmasked_role)
    out = [
        *role_statements(plan.masked_role, masked_password, plan.schemas),
        *role_statements(plan.unmasked_role, unmasked_password, plan.schemas),
        # TEMP is granted to PUBLIC by default, so no single role can be denied it; take it
        # from PUBLIC and give it back to the roles that had it through PUBLIC.
        f"REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC",
        *(f"GRANT TEMPORARY ON DATABASE {db} TO {ident(r)}" for r in plan.keep_temp_for),
        f"REVOKE CREATE ON DATABASE {db} FROM {masked}, {unmasked}",
        f"GRANT CONNECT ON DATABASE {db} TO {masked}, {unmasked}",
    ]
    for schema in plan.schemas:
        out.append(f"REVOKE CREATE ON SCHEMA {ident(schema)} FROM PUBLIC")
        out.append(f"GRANT USAGE ON SCHEMA {ident(schema)} TO {masked}, {unmasked}")
    for (schema, relation), columns in sorted(plan.clean_columns.items()):
        name = f"{ident(schema)}.{ident(relation)}"
        if columns:
            cols = ", ".join(ident(c) for c in columns)
            out.append(f"GRANT SELECT ({cols}) ON {name} TO {masked}")
        out.append(f"GRANT SELECT ON {name} TO {unmasked}")
    return out


# Which protections a role lacks, read from the target: one row, booleans.
CHECK_ROLE = """
SELECT r.rolsuper OR r.rolbypassrls AS powerful,
       has_database_privilege(r.rolname, current_database(), 'TEMP') AS can_temp,
       has_database_privilege(r.rolname, current_database(), 'CREATE') AS can_create,
       pg_has_role(r.rolname, 'pg_read_server_files', 'USAGE')
         OR pg_has_role(r.rolname, 'pg_execute_server_program', 'USAGE') AS server_files,
       pg_has_role(r.rolname, 'pg_monitor', 'USAGE')
         OR pg_has_role(r.rolname, 'pg_read_all_stats', 'USAGE') AS monitoring,
       pg_has_role(r.rolname, 'pg_read_all_settings', 'USAGE') AS all_settings,
       coalesce(r.rolconfig::text, '') LIKE '%default_transaction_read_only=on%' AS read_only,
       coalesce(r.rolconfig::text, '') LIKE '%search_path=%' AS pinned_path
  FROM pg_roles r WHERE r.rolname = current_user
"""

# Roles that can use TEMP on the database only through PUBLIC (they keep it after hardening).
TEMP_THROUGH_PUBLIC = """
SELECT r.rolname FROM pg_roles r
 WHERE r.rolcanlogin AND NOT r.rolsuper
   AND has_database_privilege(r.rolname, current_database(), 'TEMP')
"""


def role_exists(role: str) -> str:
    """A query with one row when the role exists (simple protocol: the name as a literal)."""
    return f"SELECT 1 AS found FROM pg_roles WHERE rolname = {literal(role)}"


def readable_columns(columns: Sequence[tuple[int, int]]) -> str:
    """How many of the given columns (relation OIDs, attnums) the current role may read."""
    relids = ",".join(str(int(r)) for r, _ in columns)
    attnums = ",".join(str(int(a)) for _, a in columns)
    return (f"SELECT count(*) FILTER (WHERE has_column_privilege(c.relid, c.attnum, 'SELECT'))"
            f" AS readable FROM unnest('{{{relids}}}'::oid[], '{{{attnums}}}'::int2[])"
            " AS c(relid, attnum)")  # fmt: skip
