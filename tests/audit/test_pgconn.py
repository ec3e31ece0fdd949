"""PgConn against a real PostgreSQL 15: the store's Conn on asyncpg, driven synchronously."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql as pgsql

from bastion.audit import dialect
from bastion.audit.dialect import MIGRATION_LOCK
from bastion.audit.location import PgLocation
from bastion.audit.pgconn import PgConn
from bastion.audit.sqlconn import Conn, DbError, Duplicate
from tests.realpg import PgCluster, PgDatabase, random_password, unique_name

WAIT = 30.0  # the longest a test waits for the server to reach a state


def icu_database(cluster: PgCluster, prefix: str) -> PgDatabase:
    """A fresh role and a database it owns whose default collation is ICU en-US (so a text
    column without COLLATE "C" sorts punctuation unlike SQLite), whose default isolation is
    REPEATABLE READ (so a transaction that does not state READ COMMITTED shows), and where
    the role may create schemas."""
    role, password, name = unique_name(f"{prefix}_r"), random_password(), unique_name(prefix)
    cluster.create_role(role, password)
    cluster.sql(
        pgsql.SQL(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0 LOCALE_PROVIDER icu"
            " ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        ).format(pgsql.Identifier(name), pgsql.Identifier(role))
    )
    cluster.sql(
        pgsql.SQL("ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'").format(
            pgsql.Identifier(name)
        )
    )
    return PgDatabase(cluster.host, cluster.port, name, role, password, cluster)


def drop_database(cluster: PgCluster, db: PgDatabase) -> None:
    cluster.drop_database(db.database)
    cluster.drop_role(db.user)


@contextmanager
def own_schema(cluster: PgCluster, db: PgDatabase, prefix: str) -> Iterator[str]:
    """A schema of the caller's own in `db`, owned by its role; dropped afterwards."""
    schema = unique_name(prefix)
    cluster.sql(
        pgsql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
            pgsql.Identifier(schema), pgsql.Identifier(db.user)
        ),
        db.database,
    )
    try:
        yield schema
    finally:
        cluster.sql(
            pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(schema)),
            db.database,
        )


def password_file(path: Path, password: str, mode: int = 0o600) -> Path:
    path.write_text(password + "\n")
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def db(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    made = icu_database(pg_cluster, "pgconn")
    try:
        yield made
    finally:
        drop_database(pg_cluster, made)


@pytest.fixture
def location(db: PgDatabase, pg_cluster: PgCluster, tmp_path: Path) -> Iterator[PgLocation]:
    """A location in a schema of the test's own (dropped after)."""
    url = f"postgresql://{db.user}@{db.host}:{db.port}/{db.database}"
    secret = password_file(tmp_path / "store.password", db.password)
    with own_schema(pg_cluster, db, "s") as schema:
        chain_lock = pgsql.Identifier(schema, "chain_lock")  # what migration 0024 makes
        pg_cluster.sql(pgsql.SQL("CREATE TABLE {} (name text PRIMARY KEY);"
                                 " ALTER TABLE {} OWNER TO {}").format(
            chain_lock, chain_lock, pgsql.Identifier(db.user)), db.database)  # fmt: skip
        yield PgLocation(url, password_file=secret, schema=schema, head_file=tmp_path / "head")


@pytest.fixture
def opened(location: PgLocation) -> Iterator[Callable[..., PgConn]]:
    """Opens PgConns on the test's location (node names unique to the test); closes them after."""
    made: list[PgConn] = []
    node = unique_name("n")

    def open_one(**kwargs: Any) -> PgConn:
        conn = location.connect(f"{node}-{len(made)}", **kwargs)
        made.append(conn)
        return conn

    try:
        yield open_one
    finally:
        for conn in made:
            conn.close()


@pytest.fixture
def conn(opened: Callable[..., PgConn]) -> PgConn:
    found = opened()
    found.execute("CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, n bigint)")
    return found


def backend_pid(conn: PgConn) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def terminate(cluster: PgCluster, pid: int) -> None:
    """End a backend, as an admin or a crash would, and wait until it is gone."""
    cluster.sql("SELECT pg_terminate_backend(%s)", params=[pid])
    wait_until(
        lambda: not cluster.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", params=[pid]),
        f"backend {pid} gone",
    )


def advisory_waiters(cluster: PgCluster, key: int) -> int:
    """How many sessions wait for the advisory lock `key` (bigint keys: classid is the high
    half, objid the low half, objsubid 1)."""
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    rows = cluster.sql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
        params=[high, low],
    )
    return int(rows[0][0])


