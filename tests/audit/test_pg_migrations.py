"""The PostgreSQL twins of the store's migrations: one per SQLite migration, and the same schema."""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from tests.audit.migschema import (
    Migration,
    apply_pg,
    apply_sqlite,
    migrations_in,
    open_sqlite,
    pg_migrations,
    pg_schema,
    schema_differences,
    sqlite_migrations,
    sqlite_schema,
    transaction_control,
    twin_problems,
)
from tests.realpg import (
    PgCluster,
    PgDatabase,
    asyncpg_connect,
    psycopg_connect,
    random_password,
    unique_name,
)

ROOT = Path(__file__).resolve().parents[2]
APPEND_ONLY = "audit events are append-only"


# -- where they run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_db(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    """One database for the module, owned by an ordinary role, whose default collation is ICU
    en-US (the cluster's C.UTF-8 would hide a column left without COLLATE "C")."""
    role, name = unique_name("mig_owner"), unique_name("mig_db")
    password = random_password()
    pg_cluster.create_role(role, password)
    pg_cluster.sql(
        pgsql.SQL(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0 LOCALE_PROVIDER icu"
            " ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        ).format(pgsql.Identifier(name), pgsql.Identifier(role))
    )
    try:
        yield PgDatabase(pg_cluster.host, pg_cluster.port, name, role, password, pg_cluster)
    finally:
        pg_cluster.drop_database(name)
        pg_cluster.drop_role(role)


def pg_schema_conn(db: PgDatabase, schema: str) -> psycopg.Connection[Any]:
    """An autocommit connection as the owner, working in a new schema of its own."""
    conn = psycopg_connect(db, autocommit=True)
    conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(schema)))
    conn.execute(pgsql.SQL("SET search_path = {}").format(pgsql.Identifier(schema)))
    return conn


@pytest.fixture(scope="module")
def pg_head(pg_db: PgDatabase) -> Iterator[psycopg.Connection[Any]]:
    """Every twin applied, each in its own transaction."""
    conn = pg_schema_conn(pg_db, "head")
    apply_pg(conn, pg_migrations())
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def sqlite_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    conn = open_sqlite(tmp_path_factory.mktemp("lite") / "head.db")
    apply_sqlite(conn, sqlite_migrations())
    yield conn
    conn.close()


# -- one twin for each migration -------------------------------------------------------------


def test_every_sqlite_migration_has_its_postgresql_twin() -> None:
    lite, pg = sqlite_migrations(), pg_migrations()
    assert twin_problems(lite, pg) == []
    assert [name for _, name, _ in lite] == [name for _, name, _ in pg]
    assert len(pg) >= 20


def test_no_twin_controls_its_own_transaction() -> None:
    """The runner wraps each twin in one transaction; a COMMIT inside would split it."""
    assert {name: transaction_control(sql) for _, name, sql in pg_migrations()} == {
        name: [] for _, name, _ in pg_migrations()
    }
    assert transaction_control("CREATE INDEX CONCURRENTLY i ON t(a);\nCOMMIT;\nEND ;") == [
        "CONCURRENTLY",
        "COMMIT",
        "END ;",
    ]
    assert transaction_control("CREATE FUNCTION f() AS $$ BEGIN END; $$; -- COMMIT") == []


def test_a_migration_without_its_twin_is_named(tmp_path: Path) -> None:
    lite_dir, pg_dir = tmp_path / "lite", tmp_path / "pg"
    lite_dir.mkdir()
    pg_dir.mkdir()
    for _number, name, sql in sqlite_migrations():
        (lite_dir / name).write_text(sql)
    for _number, name, sql in pg_migrations():
        (pg_dir / name).write_text(sql)
    assert twin_problems(migrations_in(lite_dir), migrations_in(pg_dir)) == []
    newest = sqlite_migrations()[-1][1]
    (lite_dir / "9998_only_here.sql").write_text("SELECT 1;")
    (pg_dir / newest).rename(pg_dir / (newest[:5] + "renamed.sql"))
    (pg_dir / "9999_orphan.sql").write_text("SELECT 1;")
    assert twin_problems(migrations_in(lite_dir), migrations_in(pg_dir)) == [
        f"{newest}'s PostgreSQL twin is named {newest[:5]}renamed.sql",
        "9998_only_here.sql has no PostgreSQL twin",
        "postgresql/9999_orphan.sql twins no SQLite migration",
    ]


