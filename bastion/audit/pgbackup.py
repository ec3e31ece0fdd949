"""Backing up and restoring a store on PostgreSQL with the engine's own tools (pg_dump,
pg_restore), and the few statements a restore needs around them.

The password reaches the tools through a password file of mode 0600 in a private temporary
directory (PGPASSFILE), never argv or a log line. A restore never drops the store it
replaces: the schema is renamed aside first, and the archive's rows are loaded into a new
schema of the store's name (bastion/audit/pgload.py: the archive's own DDL never runs);
putting back means dropping that one and renaming the old one again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bastion.audit.location import SCHEMA, PgLocation
from bastion.audit.restores import new_backup_file
from bastion.audit.sqlconn import Conn, one
from bastion.errors import StoreError, UsageError
from bastion.privatefiles import write_new
from bastion.text import printable_line

PG_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's PostgreSQL 15 tools, before PATH
TOOL_TIMEOUT_S = 3600.0
# A connection a bastion makes to its store (bastion-store/NODE, bastion-listen/NODE).
BASTION_APPS = ("bastion-store/%", "bastion-listen/%")
# The kinds of object a store's dump holds (an allow-list: an archive holding anything else,
# or anything outside the store's schema, is refused whole), and its schema's own entries.
_TOC_KINDS = ("TABLE DATA", "TABLE", "SEQUENCE SET", "SEQUENCE OWNED BY", "SEQUENCE",
              "FK CONSTRAINT", "CONSTRAINT", "INDEX", "FUNCTION", "TRIGGER", "VIEW",
              "DEFAULT")  # fmt: skip
_TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ (" + "|".join(_TOC_KINDS) + r") (\S+) ")
_TOC_SCHEMA = re.compile(r"^\d+; \d+ \d+ (SCHEMA -|COMMENT - SCHEMA|ACL - SCHEMA) (\S+) ")


def tool(name: str) -> str:
    """The path of pg_dump or pg_restore: PostgreSQL 15's, else the one on PATH."""
    local = PG_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise StoreError(f"{name} is not installed (looked in {PG_BIN} and PATH)")
    return found


