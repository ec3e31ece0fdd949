"""The store's connection, whichever engine holds it: the one small interface both adapters keep.

The store's modules speak to `Conn` and catch `DbError`/`Duplicate`; only the adapters
(`SqliteConn` for the embedded file, `PgConn` in pgconn.py for PostgreSQL) import a driver.
SQL text is written once, with `?` placeholders, in the subset both engines run; where the
engines differ a module asks `conn.dialect` (see dialect.py) rather than branching on types.

Rows behave like `sqlite3.Row` and `asyncpg.Record` alike: `row[0]`, `row["name"]`, `dict(row)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

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

    def begin_write(self) -> None:
        """Open a write transaction that holds the store's one writer lock until it ends:
        SQLite's BEGIN IMMEDIATE; on PostgreSQL, READ COMMITTED and the chain's advisory
        transaction lock taken first. Appends to the audit chain are serialised by it."""
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
