"""dialect.py: `?` to `$n`, and each fragment run on both engines over the same rows, agreeing."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bastion.audit import dialect
from bastion.audit.dialect import MIGRATION_LOCK, fragment, index_problem, to_dollar
from bastion.audit.location import PgLocation
from bastion.audit.pgconn import PgConn
from bastion.audit.sqlconn import DbError, Dialect
from tests.audit.test_pgconn import drop_database, icu_database, own_schema, password_file
from tests.realpg import PgCluster, PgDatabase, unique_name

# What the PostgreSQL migrations define (another part of issue 18); the tests define it too.
JSON_VALID = (
    "CREATE FUNCTION bastion_json_valid(doc text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE"
    " AS $$ BEGIN IF doc IS NULL THEN RETURN false; END IF; PERFORM doc::pg_catalog.json;"
    " RETURN true; EXCEPTION WHEN others THEN RETURN false; END $$"
)

# -- ? to $n ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "numbered"),
    [
        ("SELECT ?, ?", "SELECT $1, $2"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"),
        ("SELECT E'\\'?', ?", "SELECT E'\\'?', $1"),
        ("SELECT '\\', ?", "SELECT '\\', $1"),  # no backslash escapes in a standard string
        ('SELECT "a?""b" FROM t WHERE x = ?', 'SELECT "a?""b" FROM t WHERE x = $1'),
        ("SELECT 1 -- ?\n, ?", "SELECT 1 -- ?\n, $1"),
        ("SELECT /* a /* ? */ ? */ ?", "SELECT /* a /* ? */ ? */ $1"),
        ("SELECT $$?$$, $tag$ ? $x$ $tag$, ?", "SELECT $$?$$, $tag$ ? $x$ $tag$, $1"),
        ("SELECT a$b, ?", "SELECT a$b, $1"),
        ("SELECT '?", "SELECT '?"),
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_placeholders_are_numbered_in_code_only(sql: str, numbered: str) -> None:
    assert to_dollar(sql) == numbered


def test_statement_words_see_code_only() -> None:
    assert dialect.controls_transaction("CREATE TABLE x (a int); COMMIT")
    assert dialect.controls_transaction("begin")
    assert not dialect.controls_transaction("ROLLBACK TO SAVEPOINT a; RELEASE a")
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$"
    assert not dialect.controls_transaction(body + "; SELECT '; COMMIT' -- ; END")
    assert dialect.is_read("  /* x */ SELECT 1")
    assert not dialect.is_read("WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d")
    assert not dialect.is_read("SELECT 1; DELETE FROM t")


def test_the_lock_key_is_a_named_64_bit_number() -> None:
    digest = hashlib.sha256(b"bastion store migrations v1").digest()[:8]
    assert int.from_bytes(digest, "big", signed=True) == MIGRATION_LOCK
    assert -(1 << 63) <= MIGRATION_LOCK < (1 << 63)


@pytest.mark.parametrize(
    "parts",
    [{"path": "a'); DROP TABLE x; --"}, {"path": "A"}, {"col": "x; --"}, {"index": -1}],
)
def test_fragments_take_names_from_code_only(parts: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not what this fragment takes"):
        fragment("sqlite", "json_text", **parts)


# -- both engines -----------------------------------------------------------------------


class SqliteReads:
    """A real sqlite3 connection behind the few calls the fragments need."""

    dialect: Dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.row_factory = sqlite3.Row

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise DbError(str(exc)) from None

    def table_exists(self, name: str) -> bool:
        found = self.conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [name])
        return found.fetchone() is not None


Engines = dict[Dialect, Any]


@pytest.fixture(scope="module")
def pgdb(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    made = icu_database(pg_cluster, "dialect")
    try:
        yield made
    finally:
        drop_database(pg_cluster, made)


@pytest.fixture
def engines(pgdb: PgDatabase, pg_cluster: PgCluster, tmp_path: Path) -> Iterator[Engines]:
    """A SQLite file and a PostgreSQL schema of the test's own, side by side."""
    with own_schema(pg_cluster, pgdb, "d") as schema:
        location = PgLocation(
            f"postgresql://{pgdb.user}@{pgdb.host}:{pgdb.port}/{pgdb.database}",
            password_file=password_file(tmp_path / "pw", pgdb.password),
            schema=schema,
        )
        pg = location.connect("dialect")
        lite = SqliteReads(tmp_path / "store.db")
        try:
            pg.execute(JSON_VALID)
            yield {"sqlite": lite, "postgresql": pg}
        finally:
            pg.close()
            lite.conn.close()


