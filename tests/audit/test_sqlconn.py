"""SqliteConn on a real file: the store's errors, its one writer, its snapshots, its readers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.audit import Store
from bastion.audit.sqlconn import FOREIGN_KEYS_OFF, DbError, Duplicate, SqliteConn, one
from bastion.clock import FakeClock
from bastion.errors import StoreError

TABLES = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL CHECK (kind IN ('a', 'b')));"
    " CREATE TABLE kept (id INTEGER PRIMARY KEY);"
    " CREATE TRIGGER kept_no_delete BEFORE DELETE ON kept"
    " BEGIN SELECT RAISE(ABORT, 'kept rows stay'); END;"
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "s.db"


@pytest.fixture
def conn(path: Path) -> Iterator[SqliteConn]:
    made = SqliteConn.open(path)
    made.execute(  # as the store makes it before its first migration
        "CREATE TABLE schema_migrations (number INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )
    assert made.apply_migration(1, "0001_t.sql", TABLES, "2026-01-01T00:00:00.000000Z")
    yield made
    made.close()


def count(conn: SqliteConn) -> int:
    return int(one(conn.execute("SELECT count(*) FROM t"))[0])


def test_a_unique_or_primary_key_refusal_is_a_duplicate(conn: SqliteConn) -> None:
    conn.execute("INSERT INTO t (id, name, kind) VALUES (1, 'x', 'a')")
    with pytest.raises(Duplicate):
        conn.execute("INSERT INTO t (name, kind) VALUES ('x', 'a')")
    with pytest.raises(Duplicate):
        conn.execute("INSERT INTO t (id, name, kind) VALUES (1, 'y', 'a')")
    with pytest.raises(Duplicate):
        conn.executemany("INSERT INTO t (name, kind) VALUES (?, 'b')", [("z",), ("z",)])


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("INSERT INTO t (name, kind) VALUES ('x', 'c')", "CHECK"),
        ("INSERT INTO t (name, kind) VALUES (NULL, 'a')", "NOT NULL"),
        ("DELETE FROM kept", "kept rows stay"),
        ("SELECT missing_column FROM t", "no such column"),
        ("SELEKT 1", "syntax"),
    ],
)
def test_every_other_refusal_is_a_db_error_not_a_duplicate(
    conn: SqliteConn, sql: str, said: str
) -> None:
    conn.execute("INSERT INTO kept (id) VALUES (1)")
    with pytest.raises(DbError, match=said) as caught:
        conn.execute(sql)
    assert not isinstance(caught.value, Duplicate)


def test_a_rolled_back_write_keeps_nothing(conn: SqliteConn) -> None:
    conn.begin_write()
    assert conn.in_transaction
    conn.execute("INSERT INTO t (name, kind) VALUES ('x', 'a')")
    assert count(conn) == 1
    conn.rollback()
    assert not conn.in_transaction and count(conn) == 0
    conn.begin_write()
    (new_id,) = one(conn.execute("INSERT INTO t (name, kind) VALUES ('y', 'b') RETURNING id"))
    conn.commit()
    assert new_id == 1 and count(conn) == 1


def test_a_write_holds_the_one_writer_lock(conn: SqliteConn, path: Path) -> None:
    other = SqliteConn.open(path)
    other.execute("PRAGMA busy_timeout=0")  # refuse at once rather than wait 15 s
    conn.begin_write()
    with pytest.raises(DbError, match="locked"):
        other.begin_write()
    conn.rollback()
    other.begin_write()
    other.rollback()
    other.close()


def test_a_read_transaction_sees_one_snapshot(conn: SqliteConn, path: Path) -> None:
    reader = SqliteConn.reader(path)
    reader.begin_read()
    assert one(reader.execute("SELECT count(*) FROM t"))[0] == 0
    conn.execute("INSERT INTO t (name, kind) VALUES ('x', 'a')")
    assert one(reader.execute("SELECT count(*) FROM t"))[0] == 0
    reader.rollback()
    assert one(reader.execute("SELECT count(*) FROM t"))[0] == 1
    reader.close()


def test_a_reader_cannot_write_and_never_makes_a_file(conn: SqliteConn, path: Path) -> None:
    reader = SqliteConn.reader(path)
    with pytest.raises(DbError, match="readonly"):
        reader.execute("INSERT INTO t (name, kind) VALUES ('x', 'a')")
    reader.execute("CREATE TEMP TABLE scratch AS SELECT * FROM t")  # the review's temp tables
    reader.close()
    missing = path.with_name("missing.db")
    with pytest.raises(DbError):
        SqliteConn.reader(missing)
    assert not missing.exists()


def test_a_migration_is_applied_once(conn: SqliteConn) -> None:
    assert conn.table_exists("t") and not conn.table_exists("u")
    sql = "CREATE TABLE u (id INTEGER PRIMARY KEY);"
    assert conn.apply_migration(2, "0002_u.sql", sql, "2026-01-02T00:00:00.000000Z")
    assert conn.table_exists("u")
    assert not conn.apply_migration(2, "0002_u.sql", sql, "2026-01-02T00:00:00.000000Z")
    rows = conn.execute("SELECT number, name FROM schema_migrations ORDER BY number").fetchall()
    assert [tuple(r) for r in rows] == [(1, "0001_t.sql"), (2, "0002_u.sql")]


def test_a_failing_migration_leaves_nothing(conn: SqliteConn) -> None:
    sql = "CREATE TABLE v (id INTEGER PRIMARY KEY); INSERT INTO nowhere VALUES (1);"
    with pytest.raises(DbError, match="nowhere"):
        conn.apply_migration(3, "0003_v.sql", sql, "2026-01-03T00:00:00.000000Z")
    assert not conn.in_transaction and not conn.table_exists("v")
    assert one(conn.execute("SELECT count(*) FROM schema_migrations WHERE number = 3"))[0] == 0


def test_a_rebuild_must_leave_foreign_keys_whole(conn: SqliteConn) -> None:
    conn.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE c (p_id INTEGER REFERENCES p(id))")
    conn.execute("INSERT INTO p VALUES (1)")
    conn.execute("INSERT INTO c VALUES (1)")
    broken = f"{FOREIGN_KEYS_OFF}\nDELETE FROM p;"
    with pytest.raises(DbError, match="1 rows break a foreign key"):
        conn.apply_migration(4, "0004_p.sql", broken, "2026-01-04T00:00:00.000000Z")
    assert one(conn.execute("SELECT count(*) FROM p"))[0] == 1
    rebuilt = (
        f"{FOREIGN_KEYS_OFF}\nCREATE TABLE p2 (id INTEGER PRIMARY KEY); INSERT INTO p2 SELECT"
        " id FROM p; DROP TABLE p; ALTER TABLE p2 RENAME TO p;"
    )
    assert conn.apply_migration(4, "0004_p.sql", rebuilt, "2026-01-04T00:00:00.000000Z")
    with pytest.raises(DbError, match="FOREIGN KEY"):
        conn.execute("DELETE FROM p")  # foreign keys are on again after the rebuild


def test_a_file_that_is_no_store_is_refused_as_a_store_error(path: Path) -> None:
    path.write_bytes(b"not a database, " * 100)
    with pytest.raises(StoreError, match="not a database"):
        Store.open(path, FakeClock())
