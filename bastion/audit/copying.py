"""A SQLite store copied into an empty PostgreSQL schema: one transaction, every id kept.

The copy makes the store's tables itself (the PostgreSQL twins of the migrations the source
has, with the source's own `schema_migrations` rows, so the store's birth date stays), then
streams each table's rows in batches with binary COPY, parents before children. Nothing is
disabled: the append-only triggers refuse updates and deletes, never these inserts. Before
COMMIT the copy is checked against the source: every table's row count and an
order-independent digest of its rows read back, and the audit chain walked on the target
(MACs with the key) to the source's head. Any failure rolls everything back, tables
included, so the target is left as empty as it was found.

Text a client sent is kept NUL-escaped (bastion/audit/nul.py). A raw NUL, in a store written
before that escaping, is escaped in the columns the store reads back through `nul.restore`
(ESCAPED), and stops the copy anywhere else (PostgreSQL can't hold it, and any other change
would alter what the chain or a reader sees).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any

from bastion.audit import nul
from bastion.audit.base import StoreBase, migrations
from bastion.audit.chain import ChainedEvent, ChainKey
from bastion.audit.chainwalk import walk_store
from bastion.audit.dialect import MIGRATION_LOCK
from bastion.audit.location import PgLocation
from bastion.audit.pgconn import MIGRATIONS_TABLE, PgConn
from bastion.audit.sqlconn import Conn, DbError
from bastion.errors import StoreError

BATCH = 5_000  # rows per COPY, and per read from either side
DIGEST_MOD = 2**256
IDLE_IN_TRANSACTION_S = 600.0  # the copy's transaction waits on the source between batches
ESCAPED = frozenset({  # (table, column): text the store writes with nul.escape, reads with restore
    ("commands", "command"), ("commands", "uncertain"),
    ("file_transfers", "path"), ("file_transfers", "path2"), ("file_transfers", "status"),
    ("sessions", "end_reason"), ("sessions", "kill_reason"),
})  # fmt: skip
PY_TYPES: dict[str, type[Any]] = {"bigint": int, "integer": int, "smallint": int, "text": str,
                             "bytea": bytes}  # fmt: skip
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

OCCUPIED_SQL = (
    "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = current_schema()"
    " UNION ALL SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname = current_schema() LIMIT 1"
)
COLUMNS_SQL = (
    "SELECT c.relname AS tbl, a.attname AS col, format_type(a.atttypid, a.atttypmod) AS type,"
    " a.attidentity <> '' AS ident FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema()"
    " AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum"
)
PARENTS_SQL = (
    "SELECT c.relname AS child, p.relname AS parent FROM pg_constraint k"
    " JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE k.contype = 'f' AND n.nspname = current_schema()"
)
SOURCE_TABLES_SQL = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)


class _NotEmpty(StoreError):
    """The target holds something already: refused before anything is written."""


class _Committing(StoreError):
    """COMMIT itself failed: whether the copy was kept is the server's to say."""


def _commit(conn: PgConn, target: PgLocation) -> None:
    try:
        conn.commit()
    except DbError as exc:
        raise _Committing(
            f"the copy to {target} was checked, but its COMMIT failed ({exc}); it is one"
            " transaction, so the target holds all of it or nothing: look before copying again"
        ) from exc


@dataclass(frozen=True)
class Table:
    """A table of the target: its columns (name, type, identity) in order."""

    name: str
    columns: tuple[tuple[str, str, bool], ...]

    @property
    def names(self) -> list[str]:
        return [c[0] for c in self.columns]

    @property
    def select(self) -> str:
        quoted = ", ".join(f'"{c}"' for c in self.names)
        return f'SELECT {quoted} FROM "{self.name}"'


@dataclass
class Copied:
    """What was copied: rows per table (in copy order), the chain head, the schema version."""

    tables: dict[str, int] = field(default_factory=dict)
    head_seq: int = 0
    head_mac: str = ""
    schema_version: int = 0
    escaped: int = 0  # values with a raw NUL escaped on the way