DETAILS = [
    '{"first": 5, "sql": "select 1", "done": {"rows": 3, "tag": "SELECT 3",'
    ' "masking": {"email": "hash"}}, "sessions": {"s1": ["alice", "db1"],'
    ' "s2": ["bob", "db2"]}, "n": 1.5, "b": true, "f": false, "z": null, "arr": [1, 2]}',
    '{"first": "5", "sql": 7, "done": "no", "sessions": {}, "n": -2}',
    "{}",
]
MASKED = ['{"email":   "hash"}', "not json", '{"email":"other"}']
PATHS = ["first", "sql", "done", "done.rows", "done.tag", "sessions", "n", "b", "f", "z", "arr"]


def fill(engines: Engines) -> None:
    for engine, conn in engines.items():
        seq = "INTEGER" if engine == "sqlite" else "bigint"
        conn.execute(f"CREATE TABLE ev (seq {seq} PRIMARY KEY, detail text, masked text)")
        for seq_no, (detail, masked) in enumerate(zip(DETAILS, MASKED, strict=True), 1):
            conn.execute("INSERT INTO ev VALUES (?, ?, ?)", [seq_no, detail, masked])


def rows_on(engines: Engines, make: Callable[[Dialect], str], *params: Any) -> list[list[Any]]:
    """The rows each engine returns, as plain lists, SQLite's first."""
    return [
        [list(row) for row in conn.execute(make(engine), params)]
        for engine, conn in engines.items()
    ]


def test_json_reads_agree(engines: Engines) -> None:
    fill(engines)
    for path in [*PATHS, "missing", "done.missing"]:

        def reads(engine: Dialect, path: str = path) -> str:
            cells = [fragment(engine, n, col="detail", path=path) for n in
                     ("json_text", "json_number", "json_type")]  # fmt: skip
            return f"SELECT {', '.join(cells)} FROM ev ORDER BY seq"

        lite, pg = rows_on(engines, reads)
        assert lite == pg, path
    lite, _ = rows_on(engines, lambda e: "SELECT " + fragment(e, "json_number", col="detail",
                                                               path="n") + " FROM ev")  # fmt: skip
    assert lite == [[1.5], [-2], [None]]


def test_json_at_compares_with_a_canonical_note(engines: Engines) -> None:
    fill(engines)

    def same(engine: Dialect) -> str:
        note = fragment(engine, "json_canonical", x="masked")
        at = fragment(engine, "json_at", col="detail", path="done.masking")
        return f"SELECT seq, {note} = {at}, {at} IS NULL FROM ev ORDER BY seq"

    lite, pg = rows_on(engines, same)
    assert [[s, None if e is None else bool(e), bool(n)] for s, e, n in lite] == [
        [s, None if e is None else bool(e), bool(n)] for s, e, n in pg
    ]
    assert [r[1] for r in lite] == [1, None, None]