def test_the_twins_ship_with_the_package() -> None:
    """Every twin matches a package-data pattern (a glob, as setuptools reads it: `*` stops at
    a slash), so a wheel carries it, and the package's resources list the same files."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["bastion.audit"]
    twins = sorted((ROOT / "bastion/audit/migrations/postgresql").glob("*.sql"))
    assert twins
    shipped = {path for p in patterns for path in (ROOT / "bastion/audit").glob(p)}
    assert set(twins) <= shipped, sorted(p.name for p in set(twins) - shipped)
    assert [name for _, name, _ in pg_migrations()] == [p.name for p in twins]


# -- the same schema at head -------------------------------------------------------------------


def test_the_schema_at_head_is_the_same_on_both_engines(
    sqlite_head: sqlite3.Connection, pg_head: psycopg.Connection[Any]
) -> None:
    lite, pg = sqlite_schema(sqlite_head), pg_schema(pg_head)
    assert len(lite.tables) >= 25 and "effective_grants" in lite.views
    assert schema_differences(lite, pg) == []


async def test_asyncpg_applies_every_twin_as_the_store_will(
    pg_db: PgDatabase, sqlite_head: sqlite3.Connection
) -> None:
    """The store's driver sends each twin as one script in one transaction (with the runner's
    own INSERT after it); the result is the same schema."""
    conn = await asyncpg_connect(pg_db)
    try:
        await conn.execute("CREATE SCHEMA via_asyncpg; SET search_path = via_asyncpg")
        await conn.execute(
            "CREATE TABLE schema_migrations (number bigint PRIMARY KEY,"
            ' name text COLLATE "C" NOT NULL, applied_at text COLLATE "C" NOT NULL)'
        )
        for number, name, sql in pg_migrations():
            async with conn.transaction():
                await conn.execute(
                    sql + f"\nINSERT INTO schema_migrations VALUES ({number}, '{name}', 'now');"
                )
        assert await conn.fetchval("SELECT max(number) FROM schema_migrations") == number
    finally:
        await conn.close()
    with psycopg_connect(pg_db, autocommit=True) as reader:
        reader.execute("SET search_path = via_asyncpg")
        assert schema_differences(sqlite_schema(sqlite_head), pg_schema(reader)) == []


def type_offenders(conn: psycopg.Connection[Any]) -> list[str]:
    """Every column of a table or view in the current schema that is not bigint, bytea or
    text COLLATE "C"."""
    rows = conn.execute(
        "SELECT table_name, column_name, data_type, collation_name"
        "  FROM information_schema.columns WHERE table_schema = current_schema()"
        " ORDER BY table_name, ordinal_position"
    ).fetchall()
    assert rows
    return [
        f"{table}.{column}: {kind} {collation or ''}".strip()
        for table, column, kind, collation in rows
        if not (kind in ("bigint", "bytea") or (kind == "text" and collation == "C"))
    ]


def test_every_integer_is_bigint_and_every_text_compares_bytes(
    pg_head: psycopg.Connection[Any],
) -> None:
    assert type_offenders(pg_head) == []


def test_the_test_database_would_show_a_text_column_without_collate_c(
    pg_head: psycopg.Connection[Any],
) -> None:
    """The database's own collation orders punctuation otherwise than bytes; the store's
    columns still order and compare kinds as SQLite does."""
    assert pg_head.execute("SELECT 'session_c' < 'session-b'").fetchone() == (True,)
    kinds = ["session_c", "session-b", "session.a", "session/", "sessionZ", "session"]
    with pg_head.transaction(force_rollback=True):
        for seq, kind in enumerate(kinds, 1):
            pg_head.execute(
                "INSERT INTO audit_events (seq, at, kind, severity, actor, detail, prev_hash,"
                " row_hash) VALUES (%s, '2026-12-07T08:00:00.000000Z', %s, 'info', 'test',"
                " '{}', '', '')",
                [seq, kind],
            )
        ordered = [r[0] for r in pg_head.execute("SELECT kind FROM audit_events ORDER BY kind")]
        ranged = pg_head.execute(
            "SELECT kind FROM audit_events WHERE kind >= 'session.' AND kind < %s ORDER BY kind",
            ["session.\U0010ffff"],
        ).fetchall()
    assert ordered == sorted(kinds)
    assert ranged == [("session.a",)]


# -- the append-only audit trail ---------------------------------------------------------------


EVENT_ROW = (
    "INSERT INTO audit_events (seq, at, kind, severity, actor, detail, prev_hash, row_hash)"
    " VALUES (1, '2026-12-07T08:00:00.000000Z', 'test', 'info', 'test', '{}', '', '')"
)


def refuses_each(conn: psycopg.Connection[Any], why: str, *statements: str) -> None:
    """Each statement is refused by a guard saying `why` (each in a savepoint of its own)."""
    for statement in statements:
        refused = pytest.raises(psycopg.errors.RestrictViolation, match=why)
        with refused, conn.transaction():
            conn.execute(statement)


def test_audit_events_refuse_update_delete_and_truncate(
    pg_head: psycopg.Connection[Any],
) -> None:
    with pg_head.transaction(force_rollback=True):
        pg_head.execute(EVENT_ROW)
        refuses_each(pg_head, APPEND_ONLY, "UPDATE audit_events SET actor = 'mallory'",
                     "DELETE FROM audit_events", "TRUNCATE audit_events")  # fmt: skip
        assert pg_head.execute("SELECT seq, actor FROM audit_events").fetchall() == [(1, "test")]


CHECKPOINT_ROW = (
    "INSERT INTO chain_checkpoints (seq, head, cut_at, made_at, archive,"
    " archive_sha256, node, sig) VALUES (5, 'h', 'c', 'm', 'a', 's', 'n', 'g')"
)
CHECKPOINTS_APPEND_ONLY = "chain checkpoints are append-only"


def test_chain_checkpoints_refuse_update_delete_and_truncate(
    pg_head: psycopg.Connection[Any], sqlite_head: sqlite3.Connection
) -> None:
    """A checkpoint, once written, stays: forging one to let a delete through leaves it there
    for `audit verify` to refuse, and a real one cannot be moved or taken away."""
    with pg_head.transaction(force_rollback=True):
        pg_head.execute(CHECKPOINT_ROW)
        refuses_each(pg_head, CHECKPOINTS_APPEND_ONLY, "UPDATE chain_checkpoints SET seq = 9",
                     "DELETE FROM chain_checkpoints", "TRUNCATE chain_checkpoints")  # fmt: skip
        assert pg_head.execute("SELECT seq FROM chain_checkpoints").fetchall() == [(5,)]
    sqlite_head.execute("SAVEPOINT lite")
    try:
        sqlite_head.execute(CHECKPOINT_ROW)
        for statement in ("UPDATE chain_checkpoints SET seq = 9", "DELETE FROM chain_checkpoints"):
            with pytest.raises(sqlite3.IntegrityError, match=CHECKPOINTS_APPEND_ONLY):
                sqlite_head.execute(statement)
        assert sqlite_head.execute("SELECT seq FROM chain_checkpoints").fetchall() == [(5,)]
    finally:
        sqlite_head.execute("ROLLBACK TO lite")
        sqlite_head.execute("RELEASE lite")


def test_a_temporary_table_does_not_stand_in_for_the_checkpoints(
    pg_head: psycopg.Connection[Any],
) -> None:
    """The delete trigger reads the store's own chain_checkpoints, whatever the deleting
    session's search_path: a temporary table of that name, naming every seq, lets nothing go."""
    with pg_head.transaction(force_rollback=True):
        pg_head.execute(EVENT_ROW)
        pg_head.execute("CREATE TEMPORARY TABLE chain_checkpoints (seq bigint)")
        pg_head.execute("INSERT INTO pg_temp.chain_checkpoints VALUES (1000)")
        pg_head.execute("SET LOCAL search_path = pg_temp, head")
        refused = pytest.raises(psycopg.errors.RestrictViolation, match=APPEND_ONLY)
        with refused, pg_head.transaction():
            pg_head.execute("DELETE FROM head.audit_events")
        pg_head.execute("SET LOCAL search_path = head")
        assert pg_head.execute("SELECT seq FROM audit_events").fetchall() == [(1,)]


