"""Driver and tool scenarios through the real door to a real PostgreSQL 15, masking on: asyncpg
(arrays, composites, enums, its type introspection with set_config('jit'), prepared
statements reused), psycopg 3 (client- and server-side binding, executemany, pipeline mode),
psql (its \\d family, \\x, \\timing, -c with several statements) and a JDBC-style start.

Each scenario is one test; in each, the sensitive columns still come out masked and no
value of the shop's secrets reaches the client (a wiretap keeps every byte it is sent)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bastion import pgwire as pw
from tests.harness import Bastion
from tests.masking.door import PASSWORD, plain, shop_bastion
from tests.masking.shop import SECRETS
from tests.masking.wiretap import Tap
from tests.pgproxy.test_door_admin import frames_until
from tests.realpg import PgDatabase, asyncpg_connect, psycopg_connect, run_psql

# Types asyncpg must introspect (an enum, a composite, arrays of them), a table with a
# sensitive column among them, and one whose every column is clean.
EXTRA_SQL = (
    "CREATE TYPE shipment_status AS ENUM ('packed', 'sent', 'delivered')",
    "CREATE TYPE parcel AS (weight_g int, label text)",
    "CREATE TABLE warehouses (id int PRIMARY KEY, city text NOT NULL, opened date NOT NULL)",
    "CREATE TABLE shipments (id int PRIMARY KEY, order_id int NOT NULL,"
    " status shipment_status NOT NULL, sizes int[] NOT NULL, labels text[], box parcel,"
    " contact_email text)",
    "CREATE VIEW shipment_board AS SELECT id, status, contact_email FROM shipments",
    "INSERT INTO warehouses VALUES (1, 'Utrecht', '2020-05-01'), (2, 'Leeds', '2021-03-15')",
    "INSERT INTO shipments VALUES"
    " (1, 1, 'sent', '{3,7}', '{fragile,gift}', ROW(500, 'small'), 'jane.doe@example.com'),"
    " (2, 2, 'packed', '{12}', NULL, ROW(2500, 'large'), 'john.roe@example.org')",
)
EMAILS = ("jane.doe@example.com", "john.roe@example.org")


@pytest.fixture
def door(tmp_path: Path, shop: PgDatabase) -> Iterator[Bastion]:
    """The shop with the extra types and tables, behind a masking bastion."""
    assert shop.cluster is not None
    with shop.cluster.connect(shop.database) as conn:
        conn.execute(f'SET ROLE "{shop.user}"')
        for statement in EXTRA_SQL:
            conn.execute(statement)
    b = shop_bastion(tmp_path / "bastion", shop).start()
    try:
        yield b
    finally:
        b.stop()


def _tapped(door: Bastion, tap: Tap) -> PgDatabase:
    return plain(door.via_bastion("alice", "shop", PASSWORD), tap.port)


def _masked(value: object) -> bool:
    return isinstance(value, str) and "*" in value and value not in EMAILS


def test_asyncpg_arrays_composites_enums_and_reused_statements(door: Bastion) -> None:
    async def scenario(port: int) -> dict[str, Any]:
        conn = await asyncpg_connect(plain(door.via_bastion("alice", "shop", PASSWORD), port),
                                     ssl=False)  # fmt: skip
        try:
            got: dict[str, Any] = {}
            got["any"] = await conn.fetch(
                "SELECT id, status, sizes, box, contact_email FROM shipments"
                " WHERE id = any($1::int[]) ORDER BY id", [1, 2, 9])  # fmt: skip
            got["enum"] = await conn.fetchval(
                "SELECT count(*) FROM shipments WHERE status = $1", "sent"
            )
            got["enums"] = await conn.fetch(
                "SELECT id FROM shipments WHERE status = any($1::shipment_status[])"
                " ORDER BY id", ["sent", "packed"])  # fmt: skip
            got["composite"] = await conn.fetchval("SELECT ($1::parcel).label", (7, "tiny"))
            got["labels"] = await conn.fetchval("SELECT labels FROM shipments WHERE id = 1")
            stmt = await conn.prepare("SELECT id, contact_email, box FROM shipments WHERE id = $1")
            got["reused"] = [await stmt.fetchrow(1), await stmt.fetchrow(2), await stmt.fetchrow(1)]
            got["jit"] = await conn.fetchval("SELECT current_setting('jit')")
            return got
        finally:
            await conn.close()

    with Tap(door.pg_port) as tap:
        got = asyncio.run(scenario(tap.port))
    first, second = got["any"]
    assert (first["id"], first["status"], first["sizes"]) == (1, "sent", [3, 7])
    assert tuple(first["box"]) == (500, "small") and second["sizes"] == [12]
    assert all(_masked(row["contact_email"]) for row in got["any"])
    assert got["enum"] == 1 and [r["id"] for r in got["enums"]] == [1, 2]
    assert got["composite"] == "tiny" and got["labels"] == ["fragile", "gift"]
    assert [r["id"] for r in got["reused"]] == [1, 2, 1]
    assert all(_masked(r["contact_email"]) for r in got["reused"])
    assert got["jit"] == "on"  # introspection turned it off, then back on with its $1
    assert tap.leaked(SECRETS) == []


def test_psycopg_client_and_server_binding_executemany_and_pipeline(door: Bastion) -> None:
    sql = "SELECT id, status, contact_email FROM shipments WHERE id = %s"
    with (
        Tap(door.pg_port) as tap,
        psycopg_connect(_tapped(door, tap), sslmode="disable", autocommit=True) as conn,
    ):
        server = conn.execute(sql, (1,)).fetchall()
        client = psycopg.ClientCursor(conn).execute(sql, (2,)).fetchall()
        setting = "SELECT set_config('application_name', %s, false)"
        named = [
            conn.execute(setting, ("report",)).fetchone(),
            psycopg.ClientCursor(conn).execute(setting, ("adhoc",)).fetchone(),
        ]
        whole = conn.execute("SELECT row_to_json(w) FROM warehouses w WHERE id = %s",
                                 (2,)).fetchone()  # fmt: skip
        cursor = conn.cursor()
        cursor.executemany(sql, [(1,), (2,)], returning=True)
        many = [cursor.fetchone()]
        while cursor.nextset():
            many.append(cursor.fetchone())
        with conn.pipeline():
            piped = [conn.execute(sql, (n,)) for n in (1, 2)]
            board = conn.execute("SELECT count(*) FROM shipment_board")
        piped_rows = [c.fetchone() for c in piped]
        counted = board.fetchone()
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '5s'")
            assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)
    for rows in (server, client, many, piped_rows):
        assert all(row is not None and _masked(row[2]) for row in rows), rows
    assert server[0][:2] == (1, "sent") and client[0][:2] == (2, "packed")
    assert [r[0] for r in many if r] == [1, 2] and counted == (2,)
    assert named == [("report",), ("adhoc",)]
    assert whole == ({"id": 2, "city": "Leeds", "opened": "2021-03-15"},)
    assert tap.leaked(SECRETS) == []


PSQL_META = ("\\d", "\\d+ shipments", "\\dt", "\\dv", "\\df", "\\dn", "\\l", "\\du")


def test_psql_describes_expanded_timing_and_several_statements(door: Bastion) -> None:
    env = {"PGSSLMODE": "disable"}
    with Tap(door.pg_port) as tap:
        described = {meta: run_psql(_tapped(door, tap), "-c", meta, env=env)
                     for meta in PSQL_META}  # fmt: skip
        script = "\\x\n\\timing\nSELECT id, city FROM warehouses ORDER BY id;\n" \
                 "SELECT id, contact_email FROM shipments ORDER BY id;\n"  # fmt: skip
        expanded = run_psql(_tapped(door, tap), "-f", "-", input=script, env=env)
        several = run_psql(_tapped(door, tap), "-At", "-c", "begin; select count(*) from shipments;"
                           " select id, contact_email from shipments order by id; commit",
                           env=env)  # fmt: skip
    failed = {meta: done.stderr for meta, done in described.items() if done.returncode}
    assert failed == {}
    table = described["\\d+ shipments"].stdout
    assert "contact_email" in table and "shipment_status" in table
    assert "shipments" in described["\\dt"].stdout and "shipment_board" in described["\\dv"].stdout
    assert "top_customer" in described["\\df"].stdout and "public" in described["\\dn"].stdout
    assert expanded.returncode == 0, expanded.stderr
    assert "city | Utrecht" in expanded.stdout and "Time:" in expanded.stdout
    assert "contact_email | j*******@example.com" in expanded.stdout
    assert several.returncode == 0, several.stderr
    # psql 15 prints each statement's own result, as PostgreSQL sent them
    assert several.stdout.splitlines() == [
        "BEGIN",
        "2",
        "1|j*******@example.com",
        "2|j*******@example.org",
        "COMMIT",
    ]
    assert tap.leaked(SECRETS) == []


# What the PostgreSQL JDBC driver (pgjdbc 42.7) sends when it connects, from its
# ConnectionFactoryImpl (getParametersForStartup, runInitialQueries, isPrimary) and
# PgConnection: the start-up parameters; then, in the extended protocol, the settings it sends
# as SQL (to servers before 12, or when application_name was not sent at start-up; wrapped in
# BEGIN/COMMIT with groupStartupParameters); the read-only probe of targetServerType; then what
# getSchema(), getTransactionIsolation() and setTransactionIsolation() send.
JDBC_STARTUP = {"user": "alice", "database": "shop", "client_encoding": "UTF8",
                "DateStyle": "ISO", "TimeZone": "Europe/Amsterdam"}  # fmt: skip
JDBC_STATEMENTS = (
    "BEGIN",
    "SET extra_float_digits = 3",
    "SET application_name = 'PostgreSQL JDBC Driver'",
    "COMMIT",
    "show transaction_read_only",
    "select current_schema()",
    "show transaction isolation level",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SELECT id, contact_email FROM shipments WHERE id = 1",
)


def _extended(sql: str) -> bytes:
    """One statement as pgjdbc sends it: Parse, Bind, Describe portal, Execute, Sync."""
    return (pw.parse("", sql, ()) + pw.bind("", "", (), (), ()) + pw.describe("P", "")
            + pw.execute("") + pw.sync())  # fmt: skip


def test_a_jdbc_style_session_start(door: Bastion) -> None:
    via = door.via_bastion("alice", "shop", PASSWORD)
    reader = pw.FrameReader()
    answers: list[list[pw.Frame]] = []
    with Tap(door.pg_port) as tap, socket.create_connection(("127.0.0.1", tap.port), 15) as sock:
        sock.sendall(pw.startup_message(JDBC_STARTUP))
        while (frame := reader.next_frame()) is None:
            reader.feed(sock.recv(65536))
        assert frame.type == b"R"
        sock.sendall(pw.password_message(via.password.encode()))
        greeting = frames_until(sock, reader, 1, closing_ok=False)
        assert not any(f.type == b"E" for f in greeting)
        for sql in JDBC_STATEMENTS:
            sock.sendall(_extended(sql))
            answers.append(frames_until(sock, reader, 1, closing_ok=False))
        sock.sendall(pw.terminate())
    errors = {sql: [pw.error_fields(f.raw[5:]) for f in frames if f.type == b"E"]
              for sql, frames in zip(JDBC_STATEMENTS, answers, strict=True)}  # fmt: skip
    assert all(not found for found in errors.values()), errors
    rows = {sql: [pw.data_row_values(f.raw[5:]) for f in frames if f.type == b"D"]
            for sql, frames in zip(JDBC_STATEMENTS, answers, strict=True)}  # fmt: skip
    assert rows["select current_schema()"] == [(b"public",)]
    assert rows["show transaction isolation level"] == [(b"read committed",)]
    assert rows["show transaction_read_only"] in ([(b"on",)], [(b"off",)])
    [(key, email)] = rows[JDBC_STATEMENTS[-1]]
    assert key == b"1" and email == b"j*******@example.com"
    assert tap.leaked(SECRETS) == []


SEVERAL = (
    "begin; select id, city from warehouses order by id; select count(*) from shipments;"
    " select id, contact_email from shipments order by id; select 1/0;"
    " select id from warehouses; commit"
)


def test_several_statements_answer_as_postgresql_does_each_masked_by_its_own_plan(
    door: Bastion, shop: PgDatabase
) -> None:
    direct = run_psql(shop, "-At", "-c", SEVERAL, env={"PGSSLMODE": "disable"})
    env = {"PGSSLMODE": "disable"}
    with Tap(door.pg_port) as tap:
        through = run_psql(_tapped(door, tap), "-At", "-c", SEVERAL, env=env)
        mixed = "select 1; select lower(contact_email) from shipments"
        refused = run_psql(_tapped(door, tap), "-At", "-c", mixed, env=env)
    expected = direct.stdout
    for email, shown in zip(EMAILS, ("j*******@example.com", "j*******@example.org"), strict=True):
        assert email in expected  # the shop holds the real addresses
        expected = expected.replace(email, shown)
    # Each result as PostgreSQL sent it, the third masked, and nothing after the error.
    assert through.stdout == expected
    assert expected.splitlines()[-1] == "2|j*******@example.org"
    assert through.returncode == direct.returncode == 1 and "22012" in through.stderr
    # A string holding a refused statement runs none of it (its first statement included).
    assert refused.stdout == "" and "refused by the bastion" in refused.stderr
    assert tap.leaked(SECRETS) == []