def test_json_scalars_read_as_sqlite_s_json_extract_reads_them(engines: Engines) -> None:
    """The first-form query log check's reads (bastion/audit/querylog.py): strings as text,
    numbers as numbers, an object as JSON text that compares with a canonical note; absent
    or null is NULL. On PostgreSQL the texts are in the "C" collation, as the store's columns
    are, and join with them in a database whose default is ICU."""
    fill(engines)

    def reads(engine: Dialect) -> str:
        texts = [fragment(engine, "json_scalar", col="detail", path=p)
                 for p in ("sql", "done.tag", "missing", "z")]  # fmt: skip
        numbers = [fragment(engine, "json_scalar_number", col="detail", path=p)
                   for p in ("done.rows", "n", "missing", "z")]  # fmt: skip
        part = fragment(engine, "json_part", col="detail", path="done.masking")
        note = fragment(engine, "json_canonical", x="masked")
        return (f"SELECT {', '.join(texts + numbers)}, {part} IS NOT DISTINCT FROM {note}"
                " FROM ev ORDER BY seq")  # fmt: skip

    lite, pg = rows_on(engines, reads)
    lite[1][0] = str(lite[1][0])  # a number where a text is read: SQLite keeps its type
    assert [
        [bool(c) if i >= 8 and c is not None else c for i, c in enumerate(r)] for r in lite
    ] == pg
    assert pg[0][:8] == ["select 1", "SELECT 3", None, None, 3, 1.5, None, None]
    assert [r[8] for r in pg] == [True, False, False]
    pg_conn = engines["postgresql"]
    pg_conn.execute('CREATE TABLE keyed (k text COLLATE "C")')  # as the store's columns are
    pg_conn.execute("INSERT INTO keyed VALUES ('select 1')")
    text = fragment("postgresql", "json_scalar", col="e.detail", path="sql")
    joined = f"SELECT e.seq FROM ev e JOIN keyed k ON k.k = {text}"
    assert [r[0] for r in pg_conn.execute(joined)] == [1]


def test_json_valid_agrees(engines: Engines) -> None:
    texts = ['{"a": 1}', "[1, 2]", "5", '"x"', " {} ", "nope", "{bad", "", "{'a': 1}", None]
    lite, pg = (
        [conn.execute(f"SELECT {fragment(e, 'json_valid', x='?')}", [t]).fetchall()[0][0]
         for t in texts]
        for e, conn in engines.items()
    )  # fmt: skip
    assert [bool(v) for v in lite] == pg == [True] * 5 + [False] * 5


def test_json_each_agrees(engines: Engines) -> None:
    fill(engines)

    def sessions(engine: Dialect) -> str:
        each = fragment(engine, "json_each", col="e.detail", path="sessions")
        actor = fragment(engine, "json_item_text", value="j.value", index=0)
        subject = fragment(engine, "json_item_text", value="j.value", index=1)
        return f"SELECT e.seq, j.key, {actor}, {subject} FROM ev e, {each} j"

    lite, pg = (sorted(rows) for rows in rows_on(engines, sessions))
    assert lite == pg == [[1, "s1", "alice", "db1"], [1, "s2", "bob", "db2"]]


def test_case_blind_like_and_contains_agree(engines: Engines) -> None:
    for conn in engines.values():
        conn.execute("CREATE TABLE w (id bigint, x text)")
        for i, text in enumerate(["DELETE FROM a", "delete from b", "select 1", "Drop"]):
            conn.execute("INSERT INTO w VALUES (?, ?)", [i, text])

    def like(engine: Dialect) -> str:
        found = fragment(engine, "like_ci", x="x", pattern="?")
        return f"SELECT id FROM w WHERE {found} ORDER BY id"

    assert rows_on(engines, like, "%Delete%") == [[[0], [1]]] * 2

    def contains(engine: Dialect) -> str:
        return f"SELECT {fragment(engine, 'contains', x='x', needle='?')} FROM w ORDER BY id"

    lite, pg = rows_on(engines, contains, "FROM")
    assert [[bool(v) for v in r] for r in lite] == pg == [[True], [False], [False], [False]]


SHAPES = [
    ("seq INTEGER PRIMARY KEY, kind TEXT", "seq bigint PRIMARY KEY, kind text", True),
    ("seq INTEGER, kind TEXT", "seq bigint, kind text", False),
    ("seq INTEGER UNIQUE, kind TEXT", "seq bigint UNIQUE, kind text", False),
    ("seq INTEGER, kind TEXT, PRIMARY KEY (seq, kind)",
     "seq bigint, kind text, PRIMARY KEY (seq, kind)", False),
    ("seq TEXT PRIMARY KEY, kind TEXT", "seq integer PRIMARY KEY, kind text", False),
    ("seq REAL PRIMARY KEY", "seq text PRIMARY KEY", False),
    ("kind TEXT PRIMARY KEY, seq INTEGER", "kind text PRIMARY KEY, seq bigint", False),
]  # fmt: skip