def chain_waiters(cluster: PgCluster, database: str, schema: str) -> int:
    """How many sessions wait for the chain lock (the table `schema`.chain_lock)."""
    rows = cluster.sql(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE l.locktype = 'relation'"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND NOT l.granted AND c.relname = 'chain_lock' AND n.nspname = %s",
        database,
        params=[schema],
    )
    return int(rows[0][0])


class Holder:
    """The test's own session holding a lock in a transaction until release(): an advisory
    `key`, or with `schema` the chain lock of the store in that schema."""

    def __init__(self, cluster: PgCluster, db: PgDatabase, key: int | None = None,
                 schema: str | None = None) -> None:  # fmt: skip
        self.session = cluster.connect(db.database)
        self.session.autocommit = False
        if schema is not None:
            self.session.execute(pgsql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
                pgsql.Identifier(schema, "chain_lock")))  # fmt: skip
        else:
            self.session.execute("SELECT pg_advisory_xact_lock(%s)", [key])

    def release(self) -> None:
        self.session.rollback()
        self.session.close()


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start target in a thread; its result or exception lands in the returned list."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(target())
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


# -- the Conn interface -----------------------------------------------------------------


def test_pgconn_keeps_the_conn_protocol(conn: PgConn) -> None:
    kept: Conn = conn
    assert kept.dialect == "postgresql"
    assert not kept.in_transaction


def test_placeholders_become_numbered_but_not_inside_literals(conn: PgConn) -> None:
    row = conn.execute(
        "SELECT ? AS a, 'what?' AS b, ? AS \"c?\" /* ? */ -- ?\n, E'it''s\\'?' AS d, $x$?$x$ AS e",
        ["one", "two"],
    ).fetchall()[0]
    assert dict(row) == {"a": "one", "b": "what?", "c?": "two", "d": "it's'?", "e": "?"}


def test_rows_read_like_sqlite_rows(conn: PgConn) -> None:
    conn.execute("INSERT INTO t (id, name, n) VALUES (?, ?, ?)", [1, "alice", 7])
    result = conn.execute("SELECT id, name, n FROM t")
    row = result.fetchone()
    assert row is not None
    assert (row[0], row["name"], dict(row)) == (1, "alice", {"id": 1, "name": "alice", "n": 7})
    assert result.fetchone() is None
    assert [tuple(r) for r in conn.execute("SELECT id, name FROM t")] == [(1, "alice")]


