"""A pg_dump archive's rows loaded into a schema made by the store's own migrations.

Only the archive's data entries are read (TABLE DATA, SEQUENCE SET), printed by pg_restore
to a private file and never sent to the server as it prints them: an entry's COPY statement
and a SEQUENCE SET's setval are the archive's text, so each must have the one shape pg_dump
writes, name the store's schema and one of the store's tables or sequences, and is then
replaced by our own COPY of the store's table (the rows go as COPY data, never as SQL) and
our own setval. The schema is made by the migrations the archive's schema_migrations rows
name (refused if it names one this bastion does not know, skips one, or stops before the
chain's key: the key would bind rows anyone could write); the caller opens
the store after, which applies the later ones. Nothing the archive defines (functions,
triggers, views, constraints, grants) is ever run.
Leases the archive holds still running end at the restore (the live cluster's, not history).

Triggers stay enabled while rows are copied: the store's only insert trigger sends a
decision notice (no node listens during a restore), and its append-only triggers refuse
updates and deletes, never inserts; a trigger that refused a row would stop the restore.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import BinaryIO

from bastion.audit import pgbackup
from bastion.audit.base import KEYED_SCHEMA, migrations
from bastion.audit.copying import COLUMNS_SQL, PARENTS_SQL
from bastion.audit.dialect import MIGRATION_LOCK
from bastion.audit.location import PgLocation
from bastion.audit.pgconn import MIGRATIONS_TABLE, PgConn
from bastion.audit.sqlconn import DbError
from bastion.audit.storetime import NOW_SQL
from bastion.errors import StoreError, UsageError
from bastion.text import printable_line

IDLE_IN_TRANSACTION_S = 600.0  # the load's transaction waits on nothing else, but is long
_DATA_ENTRY = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET) (\S+) (\S+)(?: \S*)?$")
_COPY = re.compile(rb"^COPY (\S+) \((.*)\) FROM stdin;\n\Z")
_SETVAL = re.compile(rb"^SELECT pg_catalog\.setval\('(\S+)', (\d{1,19}), (true|false)\);\n\Z")
_IDENT = re.compile(r'"((?:[^"]|"")+)"|([a-z_][a-z0-9_$]*)')
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# What pg_restore prints around the data that is never sent anywhere (a comment, a setting,
# psql's \restrict key): read past. Anything else outside a COPY's rows refuses the archive.
_PASSED = (b"--", b"SET ", b"SELECT pg_catalog.set_config(", b"\\restrict ", b"\\unrestrict ")
LEASES_MIGRATION = 21  # 0021_cluster_nodes.sql makes the leases table
_UTF8 = b"SET client_encoding = 'UTF8';\n"
_MIGRATION_ROW = re.compile(r"(\d{1,9})\t(\d{4}_[a-z0-9_]+\.sql)\t([0-9A-Za-z:.+-]{1,40})")


@dataclass
class Data:
    """The archive's data: each table's rows (COPY text, in a file) and columns, and the
    last value of each sequence it set."""

    rows: dict[str, Path] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)
    last_values: dict[str, int] = field(default_factory=dict)


def load(where: PgLocation, archive: Path, node: str) -> int:
    """The archive's rows in the store's schema (empty, made by the caller), in one
    transaction, its tables made by the migrations its rows say were applied: that number."""
    listing = pgbackup.listing(where, archive)
    pgbackup.entries(listing, where.schema, archive)  # refuses anything outside the schema
    chosen = [line for line in listing.splitlines() if _DATA_ENTRY.match(line)]
    with tempfile.TemporaryDirectory(prefix="bastion-pg-") as directory:
        folder = Path(directory)
        data = _extract(archive, chosen, where.schema, folder)
        done = _applied(data, archive)
        conn = _connect(where, node)
        try:
            conn.begin_write(chained=False)  # a new schema: its chain lock comes with it
            conn.execute("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK])
            _make_tables(conn, done)
            _copy_rows(conn, data, where.schema, archive)
            _continue_identities(conn, data, archive)
            _expire_leases(conn, done)
            conn.commit()
        except DbError as exc:
            raise StoreError(f"the restore into {where} stopped and kept nothing: {exc}") from exc
        finally:
            if conn.in_transaction:
                conn.rollback()
            conn.close()
    return done[-1]


def _connect(where: PgLocation, node: str) -> PgConn:
    try:
        return where.connect(node, idle_in_transaction=IDLE_IN_TRANSACTION_S)
    except DbError as exc:
        raise StoreError(f"cannot reach the store {where}: {exc}") from exc


def _extract(archive: Path, chosen: list[str], schema: str, folder: Path) -> Data:
    """pg_restore's text of the chosen entries (into a file; nothing connects anywhere),
    read into `Data`; UsageError for anything but COPY rows and setval of the schema's."""
    use, printed = folder / "data.list", folder / "data.sql"
    use.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    argv = [pgbackup.tool("pg_restore"), "--data-only", "--no-owner", "--no-privileges",
            f"--use-list={use}", f"--file={printed}", str(archive)]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=pgbackup.TOOL_TIMEOUT_S)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StoreError(f"reading {archive} failed: {exc}") from exc
    if done.returncode != 0:
        last = ([ln for ln in done.stderr.splitlines() if ln.strip()] or ["no message"])[-1]
        raise StoreError(f"reading {archive} failed: {printable_line(last, 300)}")
    data = Data()
    with printed.open("rb") as text:
        _parse(text, data, schema, archive, folder)
    return data


