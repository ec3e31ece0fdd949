"""The store's schema read back from each engine's catalogs, in one comparable form."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

FOREIGN_KEYS_OFF = "-- bastion: foreign_keys off"
SKIPPED_TABLES = {"schema_migrations"}  # made by each engine's runner, not by a migration

# PostgreSQL's referential actions in SQLite's words
_PG_ACTIONS = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}
# declared types, by engine, as the one name both map to
_SQLITE_TYPES = {"INTEGER": "integer", "TEXT": "text", "BLOB": "blob"}
_PG_TYPES = {"bigint": "integer", "bytea": "blob"}


Migration = tuple[int, str, str]


def migrations_in(directory: Any) -> list[Migration]:
    """(number, file name, sql) of every NNNN_name.sql in a directory (a Path or a resource)."""
    found = []
    for item in directory.iterdir():
        name = item.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, item.read_text(encoding="utf-8")))
    return sorted(found)


def sqlite_migrations() -> list[Migration]:
    """The SQLite migrations as the installed package sees them."""
    return migrations_in(resources.files("bastion.audit").joinpath("migrations"))


def pg_migrations() -> list[Migration]:
    """The PostgreSQL twins as the installed package sees them."""
    return migrations_in(resources.files("bastion.audit").joinpath("migrations", "postgresql"))


def twin_problems(sqlite_side: list[Migration], pg_side: list[Migration]) -> list[str]:
    """One line for each migration that lacks its twin, or whose twin is named otherwise."""
    problems = []
    pg_by_number = {number: name for number, name, _ in pg_side}
    sqlite_by_number = {number: name for number, name, _ in sqlite_side}
    for number, name in sqlite_by_number.items():
        twin = pg_by_number.get(number)
        if twin is None:
            problems.append(f"{name} has no PostgreSQL twin")
        elif twin != name:
            problems.append(f"{name}'s PostgreSQL twin is named {twin}")
    for number, name in pg_by_number.items():
        if number not in sqlite_by_number:
            problems.append(f"postgresql/{name} twins no SQLite migration")
    if len({n for n, _, _ in pg_side}) != len(pg_side):
        problems.append("two PostgreSQL migrations share a number")
    return problems


# -- applying them -------------------------------------------------------------------------


def apply_sqlite(conn: sqlite3.Connection, chosen: list[Migration]) -> None:
    """Each migration in its own IMMEDIATE transaction, as StoreBase._apply_migration does."""
    for _number, name, sql in chosen:
        if FOREIGN_KEYS_OFF in sql:
            conn.execute("PRAGMA foreign_keys=OFF")
        conn.executescript("BEGIN IMMEDIATE;\n" + sql)
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        assert not broken, f"{name} breaks foreign keys: {broken}"
        conn.execute("COMMIT")
        conn.execute("PRAGMA foreign_keys=ON")


def apply_pg(conn: psycopg.Connection[Any], chosen: list[Migration]) -> None:
    """Each twin in its own transaction (the whole script at once, as the runner sends it)."""
    for _number, _name, sql in chosen:
        with conn.transaction():
            conn.execute(sql.encode())  # bytes: no parameters, so % needs no escaping


def open_sqlite(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


# -- the comparable form -------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "integer", "text" or "blob"; anything else is shown as the engine wrote it
    not_null: bool
    default: str | None


@dataclass
class Table:
    columns: list[Column] = field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    uniques: set[tuple[str, ...]] = field(default_factory=set)
    foreign_keys: set[tuple[tuple[str, ...], str, tuple[str, ...], str, str]] = field(
        default_factory=set
    )
    indexes: dict[str, tuple[tuple[str, ...], bool, str | None]] = field(default_factory=dict)
    checks: Counter[tuple[frozenset[str], tuple[str, ...]]] = field(default_factory=Counter)
    generated_ids: set[str] = field(default_factory=set)  # rowid alias / identity column


@dataclass
class Schema:
    tables: dict[str, Table] = field(default_factory=dict)
    views: dict[str, list[str]] = field(default_factory=dict)
    triggers: dict[str, set[str]] = field(default_factory=dict)  # table -> trigger names


def norm_default(text: str | None) -> str | None:
    """'0', "''", "'open'", '-1' from either engine's way of printing a constant default."""
    if text is None:
        return None
    text = text.strip()
    while True:
        stripped = re.sub(r"::[a-z][a-z ]*$", "", text)
        if stripped.startswith("(") and stripped.endswith(")"):
            stripped = stripped[1:-1]
        if stripped == text:
            break
        text = stripped
    number = re.fullmatch(r"'(-?\d+)'", text)
    return number.group(1) if number else text