def test_every_trigger_function_looks_only_in_the_store_schema(
    pg_head: psycopg.Connection[Any],
) -> None:
    """Each trigger function's search_path is pinned to its own schema with pg_temp last, so
    no session can put its own tables or types in front of the store's."""
    rows = pg_head.execute(
        "SELECT p.proname, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid ="
        " p.pronamespace WHERE n.nspname = 'head' AND p.prorettype = 'trigger'::regtype"
    ).fetchall()
    assert len(rows) >= 3
    assert {name: config for name, config in rows} == {
        name: ["search_path=head, pg_temp"] for name, _ in rows
    }


# -- rows written at an early version --------------------------------------------------------

BIG = 5 * 2**31  # beyond PostgreSQL's 32-bit integer
T1, T2, T3 = (
    "2026-11-01T00:00:00.000000Z",
    "2026-11-03T00:00:00.000000Z",
    "2026-11-04T00:00:00.000000Z",
)
EARLY_ROWS: dict[str, list[dict[str, Any]]] = {
    "users": [
        {"id": 1, "name": "alice", "role": "engineer", "password_hash": "$argon2id$x",
         "totp_sealed": b"\x00\xff\x10", "totp_last_step": BIG, "created_at": T1},
        {"id": 2, "name": "bob", "role": "admin", "totp_sealed": b"\x01",
         "failed_attempts": 2, "created_at": T1},
    ],
    "ssh_keys": [
        {"id": 1, "user_id": 1, "algorithm": "ssh-ed25519", "public_key": "AAAA",
         "fingerprint": "SHA256:x", "added_at": T1},
    ],
    "targets": [
        {"id": 1, "name": "db1", "kind": "postgres", "host": "10.0.0.1", "port": 5432,
         "login": "app", "database": "shop", "secret_sealed": b"\x00s", "created_at": T1},
        {"id": 3, "name": "db1", "kind": "ssh", "host": "10.0.0.2", "port": 22, "login": "root",
         "secret_sealed": b"k", "created_at": T1, "removed_at": T2},
    ],
    "grants": [
        {"id": 1, "user_id": 1, "target_id": 1, "mode": "read", "starts_at": T2, "ends_at": T3,
         "reason": "incident", "granted_by": "bob", "created_at": T2, "ticket_ref": "INC-1"},
        {"id": 5, "user_id": 2, "target_id": 3, "mode": "write", "starts_at": T2, "ends_at": T3,
         "reason": "change", "granted_by": "bob", "created_at": T2, "revoked_at": T3,
         "revoked_by": "bob"},
    ],
    "sessions": [
        {"id": "s-1", "user_id": 1, "target_id": 1, "grant_id": 1, "protocol": "postgres",
         "client_addr": "10.1.1.1", "started_at": T2, "recording_size": BIG,
         "end_reason": "client quit", "channel_count": 3},
        {"id": "s-2", "user_id": 2, "target_id": 3, "grant_id": 5, "protocol": "ssh",
         "client_addr": "10.1.1.2", "started_at": T2, "kill_requested_by": "bob"},
    ],
    "commands": [
        {"id": 1, "session_id": "s-2", "at": T2, "channel": 0, "command": "ls -la",
         "reconstructed": 1},
    ],
    "queries": [
        {"id": 1, "session_id": "s-1", "at": T2, "protocol_step": "simple", "sql": "SELECT 1",
         "rows": BIG, "duration_us": BIG, "query_key": "k1", "statement_kind": "select"},
    ],
    "file_transfers": [
        {"id": 1, "session_id": "s-2", "at": T2, "operation": "put", "path": "/tmp/a",
         "bytes": BIG, "status": "ok"},
    ],
    "tickets": [
        {"id": 7, "user_id": 1, "target_id": 1, "token_sha256": "ab" * 32, "created_at": T2,
         "expires_at": T3, "used_at": T2},
    ],
    "audit_events": [
        {"seq": 1, "at": T1, "kind": "user.created", "severity": "info", "actor": "bob",
         "subject": "alice", "detail": '{"a":1}', "prev_hash": "0" * 64, "row_hash": "1" * 64},
        {"seq": 2, "at": T2, "kind": "session.started", "severity": "notice", "actor": "alice",
         "session_id": "s-1", "detail": "{}", "prev_hash": "1" * 64, "row_hash": "2" * 64},
    ],
}  # fmt: skip


