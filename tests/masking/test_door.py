"""Masking in the PostgreSQL door, through psql (text), psycopg (extended) and asyncpg (binary):
values masked in their column's style and type, refusals with 42501, errors scrubbed, the
query log naming what was masked, and start-up parameters that would dodge the checks."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from bastion import pgwire as pw
from bastion.audit.qlogbind import KIND as QUERIES_COMMITTED
from tests.harness import Bastion
from tests.masking.door import PASSWORD, plain, shop_bastion
from tests.masking.shop import SECRETS
from tests.masking.wiretap import Tap
from tests.pgproxy.conftest import wait_for_outcomes
from tests.realpg import PgDatabase, asyncpg_connect, psycopg_connect, run_psql

CUSTOMERS = "SELECT id, name, email, phone, ssn, date_of_birth, street, client_ip FROM customers"


def test_psql_sees_each_column_in_its_style(bastion: Bastion) -> None:
    with Tap(bastion.pg_port) as tap:
        via = plain(bastion.via_bastion("alice", "shop", PASSWORD), tap.port)
        done = run_psql(via, "-At", "-F", "|", "-c", CUSTOMERS + " ORDER BY id",
                        env={"PGSSLMODE": "disable"})  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert tap.leaked(SECRETS) == []
        assert b"Jane Doe" in tap.received  # the tap sees plain text: the check is real
    jane, john = (line.split("|") for line in done.stdout.splitlines())
    assert jane[:3] == ["4711", "Jane Doe", "j*******@example.com"]  # the domain stays
    assert jane[3].endswith("4567") and "555-123" not in jane[3]  # the last 4 of a phone
    assert jane[4] == "***-**-6789"  # ssn: the last 4
    assert jane[5:] == ["", "****", ""]  # a date and an inet become NULL; a street full
    assert john[2].startswith("j*******@") and john[4] == "***-**-4321"


def test_psycopg_extended_protocol_and_a_prepared_statement(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        rows = conn.execute("SELECT id, email, date_of_birth FROM customers WHERE id = %s",
                            (4711,), prepare=True).fetchall()  # fmt: skip
        again = conn.execute("SELECT id, email, date_of_birth FROM customers WHERE id = %s",
                             (4712,), prepare=True).fetchall()  # fmt: skip
    assert rows == [(4711, "j*******@example.com", None)]
    assert again[0][0] == 4712 and again[0][1].startswith("j*******@") and again[0][2] is None


def test_asyncpg_binary_values_stay_valid_for_their_types(bastion: Bastion) -> None:
    async def fetch() -> list[Any]:
        via = bastion.via_bastion("alice", "shop", PASSWORD)
        conn = await asyncpg_connect(via)
        try:
            stmt = await conn.prepare(CUSTOMERS + " ORDER BY id")
            rows = list(await stmt.fetch())
            # Executed again without a Describe: asyncpg reuses what it cached.
            rows += await stmt.fetch()
            total = await conn.fetchval("SELECT sum(amount_cents) FROM payments")
            return [*rows, total]
        finally:
            await conn.close()

    *rows, total = asyncio.run(fetch())
    assert total == 6499
    for row in rows:
        assert row["date_of_birth"] is None and row["client_ip"] is None
        assert row["ssn"].startswith("***-**-") and "@" in row["email"]
        assert not any(s in str(tuple(row)) for s in SECRETS)


def test_refusals_answer_42501_and_the_session_goes_on(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            conn.execute("SELECT id FROM customers WHERE ssn LIKE '1%'")
        text = str(caught.value)
        assert "public.customers.ssn is sensitive" in text and "unmask" in text
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"(?i)COPY"):
            conn.execute("COPY customers FROM STDIN")
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (2,)
    wait_for_outcomes(bastion, 3)
    refused = [q for q in bastion.store.queries() if q.refused]
    assert len(refused) == 2 and all(q.sqlstate == "42501" for q in refused)
    assert "sensitive" in (refused[-1].refused or "")


def test_server_errors_are_scrubbed_and_kept_in_the_audit_trail(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    with Tap(bastion.pg_port) as tap:
        conn = psycopg_connect(plain(via, tap.port), sslmode="disable", autocommit=True)
        with conn, pytest.raises(psycopg.errors.DivisionByZero) as caught:
            conn.execute("SELECT id / 0 FROM customers")
        assert "masked mode" in str(caught.value) and "division" not in str(caught.value)
        assert b"division by zero" not in tap.received
    wait_for_outcomes(bastion, 1)
    [failed] = [q for q in bastion.store.queries() if q.sqlstate]
    assert failed.sqlstate == "22012"
    # The row has no column for the server's own text: its commit's chained event keeps it.
    messages: dict[str, str] = {}
    for event in bastion.events(QUERIES_COMMITTED):
        detail = json.loads(event.detail) if isinstance(event.detail, str) else event.detail
        messages.update(detail.get("messages") or {})
    assert list(messages.values()) == ["division by zero"]


def test_the_query_log_names_masked_columns_and_no_values(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        conn.execute("SELECT id, email, ssn FROM customers").fetchall()
    wait_for_outcomes(bastion, 1)
    [row] = [q for q in bastion.store.queries() if "customers" in q.sql]
    assert json.loads(row.masking or "{}") == {"masked": ["email", "ssn"]}
    trail = json.dumps([e.detail for e in bastion.events()])
    assert not any(s in trail for s in SECRETS)
    config = str(bastion.home / "bastion.toml")

    def listed(*args: str) -> str:
        argv = [sys.executable, "-m", "bastion", "--config", config, "queries", "list", "--grep",
                "customers", *args]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout

    [item] = json.loads(listed("--json"))  # the JSON names the columns as a list, as the API
    assert item["masked"] == ["email", "ssn"]
    assert "email,ssn" in listed()


def test_free_text_is_checked_by_the_detectors(tmp_path: Any, shop: Any) -> None:
    # A target that does not call order notes sensitive: the detectors are the last net.
    b = shop_bastion(tmp_path / "b", shop, policy="").start()
    try:
        via = b.via_bastion("alice", "shop", PASSWORD)
        with psycopg_connect(via, autocommit=True) as conn:
            notes = conn.execute("SELECT id, coalesce(note, '') FROM orders ORDER BY id")
            # The address in a note is masked where it stands; the harmless note is not.
            assert [r[1] for r in notes.fetchall()] == [
                "gift wrap please", "call j*******@example.com before delivery"]  # fmt: skip
    finally:
        b.stop()


@pytest.mark.parametrize("param", ["search_path", "standard_conforming_strings"])
def test_startup_parameters_that_would_dodge_the_checks_are_refused(
    bastion: Bastion, param: str
) -> None:
    """libpq sends only `options` for these (refused at the door for everyone); a hand-made
    client can put any setting in its start-up packet."""
    with socket.create_connection(("127.0.0.1", bastion.pg_port), timeout=10) as sock:
        # "on": a value the door itself lets through (it refuses "off" for every session)
        sock.sendall(pw.startup_message({"user": "alice", "database": "shop", param: "on"}))
        assert sock.recv(1)[:1] == b"R"  # asked for the password
        sock.recv(100)
        secret = bastion.pg_secret("alice", PASSWORD).encode()
        sock.sendall(pw.password_message(secret))
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply[:1] == b"E" and b"42501" in reply
    assert f"the startup parameter '{param}' is not allowed in masked mode".encode() in reply
    assert not [s for s in bastion.store.sessions() if s.target == "shop"]


def test_notifications_never_reach_a_masked_client(bastion: Bastion, shop: Any) -> None:
    async def listen() -> list[Any]:
        got: list[Any] = []
        conn = await asyncpg_connect(bastion.via_bastion("alice", "shop", PASSWORD))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.add_listener("c", lambda *a: got.append(a))
            return got
        finally:
            await conn.close()

    assert asyncio.run(listen()) == []


@pytest.mark.parametrize("meta", [r"\d", r"\dt", r"\d customers", r"\d+ orders", r"\dv", r"\dn",
                                  r"\df", r"\du", r"\l", r"\di"])  # fmt: skip
def test_psql_describes_the_database_in_masked_mode(bastion: Bastion, meta: str) -> None:
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    done = run_psql(via, "-c", meta)
    assert done.returncode == 0, done.stderr
    assert not any(s in done.stdout for s in SECRETS)
    if meta == r"\d customers":
        assert "email" in done.stdout and "customers_pkey" in done.stdout


def test_a_table_made_after_the_snapshot_is_seen_by_the_next_session(
    bastion: Bastion, shop: PgDatabase
) -> None:
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (2,)
        with psycopg.connect(shop.dsn, autocommit=True) as owner:
            owner.execute("CREATE TABLE late_arrival (id int, email text)")
            owner.execute("INSERT INTO late_arrival VALUES (1, 'late@example.com')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="connect again"):
            conn.execute("SELECT id, email FROM late_arrival")
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD), autocommit=True) as conn:
        assert conn.execute("SELECT id, email FROM late_arrival").fetchall() == [
            (1, "l***@example.com")]  # fmt: skip


def test_a_masked_session_with_a_write_grant_refuses_a_call_in_attribute_notation(
    tmp_path: Path, shop: PgDatabase
) -> None:
    """`(t).lift` reads as a whole row (no sensitive column) with a field: the masking's
    lineage passes it, but PostgreSQL calls the database's lift(t)."""
    with psycopg.connect(shop.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE things (id int); INSERT INTO things VALUES (1)")
        conn.execute(
            "CREATE FUNCTION lift(things) RETURNS int LANGUAGE sql AS"
            " $$SELECT 1 FROM (SELECT set_config('work_mem', '7MB', false)) s$$"
        )
    b = shop_bastion(tmp_path / "bastion", shop)
    b.grant("alice", "shop", mode="write")
    b.start()
    try:
        via = b.via_bastion("alice", "shop", PASSWORD)
        with psycopg_connect(via, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="lift"):
                conn.execute("SELECT (t).lift FROM things t")
            assert conn.execute("SHOW work_mem").fetchone() != ("7MB",)
            assert conn.execute("SELECT t.id FROM things t").fetchone() == (1,)
    finally:
        b.stop()