@pytest.mark.parametrize(("lite_shape", "pg_shape", "ok"), SHAPES)
def test_the_seq_key_check_agrees(
    engines: Engines, lite_shape: str, pg_shape: str, ok: bool
) -> None:
    for engine, conn in engines.items():
        shape = lite_shape if engine == "sqlite" else pg_shape
        conn.execute(f"CREATE TABLE audit_events ({shape})")
        found = conn.execute(fragment(engine, "seq_is_key")).fetchall()
        assert [bool(found[0]["ok"])] == [ok], engine


def test_the_seq_key_check_sees_a_deferred_key(engines: Engines) -> None:
    pg = engines["postgresql"]
    pg.execute("CREATE TABLE audit_events (seq bigint PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)")
    assert not pg.execute(fragment("postgresql", "seq_is_key")).fetchall()[0]["ok"]


# -- the index check --------------------------------------------------------------------


def test_sqlite_index_check_sees_an_index_that_leaves_a_row_out(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE ix (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("CREATE INDEX ix_v ON ix (v) WHERE id <> 2")
        conn.executemany("INSERT INTO ix VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
        reads = SqliteReads(path)
        assert index_problem(reads, ["ix"]) is None
        reads.conn.close()
        conn.execute("PRAGMA writable_schema = ON")  # an admin with the file
        conn.execute("UPDATE sqlite_master SET sql = 'CREATE INDEX ix_v ON ix (v)'"
                     " WHERE name = 'ix_v'")  # fmt: skip
    reads = SqliteReads(path)
    try:
        found = index_problem(reads, ["ix"])
    finally:
        reads.conn.close()
    assert found is not None
    assert "table ix and its indexes disagree: " in found
    assert "missing from index ix_v" in found


def test_postgresql_index_check_needs_amcheck_and_sees_a_missing_row(
    engines: Engines, pg_cluster: PgCluster, pgdb: PgDatabase
) -> None:
    pg: PgConn = engines["postgresql"]
    pg.execute("CREATE TABLE ix (id bigint PRIMARY KEY, v text)")
    pg.execute("CREATE INDEX ix_v ON ix (v)")
    pg.executemany("INSERT INTO ix VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    found = index_problem(pg, ["ix"])
    assert found is not None
    assert "cannot be checked: the amcheck extension is not installed" in found

    def admin(statement: str) -> None:
        pg_cluster.sql(statement, pgdb.database)

    schema = unique_name("ac")
    admin(f"CREATE SCHEMA {schema}; CREATE EXTENSION amcheck SCHEMA {schema};"
          f" GRANT USAGE ON SCHEMA {schema} TO {pgdb.user}")  # fmt: skip
    try:
        found = index_problem(pg, ["ix"])
        assert found is not None
        assert "cannot be checked: permission denied for function bt_index_check" in found
        admin(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {pgdb.user}")
        assert index_problem(pg, ["ix"]) is None
        assert index_problem(pg, ["nowhere"]) == "the store has no table nowhere"
        index = pg.execute("SELECT 'ix_v'::regclass::oid").fetchall()[0][0]
        admin(f"UPDATE pg_index SET indisready = false WHERE indexrelid = {index}")
        pg.execute("INSERT INTO ix VALUES (4, 'd')")  # the index is not told of it
        admin(f"UPDATE pg_index SET indisready = true WHERE indexrelid = {index}")
        found = index_problem(pg, ["ix"])
    finally:
        admin(f"DROP EXTENSION IF EXISTS amcheck; DROP SCHEMA IF EXISTS {schema}")
    assert found is not None
    assert "table ix and its indexes disagree: " in found
    assert 'lacks matching index tuple within index "ix_v"' in found


def test_the_postgresql_side_sorts_unlike_sqlite(engines: Engines) -> None:
    """The fixture is hostile on purpose: ICU en-US orders punctuation unlike bytes, so a text
    compared without COLLATE "C" would show here."""
    sql = "SELECT 'session_c' < 'session-b', 'session-b' < 'session.a', 'a' < 'B'"
    lite, pg = (list(conn.execute(sql).fetchall()[0]) for conn in engines.values())
    assert [bool(v) for v in lite] == [False, True, False]  # byte order
    assert pg == [True, True, True]