def _parse(text: BinaryIO, data: Data, schema: str, archive: Path, folder: Path) -> None:
    """Each COPY's rows into a file of their own, each setval's value; nothing else kept."""
    out = None
    for line in text:
        if out is not None:
            if line == b"\\.\n":
                out.close()
                out = None
            else:
                out.write(line)
            continue
        if copy := _COPY.match(line):
            table = _target(copy.group(1), schema, archive, "COPY")
            if table in data.rows:
                raise _odd(archive, f"two entries of rows for {table}")
            data.columns[table] = _columns(copy.group(2), archive)
            data.rows[table] = folder / f"{len(data.rows)}.copy"
            out = data.rows[table].open("wb")
        elif setval := _SETVAL.match(line):
            sequence = _target(setval.group(1), schema, archive, "setval")
            value = int(setval.group(2))
            data.last_values[sequence] = value if setval.group(3) == b"true" else value - 1
        elif line.startswith(b"SET client_encoding") and line != _UTF8:
            raise _odd(archive, "data not in UTF8")
        elif line.strip() and not line.startswith(_PASSED):
            raise _odd(archive, printable_line(line.decode("utf-8", "replace"), 80))
    if out is not None:
        out.close()
        raise _odd(archive, "rows that do not end")


def _odd(archive: Path, what: str) -> UsageError:
    return UsageError(f"{archive} is not a store's dump as pg_dump writes it (it holds {what}):"
                      " nothing was restored")  # fmt: skip


def _idents(text: str, sep: str) -> list[str]:
    """Identifiers as pg_dump prints them (quoted where it must), `sep` between them."""
    names, at = [], 0
    while True:
        found = _IDENT.match(text, at)
        if found is None:
            raise ValueError(text)
        names.append(found.group(1).replace('""', '"') if found.group(1) else found.group(2))
        at = found.end()
        if at == len(text):
            return names
        if not text.startswith(sep, at):
            raise ValueError(text)
        at += len(sep)


def _target(raw: bytes, schema: str, archive: Path, what: str) -> str:
    """The plain name a COPY or setval names in the store's schema; UsageError for another
    schema (the archive's text names its target; ours is the store's schema, always)."""
    try:
        parts = _idents(raw.decode("utf-8"), ".")
    except (UnicodeDecodeError, ValueError):
        parts = []
    if len(parts) != 2 or not _NAME.fullmatch(parts[1]):
        raise _odd(archive, f"a {what} of {printable_line(repr(raw), 80)}")
    if parts[0] != schema:
        raise UsageError(f"{archive} holds a {what} aimed at the schema"
                         f" {printable_line(parts[0], 63)}, not the store's schema {schema}:"
                         " nothing was restored")  # fmt: skip
    return parts[1]


def _columns(raw: bytes, archive: Path) -> list[str]:
    try:
        names = _idents(raw.decode("utf-8"), ", ")
    except (UnicodeDecodeError, ValueError):
        names = []
    if not names or not all(_NAME.fullmatch(n) for n in names):
        raise _odd(archive, f"a COPY of the columns {printable_line(repr(raw), 80)}")
    return names