def test_rowcount_comes_from_the_status_tag(conn: PgConn) -> None:
    inserted = conn.execute("INSERT INTO t (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    assert inserted.rowcount == 3
    assert conn.execute("UPDATE t SET n = 1 WHERE id > ?", [1]).rowcount == 2
    assert conn.execute("UPDATE t SET n = 1 WHERE id > ?", [9]).rowcount == 0
    assert conn.execute("DELETE FROM t WHERE id = ?", [3]).rowcount == 1
    assert conn.execute("SELECT * FROM t").rowcount == -1
    returned = conn.execute("INSERT INTO t (id, name) VALUES (?, ?) RETURNING id", [9, "z"])
    assert (returned.rowcount, returned.fetchall()[0]["id"]) == (1, 9)


def test_status_tags_parse(conn: PgConn) -> None:
    assert [dialect.rowcount(s) for s in ("INSERT 0 5", "UPDATE 0", "MERGE 2", "SELECT 4", "")] == [
        5,
        0,
        2,
        -1,
        -1,
    ]


def test_a_unique_key_is_duplicate_and_other_refusals_are_dberror(conn: PgConn) -> None:
    conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')")
    with pytest.raises(Duplicate, match="unique constraint"):
        conn.execute("INSERT INTO t (id, name) VALUES (1, 'b')")
    with pytest.raises(DbError) as refused:
        conn.execute("INSERT INTO t (id, name) VALUES (2, NULL)")
    assert not isinstance(refused.value, Duplicate)
    assert "23502" in str(refused.value)
    with pytest.raises(DbError, match="does not exist"):
        conn.execute("SELECT * FROM nowhere")


def test_sums_are_int_never_decimal(conn: PgConn) -> None:
    conn.executemany("INSERT INTO t (id, name, n) VALUES (?, ?, ?)", [(1, "a", 2), (2, "b", 3)])
    row = conn.execute(
        "SELECT SUM(n) AS s, SUM(id * 1.0) AS f, COUNT(*) AS c, AVG(n) AS a FROM t"
    ).fetchall()[0]
    assert (row["s"], row["f"], row["c"]) == (5, 3, 2)
    assert all(type(row[k]) is int for k in ("s", "f", "c"))
    assert row["a"] == Decimal("2.5")  # a fraction stays exact
    assert conn.execute("SELECT ?::numeric AS x", [12]).fetchall()[0]["x"] == 12


def test_a_nul_in_text_is_a_dberror_and_the_connection_lives_on(conn: PgConn) -> None:
    with pytest.raises(DbError) as refused:
        conn.execute("INSERT INTO t (id, name) VALUES (?, ?)", [1, "ls\x00-la"])
    assert "ls\x00-la" not in str(refused.value)
    assert conn.execute("SELECT count(*) FROM t").fetchall()[0][0] == 0


def test_a_wrong_type_is_refused_without_the_value(conn: PgConn) -> None:
    with pytest.raises(DbError) as refused:
        conn.execute("SELECT ?::bigint", ["hunter2-secret"])
    assert "hunter2-secret" not in str(refused.value)
    assert "$1" in str(refused.value)
    with pytest.raises(DbError) as refused:
        conn.execute("SELECT CAST(?::text AS bigint)", ["hunter2-secret"])
    assert "hunter2-secret" not in str(refused.value)
    assert "22P02" in str(refused.value)


def test_a_value_inside_an_array_parameter_is_refused_without_the_value(conn: PgConn) -> None:
    """The store inserts a commit's events as one array per column: an element the server
    quotes back in its error is kept out of the message as a plain parameter is."""
    with pytest.raises(DbError) as refused:
        conn.execute("SELECT (?::text[])::bigint[]", [["1", "hunter2-secret"]])
    assert "hunter2-secret" not in str(refused.value)
    assert "22P02" in str(refused.value)


def test_transaction_control_goes_through_its_methods(conn: PgConn) -> None:
    for statement in ("BEGIN", "commit", "START TRANSACTION", "SELECT 1; ROLLBACK"):
        with pytest.raises(DbError, match="begin_write"):
            conn.execute(statement)


def test_executemany_is_all_or_nothing(conn: PgConn) -> None:
    conn.executemany("INSERT INTO t (id, name) VALUES (?, ?)", [(1, "a"), (2, "b")])
    with pytest.raises(Duplicate):
        conn.executemany("INSERT INTO t (id, name) VALUES (?, ?)", [(3, "c"), (1, "again")])
    assert [r[0] for r in conn.execute("SELECT id FROM t ORDER BY id")] == [1, 2]
    conn.executemany("INSERT INTO t (id, name) VALUES (?, ?)", [])


def test_table_exists_names_the_stores_own_tables(conn: PgConn) -> None:
    assert conn.table_exists("t")
    assert not conn.table_exists("schema_migrations")
    conn.begin_read()
    conn.execute("CREATE TEMP TABLE shadow AS SELECT 1 AS x")
    assert not conn.table_exists("shadow")
    conn.rollback()


# -- settings and transactions ----------------------------------------------------------


def test_sessions_start_with_the_stores_settings(conn: PgConn, location: PgLocation) -> None:
    shown = {
        name: conn.execute(f"SHOW {name}").fetchall()[0][0]
        for name in ("synchronous_commit", "lock_timeout", "search_path", "application_name")
    }
    assert shown["synchronous_commit"] == "on"  # the test cluster's default is off
    assert shown["lock_timeout"] == "15s"
    assert shown["search_path"] == f'"{location.schema}"'
    assert shown["application_name"].startswith("bastion-store/")
    idle = conn.execute("SHOW idle_in_transaction_session_timeout").fetchall()[0][0]
    assert idle == "5s"


def test_writes_read_committed_and_reads_one_snapshot(conn: PgConn) -> None:
    conn.begin_write()
    assert conn.in_transaction
    level = conn.execute("SHOW transaction_isolation").fetchall()[0][0]
    assert level == "read committed"  # the database's default is repeatable read
    conn.commit()
    assert not conn.in_transaction
    conn.begin_read()
    assert conn.execute("SHOW transaction_isolation").fetchall()[0][0] == "repeatable read"
    conn.execute("CREATE TEMP TABLE ev AS SELECT id FROM t WHERE id > ?", [0])  # not READ ONLY
    conn.execute("CREATE INDEX ev_id ON ev (id)")
    conn.rollback()
    with pytest.raises(DbError, match="open already"):
        conn.begin_read()
        conn.begin_write()
    conn.rollback()


def test_a_commit_of_a_failed_transaction_is_refused(conn: PgConn) -> None:
    conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')")
    conn.begin_write()
    conn.execute("INSERT INTO t (id, name) VALUES (2, 'b')")
    with pytest.raises(Duplicate):
        conn.execute("INSERT INTO t (id, name) VALUES (1, 'again')")
    with pytest.raises(DbError, match="rolled it back"):
        conn.commit()
    assert not conn.in_transaction
    assert [r[0] for r in conn.execute("SELECT id FROM t")] == [1]


def test_begin_write_serialises_two_connections(
    opened: Callable[..., PgConn], pg_cluster: PgCluster, db: PgDatabase, location: PgLocation
) -> None:
    first, second = opened(), opened()
    first.execute("CREATE TABLE chain (seq bigint PRIMARY KEY)")
    first.execute("INSERT INTO chain VALUES (1)")
    first.begin_write()

    def append() -> int:
        second.begin_write()
        seq = int(second.execute("SELECT max(seq) FROM chain").fetchall()[0][0]) + 1
        second.execute("INSERT INTO chain VALUES (?)", [seq])
        second.commit()
        return seq

    thread, out = in_thread(append)
    wait_until(lambda: chain_waiters(pg_cluster, db.database, location.schema) == 1,
               "the second writer waits")  # fmt: skip
    head = int(first.execute("SELECT max(seq) FROM chain").fetchall()[0][0])
    first.execute("INSERT INTO chain VALUES (?)", [head + 1])
    first.commit()
    thread.join(WAIT)
    assert out == [3]  # it read the head after the first writer's commit, not before
    assert [r[0] for r in first.execute("SELECT seq FROM chain ORDER BY seq")] == [1, 2, 3]


def test_appends_from_three_connections_make_one_gapless_chain(
    opened: Callable[..., PgConn],
) -> None:
    conns = [opened() for _ in range(3)]
    conns[0].execute("CREATE TABLE chain (seq bigint PRIMARY KEY, by text NOT NULL)")

    def append(conn: PgConn, by: str) -> Callable[[], None]:
        def run() -> None:
            for _ in range(20):
                conn.begin_write()
                head = conn.execute("SELECT coalesce(max(seq), 0) FROM chain").fetchall()[0][0]
                conn.execute("INSERT INTO chain VALUES (?, ?)", [head + 1, by])
                conn.commit()

        return run

    started = [in_thread(append(c, str(i))) for i, c in enumerate(conns)]
    for thread, out in started:
        thread.join(WAIT)
        assert out == [None]
    rows = conns[0].execute("SELECT seq, by FROM chain ORDER BY seq").fetchall()
    assert [r["seq"] for r in rows] == list(range(1, 61))
    assert sorted({r["by"] for r in rows}) == ["0", "1", "2"]


def test_one_time_step_offered_twice_at_once_is_accepted_once(
    opened: Callable[..., PgConn], pg_cluster: PgCluster, db: PgDatabase, location: PgLocation
) -> None:
    first, second = opened(), opened()
    first.execute("CREATE TABLE users (id bigint PRIMARY KEY, totp_last_step bigint NOT NULL)")
    first.execute("INSERT INTO users VALUES (1, 100)")

    def offer(conn: PgConn) -> Callable[[], str]:
        def run() -> str:  # people.record_totp_attempt's read-then-write, as it is today
            conn.begin_write()
            last = conn.execute("SELECT totp_last_step FROM users WHERE id = 1").fetchall()[0][0]
            if last >= 101:
                conn.rollback()
                return "REPLAYED"
            conn.execute("UPDATE users SET totp_last_step = ? WHERE id = 1", [101])
            conn.commit()
            return "ACCEPTED"

        return run

    holder = Holder(pg_cluster, db, schema=location.schema)
    try:
        started = [in_thread(offer(c)) for c in (first, second)]
        wait_until(lambda: chain_waiters(pg_cluster, db.database, location.schema) == 2,
                   "both offers wait")  # fmt: skip
    finally:
        holder.release()
    for thread, _ in started:
        thread.join(WAIT)
    assert sorted(out[0] for _, out in started) == ["ACCEPTED", "REPLAYED"]


def test_a_writer_that_waits_too_long_for_the_lock_fails(
    opened: Callable[..., PgConn], pg_cluster: PgCluster, db: PgDatabase, location: PgLocation
) -> None:
    holder = Holder(pg_cluster, db, schema=location.schema)
    impatient = opened(lock_timeout=0.05)
    try:
        with pytest.raises(DbError, match="lock timeout"):
            impatient.begin_write()
    finally:
        holder.release()
    assert not impatient.in_transaction
    impatient.begin_write()
    impatient.commit()


def migrate(conn: PgConn, script: str) -> Callable[[], bool]:
    return lambda: conn.apply_migration(1, "0001_m.sql", script, "2026-12-07")


def test_migrations_from_three_threads_apply_once(
    opened: Callable[..., PgConn], pg_cluster: PgCluster, db: PgDatabase
) -> None:
    conns = [opened() for _ in range(3)]
    script = "CREATE TABLE m (id bigint); INSERT INTO m VALUES (1);"
    holder = Holder(pg_cluster, db, MIGRATION_LOCK)
    try:
        started = [in_thread(migrate(c, script)) for c in conns]
        wait_until(lambda: advisory_waiters(pg_cluster, MIGRATION_LOCK) == 3, "three wait")
    finally:
        holder.release()
    for thread, _ in started:
        thread.join(WAIT)
    assert sorted(out[0] for _, out in started) == [False, False, True]
    assert conns[0].execute("SELECT count(*) FROM m").fetchall()[0][0] == 1
    rows = [dict(r) for r in conns[0].execute("SELECT * FROM schema_migrations")]
    assert rows == [{"number": 1, "name": "0001_m.sql", "applied_at": "2026-12-07"}]


def test_a_failed_migration_leaves_nothing(conn: PgConn) -> None:
    with pytest.raises(DbError, match="syntax"):
        conn.apply_migration(2, "0002_x.sql", "CREATE TABLE x (id bigint); CREATE TABLE;", "t")
    assert not conn.table_exists("x")
    assert not conn.in_transaction
    with pytest.raises(DbError, match="transaction of its own"):
        conn.apply_migration(2, "0002_x.sql", "CREATE TABLE x (id bigint); COMMIT;", "t")
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;"
    assert conn.apply_migration(2, "0002_f.sql", body, "t")
    assert not conn.apply_migration(2, "0002_f.sql", body, "t")


# -- a lost connection ------------------------------------------------------------------


def test_a_read_after_the_connection_is_lost_is_run_again(
    conn: PgConn, pg_cluster: PgCluster
) -> None:
    conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')")
    before = backend_pid(conn)
    terminate(pg_cluster, before)
    assert conn.execute("SELECT name FROM t").fetchall()[0]["name"] == "a"
    assert backend_pid(conn) != before


def test_a_write_after_the_connection_is_lost_is_refused(
    conn: PgConn, pg_cluster: PgCluster
) -> None:
    terminate(pg_cluster, backend_pid(conn))
    with pytest.raises(DbError, match="not retried"):
        conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')")
    assert conn.execute("SELECT count(*) FROM t").fetchall()[0][0] == 0  # reopened for the read
    terminate(pg_cluster, backend_pid(conn))
    conn.begin_write()  # BEGIN is safe to send again: nothing had started
    conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')")
    conn.commit()


def test_a_transaction_cut_in_half_stays_failed_until_rolled_back(
    conn: PgConn, pg_cluster: PgCluster
) -> None:
    conn.begin_write()
    conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')")
    terminate(pg_cluster, backend_pid(conn))
    with pytest.raises(DbError, match="middle of a transaction"):
        conn.execute("INSERT INTO t (id, name) VALUES (2, 'b')")
    with pytest.raises(DbError, match="middle of a transaction"):  # never in autocommit
        conn.execute("INSERT INTO t (id, name) VALUES (3, 'c')")
    assert conn.in_transaction
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM t").fetchall()[0][0] == 0


def test_a_commit_whose_outcome_is_unknown_is_not_retried(
    conn: PgConn, pg_cluster: PgCluster
) -> None:
    conn.begin_write()
    conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')")
    terminate(pg_cluster, backend_pid(conn))
    with pytest.raises(DbError, match="during COMMIT"):
        conn.commit()
    with pytest.raises(DbError, match="during COMMIT"):
        conn.execute("SELECT 1")
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM t").fetchall()[0][0] == 0


# -- threads, loops and secrets ---------------------------------------------------------


async def test_a_thread_running_an_event_loop_is_refused(location: PgLocation) -> None:
    made: list[PgConn] = []
    thread, out = in_thread(lambda: made.append(location.connect("loop-test")))
    thread.join(WAIT)
    assert out == [None], out
    try:
        with pytest.raises(DbError, match="event loop"):
            made[0].execute("SELECT 1")
        with pytest.raises(DbError, match="event loop"):
            made[0].begin_write()
        assert not made[0].in_transaction
        with pytest.raises(DbError, match="event loop"):
            location.connect("loop-test")
    finally:
        made[0].close()  # from the loop's thread too: it closes in a thread of its own


def test_one_connection_used_from_two_threads_in_turn(conn: PgConn) -> None:
    conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')")
    thread, out = in_thread(lambda: conn.execute("SELECT name FROM t").fetchall()[0]["name"])
    thread.join(WAIT)
    assert out == ["a"]
    assert conn.execute("SELECT count(*) FROM t").fetchall()[0][0] == 1


def test_the_password_is_never_shown(
    location: PgLocation,
    db: PgDatabase,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    conn = location.connect("shown")
    try:
        shown = [repr(location), str(location), repr(conn)]
    finally:
        conn.close()
    wrong = PgLocation(
        location.url, password_file=password_file(tmp_path / "wrong", "Wr0ng-" + db.password)
    )
    with pytest.raises(DbError, match="password authentication failed") as refused:
        wrong.connect("wrong")
    shown += [str(refused.value), repr(wrong), caplog.text, *capsys.readouterr()]
    assert not [s for s in shown if db.password in s]
    assert all(location.url in s for s in shown[:2])
    with pytest.raises(TypeError, match="never pickled"):
        __import__("pickle").dumps(location)


def test_a_store_that_cannot_be_reached_is_a_dberror(tmp_path: Path) -> None:
    gone = PgLocation("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(DbError, match="cannot connect to the store postgresql://nobody@"):
        gone.connect("gone")


def test_a_writer_stuck_in_its_transaction_is_cut_off(
    opened: Callable[..., PgConn], pg_cluster: PgCluster
) -> None:
    stuck, other = opened(idle_in_transaction=0.05), opened()
    stuck.begin_write()
    pid = backend_pid(stuck)
    wait_until(
        lambda: not pg_cluster.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", params=[pid]),
        "the server ends the idle transaction",
    )
    other.begin_write()  # the chain lock went with it
    other.commit()
    with pytest.raises(DbError, match="middle of a transaction"):
        stuck.execute("SELECT 1")
    stuck.rollback()
    assert stuck.execute("SELECT 1").fetchall()[0][0] == 1


def test_a_node_stuck_holding_the_chain_lock_is_cut_off_before_the_others_give_up(
    opened: Callable[..., PgConn], pg_cluster: PgCluster
) -> None:
    """Store connections as every node opens them (the default settings). One takes the chain
    lock and goes silent (its node frozen, or cut off mid-transaction): the server must end it
    before another node's wait for the lock (lock_timeout) gives up, so one stuck node never
    stops every node's writes, and with them, past the grace, every node's sessions."""
    stuck, other = opened(), opened()
    stuck.begin_write()
    pid = backend_pid(stuck)
    other.begin_write()  # waits for the lock until the stuck one is cut off: no lock timeout
    other.commit()
    assert not pg_cluster.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", params=[pid])


def test_a_schema_that_does_not_exist_is_named(location: PgLocation) -> None:
    missing = PgLocation.handed(location.url, location.handoff()[1], "no_such_schema")
    with pytest.raises(DbError, match='schema "no_such_schema" does not exist'):
        missing.connect("missing")


def test_a_read_run_again_may_not_write_after_all(conn: PgConn, pg_cluster: PgCluster) -> None:
    conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')")
    conn.execute("CREATE SEQUENCE ids")
    for sneaky in ("SELECT * FROM t FOR UPDATE", "SELECT nextval('ids')"):
        terminate(pg_cluster, backend_pid(conn))
        with pytest.raises(DbError, match="read-only transaction"):
            conn.execute(sneaky)
    assert conn.execute("SELECT nextval('ids')").fetchall()[0][0] == 1


def test_an_interrupted_statement_leaves_its_transaction_failed(
    conn: PgConn, pg_cluster: PgCluster
) -> None:
    assert threading.current_thread() is threading.main_thread()  # where SIGINT lands
    conn.begin_write()
    pid = backend_pid(conn)

    def interrupt() -> None:
        wait_until(
            lambda: bool(pg_cluster.sql(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE %s",
                params=[pid, "%pg_sleep%"],
            )),
            "the statement runs",
        )  # fmt: skip
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread, _ = in_thread(interrupt)
    with pytest.raises(KeyboardInterrupt):
        conn.execute("SELECT pg_sleep(60)")
    thread.join(WAIT)
    terminate(pg_cluster, pid)  # the server would only notice when it next writes
    with pytest.raises(DbError, match="middle of a transaction"):
        conn.execute("SELECT 1")
    conn.rollback()
    assert conn.execute("SELECT 1").fetchall()[0][0] == 1


def test_a_statement_the_store_does_not_answer_in_time_fails(
    opened: Callable[..., PgConn],
) -> None:
    impatient = opened(command_timeout=0.2)
    before = backend_pid(impatient)
    with pytest.raises(DbError, match=r"did not answer within 0\.2 s"):
        impatient.execute("SELECT pg_sleep(5)")
    assert backend_pid(impatient) != before