def copy_store(
    source: StoreBase,
    target: PgLocation,
    key: ChainKey | None,
    head: tuple[int, str],
    *,
    node: str,
    progress: Callable[[str], None] = lambda _: None,
) -> Copied:
    """Copy `source` (a SQLite store, already verified, whose chain ends at `head`) into the
    empty schema at `target`, all or nothing; StoreError (one line) says why it stopped."""
    if source.path is None:
        raise StoreError("the copy reads a SQLite store; this one is on PostgreSQL already")
    try:
        conn = target.connect(node, idle_in_transaction=IDLE_IN_TRANSACTION_S)
    except DbError as exc:
        raise StoreError(f"cannot reach the target {target}: {exc}") from exc
    reader = source.reader()
    try:
        reader.begin_read()
        conn.begin_write(chained=False)  # an empty schema: no chain to lock yet; the
        # migration lock and the emptiness check keep any other copy out meanwhile
        copied = _copy(reader, conn, key, head, progress)
        _commit(conn, target)
        return copied
    except _Committing:
        raise
    except _NotEmpty as exc:
        raise StoreError(f"the target {target} {exc.message}") from None
    except DbError as exc:
        raise StoreError(f"the copy to {target} stopped and left it empty: {exc}") from exc
    except StoreError as exc:
        raise StoreError(f"the copy to {target} stopped and left it empty: {exc}") from exc
    finally:
        if conn.in_transaction:
            conn.rollback()
        conn.close()
        reader.close()