def _applied(data: Data, archive: Path) -> list[int]:
    """The migrations the archive's schema_migrations rows name, checked against this
    bastion's: the same names, from the first on, none skipped; UsageError otherwise."""
    if data.columns.get("schema_migrations") != ["number", "name", "applied_at"]:
        raise _odd(archive, "no schema_migrations rows")
    numbers = []
    ours = {number: name for number, name, _ in migrations("postgresql")}
    for line in data.rows["schema_migrations"].read_bytes().decode("utf-8").splitlines():
        row = _MIGRATION_ROW.fullmatch(line)
        if row is None:
            raise _odd(archive, f"the schema_migrations row {printable_line(line, 80)}")
        number, name = int(row.group(1)), row.group(2)
        if ours.get(number) != name:
            raise UsageError(f"{archive} was made by a store with migration {name}, which this"
                             " bastion does not have: restore it with the bastion that made"
                             " it (or a later one)")  # fmt: skip
        numbers.append(number)
    numbers.sort()
    if not numbers or numbers != sorted(ours)[: len(numbers)]:
        raise UsageError(f"{archive}'s schema_migrations rows skip a migration (it names"
                         f" {len(numbers)} of them, up to {max(numbers, default=0)}): not a"
                         " store this bastion made; nothing was restored")  # fmt: skip
    if numbers[-1] < KEYED_SCHEMA:  # no store on PostgreSQL predates the key (red18d)
        raise UsageError(f"{archive} is of a store from before the audit chain was keyed"
                         f" (migration {KEYED_SCHEMA:04d}): its events are plain SHA-256 that"
                         " anyone can write, and the key would bind them; no store on"
                         " PostgreSQL is that old: nothing was restored")  # fmt: skip
    return numbers


def _make_tables(conn: PgConn, numbers: list[int]) -> None:
    """The tables of exactly the migrations the archive's store had (their records come
    with its rows)."""
    twins = {number: sql for number, _, sql in migrations("postgresql")}
    for number in numbers:
        sql = twins[number]
        conn.run(lambda c, sql=sql: c.execute(sql))  # type: ignore[misc]
    conn.run(lambda c: c.execute(MIGRATIONS_TABLE))


def _tables(conn: PgConn) -> dict[str, list[tuple[str, bool]]]:
    """The schema's tables, parents first, with their columns (name, identity)."""
    columns: dict[str, list[tuple[str, bool]]] = {}
    for row in conn.execute(COLUMNS_SQL):
        columns.setdefault(str(row["tbl"]), []).append((str(row["col"]), bool(row["ident"])))
    order = TopologicalSorter({name: set() for name in columns})
    for row in conn.execute(PARENTS_SQL):
        if row["child"] != row["parent"]:
            order.add(str(row["child"]), str(row["parent"]))
    try:
        return {name: columns[name] for name in order.static_order()}
    except CycleError as exc:
        raise StoreError(f"the tables' foreign keys form a cycle: {exc.args[1]}") from exc


def _copy_rows(conn: PgConn, data: Data, schema: str, archive: Path) -> None:
    """Each table's rows, parents first, as COPY data into the store's own table: the
    archive names exactly the tables and columns the migrations made."""
    tables = _tables(conn)
    if odd := sorted(set(tables) ^ set(data.rows)):
        what = "rows for" if odd[0] in data.rows else "no rows for"
        raise _odd(archive, f"{what} the table {odd[0]}, which the migrations make")
    for table, columns in tables.items():
        names = data.columns[table]
        if sorted(names) != sorted(name for name, _ in columns):
            raise _odd(archive, f"rows of {table} whose columns are not the migrations'")
        source = data.rows[table]
        try:
            conn.run(lambda c, t=table, s=source, n=names: c.copy_to_table(  # type: ignore[misc]
                t, source=s, columns=n, schema_name=schema, format="text"))  # fmt: skip
        except DbError as exc:
            raise UsageError(f"{archive}'s rows of {table} do not fit the store's table"
                             f" ({exc}): nothing was restored") from exc  # fmt: skip


def _expire_leases(conn: PgConn, numbers: list[int]) -> None:
    """Every lease the archive holds still running ends now (the database's clock): a lease
    is the live cluster's, not history, and no key covers its row (one held far ahead for
    a made-up node would keep the completer's from every node)."""
    if LEASES_MIGRATION in numbers:
        conn.execute(f"UPDATE leases SET expires_at = {NOW_SQL} WHERE expires_at > {NOW_SQL}")


def _continue_identities(conn: PgConn, data: Data, archive: Path) -> None:
    """Every identity column's next value after both its highest id and the last value the
    archive says its sequence gave (a row deleted before the backup keeps its id used)."""
    seen = set()
    for table, columns in _tables(conn).items():
        for name, identity in columns:
            if not identity:
                continue
            found = conn.execute("SELECT pg_get_serial_sequence(?, ?) AS seq",
                                 [f'"{table}"', name]).fetchall()  # fmt: skip
            sequence = str(found[0]["seq"])
            plain = sequence.rsplit(".", 1)[-1].strip('"')
            seen.add(plain)
            conn.execute(
                f'SELECT setval(?::regclass, greatest(coalesce((SELECT max("{name}") FROM'
                f' "{table}"), 0), ?::bigint) + 1, false)',
                [sequence, data.last_values.get(plain, 0)],
            )
    if odd := sorted(set(data.last_values) - seen):
        raise _odd(archive, f"a value for the sequence {odd[0]}, which the migrations do not make")