def _pgpass_line(password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:*:{escaped}\n"


@contextmanager
def _tool_env(location: PgLocation) -> Iterator[dict[str, str]]:
    """The environment for a tool: PGPASSFILE naming a private file with the password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    _url, password, _schema, _head = location.handoff()
    with tempfile.TemporaryDirectory(prefix="bastion-pg-") as directory:
        if password is not None:
            passfile = Path(directory) / "pgpass"
            write_new(passfile, _pgpass_line(password).encode(), 0o600)
            env["PGPASSFILE"] = str(passfile)
        yield env


def _run(location: PgLocation, argv: list[str], what: str) -> str:
    """Run a tool with the store's password in its environment; its output, or StoreError
    with the last line it printed (never a password: the tools do not print it)."""
    with _tool_env(location) as env:
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=TOOL_TIMEOUT_S, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StoreError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or ["no message"]
        raise StoreError(f"{what} failed: {printable_line(lines[-1], 300)}")
    return done.stdout


def dump(location: PgLocation, dest: Path) -> None:
    """The store's schema, dumped by pg_dump (custom format) into `dest`, a new 0600 file."""
    new_backup_file(dest)
    argv = [tool("pg_dump"), "--format=custom", f"--schema={location.schema}", "--no-owner",
            "--no-privileges", f"--file={dest}", f"--dbname={location.url}"]  # fmt: skip
    try:
        _run(location, argv, f"pg_dump of {location}")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def listing(location: PgLocation, archive: Path) -> str:
    """The archive's table of contents, as `pg_restore --list` prints it (nothing connects)."""
    return _run(location, [tool("pg_restore"), "--list", str(archive)], f"reading {archive}")


def admin_location(where: PgLocation) -> PgLocation:
    """The store's database with only pg_catalog on the search path: a connection to it
    opens whether or not the store's schema exists (for the statements here)."""
    url, password, _schema, head = where.handoff()
    return PgLocation.handed(url, password, schema="pg_catalog", head_file=head)


def entries(listing: str, schema: str, archive: Path) -> list[str]:
    """The archive's entries: only the kinds a store's dump holds, each in the store's
    schema (the schema's own entries left out); UsageError for anything else."""
    kept = []
    for line in listing.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        own = _TOC_SCHEMA.match(line)
        if own and own.group(2) == schema:
            continue
        entry = _TOC_ENTRY.match(line)
        if entry is None or entry.group(2) != schema:
            raise UsageError(f"{archive} is not a dump of the store's schema {schema} alone"
                             f" (it holds: {printable_line(line, 120)})")  # fmt: skip
        kept.append(line)
    if not any(" TABLE DATA " in line for line in kept):
        raise UsageError(f"{archive} holds no table of the schema {schema}: not a store backup")
    return kept


# What a schema's code and shape are, one (kind, name, definition) row each, as the server
# prints them: columns, relations, constraints, indexes, triggers (not the internal ones a
# foreign key makes), rules, views and functions. A restored store must show exactly what
# the store's own migrations make (an archive's rows are data; its code is not trusted).
_SHAPE_SQL = (
    "WITH s AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
    " SELECT 'column' AS kind, c.relname || '.' || a.attname AS name,"
    " format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text || ' '"
    " || a.attidentity::text || a.attgenerated::text || ' '"
    " || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || a.attcollation::regcollation::text"
    " AS def FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE c.relnamespace = (SELECT oid FROM s) AND c.relkind IN ('r', 'p', 'v', 'm')"
    " AND a.attnum > 0 AND NOT a.attisdropped"
    " UNION ALL SELECT 'relation', c.relname, c.relkind::text || ' ' || c.relpersistence::text"
    " || ' ' || c.relrowsecurity::text || c.relforcerowsecurity::text || ' '"
    " || coalesce(array_to_string(c.reloptions, ','), '') FROM pg_class c"
    " WHERE c.relnamespace = (SELECT oid FROM s)"
    " UNION ALL SELECT 'constraint', coalesce(c.relname, '') || '.' || k.conname,"
    " pg_get_constraintdef(k.oid) FROM pg_constraint k LEFT JOIN pg_class c ON c.oid = k.conrelid"
    " WHERE k.connamespace = (SELECT oid FROM s)"
    " UNION ALL SELECT 'index', i.relname, pg_get_indexdef(i.oid) FROM pg_class i"
    " WHERE i.relnamespace = (SELECT oid FROM s) AND i.relkind IN ('i', 'I')"
    " UNION ALL SELECT 'trigger', c.relname || '.' || t.tgname,"
    " pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text FROM pg_trigger t"
    " JOIN pg_class c ON c.oid = t.tgrelid"
    " WHERE c.relnamespace = (SELECT oid FROM s) AND NOT t.tgisinternal"
    " UNION ALL SELECT 'rule', c.relname || '.' || r.rulename, pg_get_ruledef(r.oid)"
    " FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class"
    " WHERE c.relnamespace = (SELECT oid FROM s)"
    " UNION ALL SELECT 'function', p.proname || '(' || pg_get_function_identity_arguments(p.oid)"
    " || ')', CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid)"
    " ELSE p.prokind::text END FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM s)"
)


def shape(conn: Conn, schema: str) -> set[tuple[str, str, str]]:
    """The schema's shape and code (a connection whose current schema is `schema`), the
    schema's own name taken out of every definition (two schemas compare)."""
    rows = conn.execute(_SHAPE_SQL).fetchall()
    out = set()
    for row in rows:
        definition = str(row["def"])
        for named in (f'"{schema}".', f"{schema}.", f"'{schema}'"):
            definition = definition.replace(named, "<schema>")
        out.add((str(row["kind"]), str(row["name"]), definition))
    return out


def _quoted(schema: str) -> str:
    if not SCHEMA.fullmatch(schema):
        raise StoreError(f"{schema!r} is not a plain schema name")
    return f'"{schema}"'


def schema_exists(conn: Conn, schema: str) -> bool:
    rows = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = ?", [schema]).fetchall()
    return bool(rows)


def rename_schema(conn: Conn, schema: str, to: str) -> None:
    """One schema renamed (a restore moves the replaced store aside, or back)."""
    _ddl(conn, f"ALTER SCHEMA {_quoted(schema)} RENAME TO {_quoted(to)}", schema)


def create_schema(conn: Conn, schema: str) -> None:
    _ddl(conn, f"CREATE SCHEMA {_quoted(schema)}", None)


def drop_schema(conn: Conn, schema: str) -> None:
    """A half-restored schema dropped, with everything in it."""
    _ddl(conn, f"DROP SCHEMA IF EXISTS {_quoted(schema)} CASCADE", schema)


def _ddl(conn: Conn, sql: str, schema: str | None) -> None:
    """`sql` in a transaction of its own, holding the chain lock of the store in `schema`
    when it has one (a store from before migration 0024, or a half-made one, has none)."""
    conn.begin_write(chained=False)
    try:
        if schema is not None:
            lock = f"{_quoted(schema)}.chain_lock"
            if one(conn.execute("SELECT to_regclass(?) IS NOT NULL", [lock]))[0]:
                conn.execute(f"LOCK TABLE {lock} IN EXCLUSIVE MODE")
        conn.execute(sql)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def restoring_schemas(conn: Conn, schema: str) -> list[str]:
    """The schemas a restore of `schema` that stopped half-way left (`<schema>_restoring_*`:
    the replaced store, renamed aside until the restore is chained and proven)."""
    rows = conn.execute(
        "SELECT nspname AS name FROM pg_namespace WHERE starts_with(nspname, ?) ORDER BY nspname",
        [restoring_prefix(schema)],
    ).fetchall()
    return [str(r["name"]) for r in rows]


def restoring_prefix(schema: str) -> str:
    return f"{schema}_restoring_"


def others_connected(conn: Conn) -> list[str]:
    """The application names of the other connections a bastion holds to this database
    (a node serving, a command running), as pg_stat_activity shows them."""
    rows = conn.execute(
        "SELECT application_name AS name FROM pg_stat_activity WHERE datname ="
        " current_database() AND pid <> pg_backend_pid() AND (application_name LIKE ?"
        " OR application_name LIKE ?) ORDER BY application_name",
        list(BASTION_APPS),
    ).fetchall()
    return [str(r["name"]) for r in rows]