def insert(conn: Any, placeholder: str, table: str, row: dict[str, Any]) -> None:
    names = ", ".join(row)
    marks = ", ".join([placeholder] * len(row))
    conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))


def everything(conn: Any, tables: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table and view, ordered by its key."""
    return {
        name: [tuple(r) for r in conn.execute(f"SELECT * FROM {name} ORDER BY {', '.join(key)}")]
        for name, key in tables.items()
    }


def split(number: int) -> tuple[list[Migration], list[Migration], list[Migration], list[Migration]]:
    lite, pg = sqlite_migrations(), pg_migrations()
    return (
        [m for m in lite if m[0] <= number],
        [m for m in lite if m[0] > number],
        [m for m in pg if m[0] <= number],
        [m for m in pg if m[0] > number],
    )


Pair = tuple[sqlite3.Connection, psycopg.Connection[Any]]


@pytest.fixture(scope="module")
def early(pg_db: PgDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """The same rows written on both engines at 0005, then every later migration applied."""
    lite_early, lite_late, pg_early, pg_late = split(5)
    lite = open_sqlite(tmp_path_factory.mktemp("early") / "early.db")
    pg = pg_schema_conn(pg_db, "early")
    apply_sqlite(lite, lite_early)
    apply_pg(pg, pg_early)
    for table, rows in EARLY_ROWS.items():
        for row in rows:
            insert(lite, "?", table, row)
            insert(pg, "%s", table, row)
    apply_sqlite(lite, lite_late)
    apply_pg(pg, pg_late)
    yield lite, pg
    lite.close()
    pg.close()


def test_rows_written_at_0005_are_the_same_on_both_engines_at_head(early: Pair) -> None:
    """Through both rebuilds (grants in 0006, tickets in 0012) and every ALTER."""
    lite, pg = early
    keys = {name: list(t.primary_key) for name, t in sqlite_schema(lite).tables.items()}
    keys["effective_grants"] = ["id", '"user"']
    on_pg, on_lite = everything(pg, keys), everything(lite, keys)
    assert on_pg == on_lite
    assert len(on_pg.pop("effective_grants")) == 2  # each grant as its user holds it
    assert {t: len(r) for t, r in on_pg.items() if r} == {t: len(r) for t, r in EARLY_ROWS.items()}


def test_rows_written_at_0005_keep_their_values_and_take_the_new_defaults(early: Pair) -> None:
    _, pg = early
    assert pg.execute("SELECT id, user_id, group_id, target_id FROM grants").fetchall() == [
        (1, 1, None, 1),
        (5, 2, None, 3),
    ]
    assert pg.execute("SELECT break_glass, ticket_ref FROM grants ORDER BY id").fetchall() == [
        (0, "INC-1"),
        (0, None),
    ]
    assert pg.execute("SELECT id, reusable, uses, token_sha256 FROM tickets").fetchall() == [
        (7, 0, 0, "ab" * 32)
    ]
    assert pg.execute("SELECT alg FROM audit_events").fetchall() == [("sha256",)] * 2
    assert pg.execute("SELECT totp_last_step FROM users WHERE id = 1").fetchone() == (BIG,)
    assert pg.execute("SELECT grant_id FROM sessions ORDER BY id").fetchall() == [(1,), (5,)]
    assert pg.execute("""SELECT id FROM effective_grants WHERE "user" = 'alice'""").fetchall() == [
        (1,)
    ]


GRANT = (
    "INSERT INTO grants (user_id, target_id, mode, starts_at, ends_at, reason, granted_by,"
    " created_at) VALUES (2, 1, 'read', 'a', 'b', 'r', 'bob', 'c') RETURNING id"
)
TICKET = (
    "INSERT INTO tickets (user_id, target_id, token_sha256, created_at, expires_at)"
    " VALUES (2, 1, 'cd', 'a', 'b') RETURNING id"
)
ORPHAN = {"id": "s-9", "grant_id": 999, "protocol": "ssh", "client_addr": "x", "started_at": "x"}


def test_after_the_rebuilds_new_ids_follow_the_highest_and_keys_still_hold(early: Pair) -> None:
    lite, pg = early
    lite.execute("BEGIN")
    try:
        with pg.transaction(force_rollback=True):
            for statement, expected in ((GRANT, 6), (TICKET, 8)):
                assert lite.execute(statement).fetchone() == (expected,)
                assert pg.execute(statement).fetchone() == (expected,)
            with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
                insert(lite, "?", "sessions", ORPHAN)
            refused = pytest.raises(psycopg.errors.ForeignKeyViolation, match="grant_id_fkey")
            with refused, pg.transaction():
                insert(pg, "%s", "sessions", ORPHAN)
    finally:
        lite.execute("ROLLBACK")


# -- JSON validity, which PostgreSQL 15 does not have built in ---------------------------------

JSON_SAMPLES = [
    "{}", "[1,2]", '"s"', "1", "null", "true", "", " ", "{", '{"a":}', "tru", '{"a":1}x',
    " [1] ", "[1,]", '"\\u0000"', "01", "1e5", ".5", "NaN", '"a\tb"', '{"a":{"b":[null]}}',
    "[" * 500 + "]" * 500, '["\\ud800"]', '"\\ud83d\\ude00"', None,
]  # fmt: skip


def test_bastion_json_valid_agrees_with_sqlite_json_valid(
    sqlite_head: sqlite3.Connection, pg_head: psycopg.Connection[Any]
) -> None:
    for sample in JSON_SAMPLES:
        lite = sqlite_head.execute("SELECT json_valid(?)", [sample]).fetchone()[0]
        pg = pg_head.execute("SELECT bastion_json_valid(%s)", [sample]).fetchone()
        assert pg == (bool(lite),), sample


# -- the comparison sees a broken twin -------------------------------------------------------

TRUNCATE_TRIGGER = """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();"""
TRANSFER_KEY = 'REFERENCES sessions(id),\n    at         text COLLATE "C" NOT NULL,\n    operation'
COMMANDS_ID = "CREATE TABLE commands (\n    id         bigint"
BREAKAGES = [
    # (the text in 0001's twin, what replaces it, what the comparison must say)
    ("port          bigint NOT NULL", "port          integer NOT NULL", "'pg integer'"),
    ('name            text COLLATE "C" NOT NULL UNIQUE', "name            text NOT NULL UNIQUE",
     "'text COLLATE default'"),
    ("sessions_open ON sessions(state) WHERE ended_at IS NULL", "sessions_open ON sessions(state)",
     "'sessions_open'"),
    (" CHECK (severity IN ('info', 'notice', 'warning', 'high'))", "", "audit_events: checks"),
    (TRANSFER_KEY, TRANSFER_KEY.replace("(id),", "(id) ON DELETE CASCADE,"), "'CASCADE'"),
    ("totp_last_step  bigint NOT NULL DEFAULT -1", "totp_last_step  bigint NOT NULL DEFAULT 0",
     "default='-1'"),
    (COMMANDS_ID + " GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,", COMMANDS_ID + " PRIMARY KEY,",
     "commands: generated ids"),
    (TRUNCATE_TRIGGER, "", "triggers on audit_events"),
    ('    added_at    text COLLATE "C" NOT NULL\n);',
     '    added_at    text COLLATE "C" NOT NULL,\n    UNIQUE (user_id, algorithm)\n);',
     "ssh_keys: uniques"),
]  # fmt: skip


def test_the_comparison_names_each_way_a_twin_can_go_wrong(
    sqlite_head: sqlite3.Connection, pg_db: PgDatabase
) -> None:
    (first, *rest) = pg_migrations()
    number, name, sql = first
    for old, new, _ in BREAKAGES:
        assert sql.count(old) == 1, old
        sql = sql.replace(old, new)
    pg = pg_schema_conn(pg_db, "broken")
    try:
        apply_pg(pg, [(number, name, sql), *rest])
        found = "\n".join(schema_differences(sqlite_schema(sqlite_head), pg_schema(pg)))
        offenders = type_offenders(pg)
    finally:
        pg.close()
    for old, _, said in BREAKAGES:
        assert said in found, (old, found)
    assert offenders == ["effective_grants.user: text", "targets.port: integer", "users.name: text"]