def norm_where(text: str | None) -> str | None:
    """A partial index's predicate without parentheses, casts and extra spaces."""
    if text is None:
        return None
    text = re.sub(r"::[a-z][a-z ]*?(?=[)\s]|$)", "", text)
    return " ".join(text.replace("(", " ").replace(")", " ").split())


_LITERAL = re.compile(r"'(?:[^']|'')*'")
_LITERAL_OR_NUMBER = re.compile(r"'(?:[^']|'')*'|(?<![\w.])-?\d+(?![\w.])")


def check_signature(expression: str, columns: set[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """What a CHECK constraint rests on: the columns it names and its literals, in order of
    appearance (strings quoted, numbers bare)."""
    literals = [match.group(0) for match in _LITERAL_OR_NUMBER.finditer(expression)]
    names = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", _LITERAL.sub(" ", expression)))
    return frozenset(names & columns), tuple(literals)


def strip_comments(sql: str) -> str:
    """SQL without its -- comments (quotes respected)."""
    out: list[str] = []
    i = 0
    while i < len(sql):
        char = sql[i]
        if char in "'\"":
            end = sql.index(char, i + 1)
            out.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
        else:
            out.append(char)
            i += 1
    return "".join(out)


def check_clauses(create_table: str) -> list[str]:
    """The expressions of every CHECK in a CREATE TABLE statement."""
    sql = strip_comments(create_table)
    found = []
    for match in re.finditer(r"\bCHECK\s*\(", sql, re.IGNORECASE):
        depth, start = 1, match.end()
        i = start
        while depth:
            if sql[i] == "'":
                i = sql.index("'", i + 1)
            elif sql[i] == "(":
                depth += 1
            elif sql[i] == ")":
                depth -= 1
            i += 1
        found.append(sql[start : i - 1])
    return found


# -- SQLite's catalog ----------------------------------------------------------------------


def sqlite_schema(conn: sqlite3.Connection) -> Schema:
    schema = Schema()
    objects = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for kind, name, table, sql in objects:
        if kind == "table" and name not in SKIPPED_TABLES:
            schema.tables[name] = _sqlite_table(conn, name, sql)
        elif kind == "view":
            schema.views[name] = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')]
        elif kind == "trigger":
            schema.triggers.setdefault(table, set()).add(name)
    return schema


def _sqlite_table(conn: sqlite3.Connection, name: str, sql: str) -> Table:
    table = Table()
    info = conn.execute(f'PRAGMA table_info("{name}")').fetchall()
    pk = [col for _, col in sorted((r[5], r[1]) for r in info if r[5])]
    table.primary_key = tuple(pk)
    for _cid, col, declared, notnull, default, in_pk in info:
        kind = _SQLITE_TYPES.get(declared.upper(), f"sqlite {declared}")
        # A primary key column is NOT NULL on PostgreSQL, and on SQLite for rowid aliases;
        # SQLite's legacy NULLs in other keys are not something the store relies on.
        table.columns.append(Column(col, kind, bool(notnull or in_pk), norm_default(default)))
        if kind == "integer" and pk == [col]:
            table.generated_ids.add(col)  # INTEGER PRIMARY KEY: the rowid
    _sqlite_indexes(conn, name, table)
    keys: dict[int, list[Any]] = {}
    for fk_id, _seq, parent, src, dst, on_update, on_delete, _match in conn.execute(
        f'PRAGMA foreign_key_list("{name}")'
    ):
        keys.setdefault(fk_id, [parent, on_update, on_delete, [], []])
        keys[fk_id][3].append(src)
        keys[fk_id][4].append(dst)
    for parent, on_update, on_delete, src_cols, dst_cols in keys.values():
        table.foreign_keys.add((tuple(src_cols), parent, tuple(dst_cols), on_update, on_delete))
    names = {c.name for c in table.columns}
    table.checks = Counter(check_signature(e, names) for e in check_clauses(sql))
    return table


def _sqlite_indexes(conn: sqlite3.Connection, name: str, table: Table) -> None:
    """UNIQUE constraints (SQLite's automatic indexes) and CREATE INDEX indexes, with WHERE."""
    for _seq, index, unique, origin, _partial in conn.execute(f'PRAGMA index_list("{name}")'):
        cols = tuple(r[2] for r in conn.execute(f'PRAGMA index_info("{index}")'))
        if origin == "u":
            table.uniques.add(cols)
        elif origin == "c":
            (index_sql,) = conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = ?", [index]
            ).fetchone()
            where = re.split(
                r"\bWHERE\b", strip_comments(index_sql), maxsplit=1, flags=re.IGNORECASE
            )
            predicate = norm_where(where[1]) if len(where) > 1 else None
            table.indexes[index] = (cols, bool(unique), predicate)


# -- PostgreSQL's catalog ------------------------------------------------------------------

_PG_RELATIONS = """
SELECT c.oid, c.relname, c.relkind FROM pg_class c
 WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
   AND c.relkind IN ('r', 'v')
"""
_PG_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, co.collname
  FROM pg_attribute a
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum
"""
_PG_CONSTRAINTS = """
SELECT con.contype, con.conindid,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i),
       con.confrelid::regclass::text,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i),
       con.confupdtype, con.confdeltype, pg_get_constraintdef(con.oid)
  FROM pg_constraint con WHERE con.conrelid = %s
