"""A read grant's allow-list at the door: SQL hidden in a function's text argument is refused
and changes nothing, while what psql and drivers send to read still runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import psycopg
import pytest
from psycopg.types.enum import EnumInfo

from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD
from tests.realpg import PgDatabase, psycopg_connect, run_psql

# What the red team ran: each runs SQL text the guard never saw as a statement of its own.
ATTACKS = [
    "SELECT ts_rewrite('a'::tsquery, 'SELECT ''a''::tsquery, ''b''::tsquery FROM (SELECT"
    " set_config(''default_transaction_read_only'', ''off'', false)) s')",
    "SELECT ts_rewrite($$a$$::tsquery, $$SELECT 'a'::tsquery, 'b'::tsquery FROM (SELECT"
    " setval('customers_id_seq', 4242), lo_create(4242), pg_notify('ch', 'x')) s$$)",
    "SELECT * FROM ts_stat('SELECT to_tsvector(set_config(''default_transaction_read_only'',"
    " ''off'', false))')",
    "SELECT query_to_xml('SELECT set_config(''default_transaction_read_only'', ''off'', false)',"
    " true, true, '')",
]


def _state(db: PgDatabase) -> tuple[int, int]:
    """(the customers sequence's last value, the number of large objects), read directly."""
    with psycopg.connect(db.dsn) as conn:
        seq = conn.execute("SELECT last_value FROM customers_id_seq").fetchone()
        objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
    assert seq is not None and objects is not None
    return int(seq[0]), int(objects[0])


def test_sql_inside_a_function_argument_is_refused_and_changes_nothing(
    bastion: Bastion, pg: PgDatabase
) -> None:
    before = _state(pg)
    heard: list[psycopg.Notify] = []
    listener = psycopg.connect(pg.dsn, autocommit=True)
    listener.add_notify_handler(heard.append)
    listener.execute("LISTEN ch")
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with listener, psycopg_connect(via, autocommit=True) as conn:
        for attack in ATTACKS:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as caught:
                conn.execute(attack)
            message = str(caught.value)
            assert "\n" not in message.strip()
            assert "allow-list" in message and "--mode write" in message
            assert any(f"{name}()" in message for name in ("ts_rewrite", "ts_stat", "query_to_xml"))
        # the same session: still read-only upstream, and a write still fails
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("SELECT setval('customers_id_seq', 4242)")
        listener.execute("SELECT 1")  # takes in any notification sent meanwhile
    assert heard == []
    assert _state(pg) == before
    refused = [q for q in bastion.store.queries() if q.refused]
    assert len(refused) == len(ATTACKS) + 1


def test_psql_describe_commands_run_under_a_read_grant(bastion: Bastion, pg: PgDatabase) -> None:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100")
        conn.execute("CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql"
                     " AS 'SELECT count(*) FROM orders'")  # fmt: skip
    commands = [r"\d", r"\d+ orders", r"\dt+", r"\dv", r"\di", r"\ds", r"\df", r"\dn+", r"\du",
                r"\l", r"\dT", r"\dx", r"\dp", r"\sf order_count", r"\d+ big_orders"]  # fmt: skip
    for command in commands:
        via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
        done = run_psql(via, "-c", command)
        assert done.returncode == 0, (command, done.stderr)
    assert not [q.refused for q in bastion.store.queries() if q.refused]


def test_drivers_read_the_catalog_types_under_a_read_grant(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """asyncpg turns jit off with set_config while it reads a type's definition; psycopg
    reads an enum's labels; ordinary functions, aggregates and operators just run."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE TYPE pair AS (x int, y text)")

    async def read() -> list[asyncpg.Record]:
        via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
        conn = await asyncpg.connect(via.url, ssl=False)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(
                "SELECT $1::mood AS m, $2::pair AS p, now() > $3 AS later,"
                " count(*) OVER () AS n, lower(c.name) || '!' AS shout"
                " FROM customers c, generate_series(1, 2) g ORDER BY c.id LIMIT 2",
                "sad",
                (1, "y"),
                datetime(2000, 1, 1, tzinfo=UTC),
            )
            return rows
        finally:
            await conn.close()

    rows = asyncio.run(read())
    assert [r["m"] for r in rows] == ["sad", "sad"] and rows[0]["later"] is True
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        info = EnumInfo.fetch(conn, "mood")
        assert info is not None and info.labels == ["ok", "sad"]
    assert not [q.refused for q in bastion.store.queries() if q.refused]


def test_a_start_up_search_path_cannot_put_pg_catalog_last(bastion: Bastion) -> None:
    """Else `lower(x)` could find a function of the database's own before the built-in."""

    async def connect(search_path: str) -> str:
        via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
        settings = {"search_path": search_path}
        conn = await asyncpg.connect(via.url, ssl=False, server_settings=settings)
        try:
            return str(await conn.fetchval("SHOW search_path"))
        finally:
            await conn.close()

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="pg_catalog after another"):
        asyncio.run(connect("public, pg_catalog"))
    assert asyncio.run(connect("pg_catalog, public")) == "pg_catalog, public"
