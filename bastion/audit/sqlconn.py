"""The store's connection, whichever engine holds it: the one small interface both adapters keep.

The store's modules speak to `Conn` and catch `DbError`/`Duplicate`; only the adapters
(`SqliteConn` for the embedded file, `PgConn` in pgconn.py for PostgreSQL) import a driver.
SQL text is written once, with `?` placeholders, in the subset both engines run; where the
engines differ a module asks `conn.dialect` (see dialect.py) rather than branching on types.

Rows behave like `sqlite3.Row` and `asyncpg.Record` alike: `row[0]`, `row["name"]`, `dict(row)`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote

Dialect = Literal["sqlite", "postgresql"]


class DbError(Exception):
    """The engine refused or failed a statement (the store turns it into a StoreError)."""


class Duplicate(DbError):
    """A unique key or primary key refused the row."""


class Result(Protocol):
    """What a statement gave back: its rows (read once) and how many rows it changed."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any | None: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """One connection to the store, used by one thread at a time (the store's lock)."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run one statement with `?` placeholders."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""
        ...

    def begin_write(self, chained: bool = True) -> None:
        """Open a write transaction that holds the store's one writer lock until it ends:
        SQLite's BEGIN IMMEDIATE; on PostgreSQL, READ COMMITTED and the chain's advisory
        transaction lock taken first. Appends to the audit chain are serialised by it.

        `chained` False, on PostgreSQL: READ COMMITTED without the chain lock, for a write
        whose correctness rests on its own statements (a unique key, a conditional UPDATE)
        and not on being alone; lock_chain() takes the lock later, before any append."""
        ...

    def lock_chain(self) -> None:
        """In a write transaction: hold the chain lock from now to its end, if it does not
        already (SQLite's writer lock is held from BEGIN IMMEDIATE on)."""
        ...

    def begin_read(self) -> None:
        """Open a transaction whose reads all see one snapshot (and may make TEMP tables)."""
        ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def table_exists(self, name: str) -> bool: ...

    def apply_migration(self, number: int, name: str, sql: str, applied_at: str) -> bool:
        """Apply one migration script and record it in schema_migrations, in one transaction;
        False (nothing done) when another process recorded that number first."""
        ...

    def close(self) -> None: ...


# -- SQLite ---------------------------------------------------------------------------

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",  # an audit event is on disk before the action it records
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=15000",
)
FOREIGN_KEYS_OFF = "-- bastion: foreign_keys off"  # a migration that rebuilds a table says so
_DUPLICATE_CODES = frozenset(
    (sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
)


def _literal(value: int | str) -> str:
    """A value written into a script (no placeholders there): an int, or a quoted string."""
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _mapped(exc: sqlite3.Error) -> DbError:
    """The engine's error as the store's: a unique or primary key refusal is a Duplicate."""
    if isinstance(exc, sqlite3.IntegrityError) and exc.sqlite_errorcode in _DUPLICATE_CODES:
        return Duplicate(str(exc))
    return DbError(str(exc))


class RowsResult:
    """A statement's rows, all fetched (PostgreSQL's asyncpg Records: r[0], r["name"], dict(r)),
    and its rowcount."""

    __slots__ = ("_at", "_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self._at = 0
        self.rowcount = rowcount

    def fetchone(self) -> Any | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[Any]:
        rest = self._rows[self._at :]
        self._at = len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _SqliteResult:
    """A sqlite3 cursor whose errors, also those met while reading rows, are the store's."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self) -> Any | None:
        try:
            return self._cursor.fetchone()
        except sqlite3.Error as exc:
            raise _mapped(exc) from exc

    def fetchall(self) -> list[Any]:
        try:
            return self._cursor.fetchall()
        except sqlite3.Error as exc:
            raise _mapped(exc) from exc

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._cursor
        except sqlite3.Error as exc:
            raise _mapped(exc) from exc


class SqliteConn:
    """The store in one SQLite file: WAL, synced commits, foreign keys on; one writer at a
    time (BEGIN IMMEDIATE), any number of readers. Opened with `open` (the store) or
    `reader` (a read-only connection of its own, usable from another thread)."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        self._conn = conn

    @classmethod
    def open(cls, path: Path) -> SqliteConn:
        """The store's connection to its file (created empty if missing: callers check)."""
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=15)
        except sqlite3.Error as exc:
            raise _mapped(exc) from exc
        try:
            for pragma in PRAGMAS:
                conn.execute(pragma)
        except sqlite3.Error as exc:
            conn.close()
            raise _mapped(exc) from exc
        return cls(conn)

    @classmethod
    def scratch(cls) -> SqliteConn:
        """A private in-memory database, gone when closed: nothing is read or written on disk."""
        return cls(sqlite3.connect(":memory:", isolation_level=None))

    @classmethod
    def reader(cls, path: Path, *, untouched: bool = False) -> SqliteConn:
        """A read-only connection of its own to the store file; it never creates the file.
        `untouched`: nor its -wal and -shm files, when there is no -wal (no connection is
        open: the file is read as it stands); else they are made if missing, as the reader
        of a WAL store needs them, owned by whoever runs this."""
        still = untouched and not path.with_name(path.name + "-wal").exists()
        try:
            conn = sqlite3.connect(
                f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if still else ""),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=15,
            )
            conn.execute("PRAGMA temp_store=FILE")  # a week's events would hold 150 MB in memory
        except sqlite3.Error as exc:
            raise _mapped(exc) from exc
        return cls(conn)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        try:
            return _SqliteResult(self._conn.execute(sql, params))
        except sqlite3.Error as exc:
            raise _mapped(exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _mapped(exc) from exc

    def begin_write(self, chained: bool = True) -> None:
        self.execute("BEGIN IMMEDIATE")  # one writer at a time, whatever `chained` says

    def lock_chain(self) -> None:
        if not self.in_transaction:
            raise DbError("the chain lock is taken inside a write transaction")

    def begin_read(self) -> None:
        self.execute("BEGIN")  # SQLite's snapshot starts at the first read and holds to the end

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        self.execute("ROLLBACK")

    def table_exists(self, name: str) -> bool:
        found = self.execute(
            "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (name,)
        ).fetchone()
        return found is not None

    def apply_migration(self, number: int, name: str, sql: str, applied_at: str) -> bool:
        """One script in one IMMEDIATE transaction with its schema_migrations row (first, so
        a number another process recorded meanwhile stops it at once). A script that rebuilds
        a table says FOREIGN_KEYS_OFF: it runs with them off and must pass a foreign key check
        before it commits."""
        if self._recorded(number):
            return False
        row = ", ".join(_literal(v) for v in (number, name, applied_at))
        script = (
            "BEGIN IMMEDIATE;\nINSERT INTO schema_migrations (number, name, applied_at)"
            f" VALUES ({row});\n{sql}\n"
        )
        try:
            if FOREIGN_KEYS_OFF in sql:
                self._conn.execute("PRAGMA foreign_keys=OFF")
            self._conn.executescript(script)  # sqlite3 commits before a script: BEGIN is in it
            broken = self._conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise DbError(f"{len(broken)} rows break a foreign key")
            self._conn.execute("COMMIT")
            return True
        except (sqlite3.Error, DbError) as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if self._recorded(number):
                return False
            if isinstance(exc, DbError):
                raise
            raise _mapped(exc) from exc
        finally:
            self._conn.execute("PRAGMA foreign_keys=ON")

    def _recorded(self, number: int) -> bool:
        done = "SELECT 1 FROM schema_migrations WHERE number = ?"
        return self.execute(done, (number,)).fetchone() is not None

    def close(self) -> None:
        self._conn.close()


def one(result: Result) -> Any:
    """The one row a statement always gives (an aggregate, INSERT ... RETURNING)."""
    row = result.fetchone()
    if row is None:
        raise DbError("the statement gave no row")
    return row