"""
_PG_INDEXES = """
SELECT ic.relname, i.indisunique, pg_get_expr(i.indpred, i.indrelid),
       ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
       i.indexprs IS NOT NULL
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE i.indrelid = %s
   AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid
                   AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u'))
"""
_PG_TRIGGERS = "SELECT tgname FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal"


def pg_schema(conn: psycopg.Connection[Any]) -> Schema:
    """The current schema (search_path's first) of a PostgreSQL database."""
    schema = Schema()
    for oid, name, kind in conn.execute(_PG_RELATIONS).fetchall():
        if kind == "v":
            schema.views[name] = [r[0] for r in conn.execute(_PG_COLUMNS, [oid])]
        elif name not in SKIPPED_TABLES:
            schema.tables[name] = _pg_table(conn, oid)
            triggers = {r[0] for r in conn.execute(_PG_TRIGGERS, [oid])}
            if triggers:
                schema.triggers[name] = triggers
    return schema


def pg_type(declared: str, collation: str | None) -> str:
    if declared == "text":
        return "text" if collation == "C" else f"text COLLATE {collation}"
    return _PG_TYPES.get(declared, f"pg {declared}")


def _pg_table(conn: psycopg.Connection[Any], oid: int) -> Table:
    table = Table()
    for name, declared, notnull, default, identity, collation in conn.execute(_PG_COLUMNS, [oid]):
        table.columns.append(
            Column(name, pg_type(declared, collation), notnull, norm_default(default))
        )
        if identity:
            table.generated_ids.add(name)
    names = {c.name for c in table.columns}
    for kind, _index, cols, parent, parent_cols, on_update, on_delete, definition in conn.execute(
        _PG_CONSTRAINTS, [oid]
    ):
        if kind == "p":
            table.primary_key = tuple(cols)
        elif kind == "u":
            table.uniques.add(tuple(cols))
        elif kind == "f":
            table.foreign_keys.add(
                (
                    tuple(cols),
                    parent,
                    tuple(parent_cols),
                    _PG_ACTIONS[on_update],
                    _PG_ACTIONS[on_delete],
                )
            )
        elif kind == "c":
            expression = definition.removeprefix("CHECK ")
            table.checks[check_signature(expression, names)] += 1
        else:
            table.checks[(frozenset(), (f"constraint of kind {kind}",))] += 1
    for name, unique, predicate, cols, expressions in conn.execute(_PG_INDEXES, [oid]):
        shown = tuple(cols) + (("<expression>",) if expressions else ())
        table.indexes[name] = (shown, unique, norm_where(predicate))
    return table


# -- comparing -----------------------------------------------------------------------------

# Keys the writer assigns (a rowid alias on SQLite, a plain bigint key on PostgreSQL): the
# chain's seq, a commit's consecutive query ids, and the cancel key's pid a node draws.
WRITER_ASSIGNED = {("audit_events", "seq"), ("queries", "id"), ("cancel_keys", "pid"),
                   ("chain_checkpoints", "seq")}  # fmt: skip
PG_ONLY_TRIGGERS = {
    "audit_events": {
        "audit_events_no_truncate",  # SQLite has no TRUNCATE
        "audit_events_decided",  # 0023: notices to the other nodes (nobody to tell on SQLite)
    },
    "chain_checkpoints": {"chain_checkpoints_no_truncate"},
}


def schema_differences(lite: Schema, pg: Schema) -> list[str]:
    """One line per way the PostgreSQL schema differs from the SQLite one (after mapping)."""
    found = []
    for name in sorted(lite.tables.keys() ^ pg.tables.keys()):
        side = "SQLite" if name in lite.tables else "PostgreSQL"
        found.append(f"table {name} only on {side}")
    for name in sorted(lite.tables.keys() & pg.tables.keys()):
        found += [
            f"{name}: {line}"
            for line in _table_differences(name, lite.tables[name], pg.tables[name])
        ]
    for name in sorted(lite.views.keys() | pg.views.keys()):
        if lite.views.get(name) != pg.views.get(name):
            found.append(f"view {name}: {lite.views.get(name)} vs {pg.views.get(name)}")
    for name in sorted(lite.triggers.keys() | pg.triggers.keys()):
        wanted = lite.triggers.get(name, set()) | PG_ONLY_TRIGGERS.get(name, set())
        if pg.triggers.get(name, set()) != wanted:
            found.append(
                f"triggers on {name}: {sorted(wanted)} vs {sorted(pg.triggers.get(name, set()))}"
            )
    return found


def _table_differences(name: str, lite: Table, pg: Table) -> list[str]:
    found = []
    if [c.name for c in lite.columns] != [c.name for c in pg.columns]:
        found.append(f"columns {[c.name for c in lite.columns]} vs {[c.name for c in pg.columns]}")
    pg_columns = {c.name: c for c in pg.columns}
    for column in lite.columns:
        twin = pg_columns.get(column.name)
        if twin is not None and twin != column:
            found.append(f"column {column} vs {twin}")
    for aspect in ("primary_key", "uniques", "foreign_keys", "indexes", "checks"):
        if getattr(lite, aspect) != getattr(pg, aspect):
            found.append(f"{aspect} {getattr(lite, aspect)} vs {getattr(pg, aspect)}")
    wanted = {c for c in lite.generated_ids if (name, c) not in WRITER_ASSIGNED}
    if pg.generated_ids != wanted:
        found.append(
            f"generated ids {sorted(wanted)} vs identity columns {sorted(pg.generated_ids)}"
        )
    return found


_OWN_TRANSACTION = re.compile(
    r"\b(?:BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|SAVEPOINT|CONCURRENTLY|VACUUM)\b|\bEND\s*;",
    re.IGNORECASE,
)


def transaction_control(sql: str) -> list[str]:
    """What in a migration would end or escape the one transaction the runner wraps it in
    (function bodies between $$ are not looked at)."""
    outside = re.sub(r"\$\$.*?\$\$", " ", strip_comments(sql), flags=re.DOTALL)
    return [m.group(0) for m in _OWN_TRANSACTION.finditer(outside)]
