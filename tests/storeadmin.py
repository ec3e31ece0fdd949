"""An admin with the store's files (SQLite) or its database (PostgreSQL's superuser): raw SQL
around the store, with the append-only triggers out of the way, as an attacker would."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql as pgsql

from bastion.audit import Store
from tests.realpg import PgCluster


class Admin(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def close(self) -> None: ...


class SqliteAdmin:
    """The file, opened directly, with the append-only triggers dropped."""

    def __init__(self, store: Store) -> None:
        self.conn = sqlite3.connect(store.file, isolation_level=None)
        self.conn.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        self.conn.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()


class PgAdmin:
    """The database as its superuser, triggers off (session_replication_role = replica)."""

    def __init__(self, store: Store, cluster: PgCluster) -> None:
        assert store.location is not None
        database = urlsplit(store.location.url).path.lstrip("/")
        self.conn: psycopg.Connection[tuple[Any, ...]] = cluster.connect(database)
        self.conn.execute("SET session_replication_role = replica")
        schema = store.location.schema
        self.conn.execute(pgsql.SQL("SET search_path = {}").format(pgsql.Identifier(schema)))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(sql.replace("?", "%s"), params)
        return cur.fetchall() if cur.description is not None else []

    def close(self) -> None:
        self.conn.close()


def admin_of(store: Store, request: pytest.FixtureRequest) -> Admin:
    """Raw SQL on the store's engine (the caller closes it)."""
    if store.location is None:
        return SqliteAdmin(store)
    return PgAdmin(store, request.getfixturevalue("pg_cluster"))


class _SqliteWriteLock:
    def __init__(self, store: Store) -> None:
        self.conn = sqlite3.connect(store.file, isolation_level=None, timeout=30)
        self.conn.execute("BEGIN IMMEDIATE")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql, params)

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class _PgWriteLock:
    def __init__(self, store: Store, cluster: PgCluster) -> None:
        assert store.location is not None
        database = urlsplit(store.location.url).path.lstrip("/")
        self.conn: psycopg.Connection[tuple[Any, ...]] = cluster.connect(database)
        self.conn.execute("BEGIN")
        self.conn.execute(pgsql.SQL("SET LOCAL search_path = {}").format(
            pgsql.Identifier(store.location.schema)))  # fmt: skip
        self.conn.execute("LOCK TABLE chain_lock IN EXCLUSIVE MODE")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql.replace("?", "%s"), params)

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def hold_write_lock(
    store: Store, request: pytest.FixtureRequest
) -> _SqliteWriteLock | _PgWriteLock:
    """The store's one writer lock, held by another session until close(): SQLite's BEGIN
    IMMEDIATE, or the chain lock (a table) on PostgreSQL."""
    if store.location is None:
        return _SqliteWriteLock(store)
    return _PgWriteLock(store, request.getfixturevalue("pg_cluster"))


@pytest.fixture
def raw(request: pytest.FixtureRequest) -> Iterator[Callable[[Store], Admin]]:
    """The attacker's view: the store's file or database, with the append-only triggers off."""
    made: list[Admin] = []

    def open_one(store: Store) -> Admin:
        made.append(admin_of(store, request))
        return made[-1]

    yield open_one
    for admin in made:
        admin.close()