def _copy(
    reader: Conn,
    conn: PgConn,
    key: ChainKey | None,
    head: tuple[int, str],
    progress: Callable[[str], None],
) -> Copied:
    conn.execute("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK])
    occupied = conn.execute(OCCUPIED_SQL).fetchone()
    if occupied is not None:
        raise _NotEmpty(
            f"is not empty (its schema holds {occupied[0]!r}): the copy goes only into an empty"
            " schema (a new database, or CREATE SCHEMA) and makes the tables itself; nothing"
            " was changed"
        )
    done = [(int(r[0]), str(r[1]), str(r[2])) for r in reader.execute(
        "SELECT number, name, applied_at FROM schema_migrations ORDER BY number")]  # fmt: skip
    _make_tables(conn, done)
    copied = Copied(schema_version=done[-1][0] if done else 0)
    tables = _tables(conn, reader)
    for table in tables:
        rows, digest = _copy_table(reader, conn, table, copied)
        copied.tables[table.name] = rows
        _check_table(conn, table, rows, digest)
        progress(f"{table.name}: {rows} rows")
    _continue_identities(conn, tables)
    _check_chain(conn, key, head)
    copied.head_seq, copied.head_mac = head
    return copied


def _make_tables(conn: PgConn, done: list[tuple[int, str, str]]) -> None:
    """The PostgreSQL twins of exactly the migrations the source has had, and its records of
    them (their dates kept)."""
    twins = {number: sql for number, _, sql in migrations("postgresql")}
    have = [number for number, _, _ in done]
    if have != sorted(twins):
        raise StoreError(
            f"the source's migrations ({have[-1] if have else 0}) and this bastion's PostgreSQL"
            f" ones ({max(twins, default=0)}) differ; run the copy with the bastion that wrote it"
        )
    for number in have:
        sql = twins[number]
        conn.run(lambda c, sql=sql: c.execute(sql))  # type: ignore[misc]
    conn.run(lambda c: c.execute(MIGRATIONS_TABLE))
    conn.executemany(
        "INSERT INTO schema_migrations (number, name, applied_at) VALUES (?, ?, ?)", done
    )


def _tables(conn: PgConn, reader: Conn) -> list[Table]:
    """The target's tables, parents first, once they match the source's table for table and
    column for column (a table or column on one side only stops the copy)."""
    columns: dict[str, list[tuple[str, str, bool]]] = {}
    for row in conn.execute(COLUMNS_SQL):
        columns.setdefault(str(row["tbl"]), []).append(
            (str(row["col"]), str(row["type"]), bool(row["ident"]))
        )
    columns.pop("schema_migrations", None)
    theirs = {str(r[0]) for r in reader.execute(SOURCE_TABLES_SQL)} - {"schema_migrations"}
    if set(columns) != theirs:
        odd = sorted(set(columns) ^ theirs)[0]
        raise StoreError(f"the table {odd!r} is in only one of the two stores")
    for name, cols in columns.items():
        if not all(_NAME.fullmatch(n) for n in [name, *(c[0] for c in cols)]):
            raise StoreError(f"a name in the table {name!r} is not a plain name")
        there = {str(r[1]) for r in reader.execute(f'PRAGMA table_info("{name}")')}
        if there != {c[0] for c in cols}:
            odd = sorted(there ^ {c[0] for c in cols})[0]
            raise StoreError(f"the column {name}.{odd} is in only one of the two stores")
    order = TopologicalSorter({name: set() for name in columns})
    for row in conn.execute(PARENTS_SQL):
        if row["child"] != row["parent"]:
            order.add(str(row["child"]), str(row["parent"]))
    try:
        names = list(order.static_order())
    except CycleError as exc:
        raise StoreError(f"the tables' foreign keys form a cycle: {exc.args[1]}") from exc
    return [Table(name, tuple(columns[name])) for name in names]


def _row_digest(row: tuple[Any, ...]) -> int:
    return int.from_bytes(hashlib.sha256(repr(row).encode("utf-8", "surrogatepass")).digest())


def _copy_table(reader: Conn, conn: PgConn, table: Table, copied: Copied) -> tuple[int, int]:
    """Stream one table's rows, checked and batched, into the target: (rows, digest)."""
    rows, digest, batch = 0, 0, []
    for raw in reader.execute(table.select):
        row = _fit(table, tuple(raw), copied)
        digest = (digest + _row_digest(row)) % DIGEST_MOD
        batch.append(row)
        if len(batch) >= BATCH:
            _send(conn, table, batch)
            rows, batch = rows + len(batch), []
    if batch:
        _send(conn, table, batch)
        rows += len(batch)
    return rows, digest


def _send(conn: PgConn, table: Table, batch: list[tuple[Any, ...]]) -> None:
    names = table.names
    try:
        conn.run(lambda c: c.copy_records_to_table(table.name, records=batch, columns=names))
    except DbError as exc:
        raise StoreError(f"the target refused a row of {table.name}: {exc}") from exc


def _fit(table: Table, row: tuple[Any, ...], copied: Copied) -> tuple[Any, ...]:
    """The row as PostgreSQL takes it; StoreError naming table, row and column for a value
    that does not fit its column (an edited store), or a raw NUL outside ESCAPED."""
    out = list(row)
    for at, ((name, kind, _), value) in enumerate(zip(table.columns, row, strict=True)):
        if value is None:
            continue
        want = PY_TYPES.get(kind)
        if want is None:
            raise StoreError(f"the column {table.name}.{name} is of type {kind}, which the"
                             " copy does not carry")  # fmt: skip
        if type(value) is not want:
            raise StoreError(f"{_where(table, row)}: {name} holds a {type(value).__name__}"
                             f" where the target wants {kind}")  # fmt: skip
        if isinstance(value, str) and "\x00" in value:
            if (table.name, name) not in ESCAPED:
                raise StoreError(f"{_where(table, row)}: {name} holds a NUL character, which"
                                 " PostgreSQL can't keep and the chain binds as it is")  # fmt: skip
            out[at] = nul.escape(value)
            copied.escaped += 1
    return tuple(out)


def _where(table: Table, row: tuple[Any, ...]) -> str:
    first = ascii(row[0])[:40]
    return f"{table.name} row {table.columns[0][0]}={first}"


def _check_table(conn: PgConn, table: Table, rows: int, digest: int) -> None:
    """The rows read back from the target are the rows sent (count and digest)."""

    async def read_back(c: Any) -> tuple[int, int]:
        count, total = 0, 0
        async for record in c.cursor(table.select, prefetch=BATCH):
            count += 1
            total = (total + _row_digest(tuple(record))) % DIGEST_MOD
        return count, total

    got = conn.run(read_back)
    if got != (rows, digest):
        raise StoreError(f"{table.name} reads back unlike the source ({got[0]} rows of {rows},"
                         " or their values differ)")  # fmt: skip


def _continue_identities(conn: PgConn, tables: Iterable[Table]) -> None:
    """Every identity column's next value after the highest copied id."""
    for table in tables:
        for name, _, identity in table.columns:
            if identity:
                conn.execute(
                    "SELECT setval(pg_get_serial_sequence(?, ?), coalesce("
                    f'(SELECT max("{name}") FROM "{table.name}"), 0) + 1, false)',
                    [f'"{table.name}"', name],
                )


def _check_chain(conn: PgConn, key: ChainKey | None, head: tuple[int, str]) -> None:
    """The chain on the target, walked with the key, ends at the source's head."""

    def events(after: int, limit: int) -> list[ChainedEvent]:
        rows = conn.execute(
            "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", [after, limit]
        )
        return [ChainedEvent(**dict(r)) for r in rows]

    point = conn.execute(
        "SELECT seq, head FROM chain_checkpoints ORDER BY seq DESC LIMIT 1"
    ).fetchone() if conn.table_exists("chain_checkpoints") else None  # fmt: skip
    start = None if point is None else (int(point[0]), str(point[1]))  # retention's cut
    verdict = walk_store(events, None, None if key is None else key.secret, start=start)
    if not verdict.ok:
        raise StoreError(f"the copied chain does not verify: {verdict.problem}")
    if (verdict.head_seq, verdict.head_hash) != head:
        raise StoreError(f"the copied chain ends at {verdict.head_seq}, the source's at {head[0]}")
