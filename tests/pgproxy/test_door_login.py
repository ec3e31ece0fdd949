"""The PostgreSQL door's login and access check, driven by real psql, asyncpg and psycopg."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD
from tests.realpg import PgDatabase, psycopg_connect, run_psql
from tests.ssh.test_door_admin import wait_until

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL


def test_psql_logs_in_with_password_and_code_over_verified_tls(
    bastion: Bastion, pg: PgDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    target = {**via.params(), "host": "localhost", "sslmode": "verify-full",
              "sslrootcert": str(bastion.tls.ca_cert)}  # fmt: skip
    done = run_psql(target, "-At", "-c", "SELECT count(*) FROM customers WHERE name <> 'zzz'")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) > 0
    [session] = bastion.store.sessions()
    queries = bastion.store.queries(session_id=session.id)
    assert any("count(*)" in q.sql for q in queries)
    assert all("zzz" not in q.sql for q in queries)  # literals are not kept
    assert bastion.store.verify_chain().ok
    wait_until(lambda: not bastion.store.sessions(open_only=True))
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_application_name_names_the_engineer(bastion: Bastion, pg: PgDatabase) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via) as conn:
        name = conn.execute("SELECT current_setting('application_name')").fetchone()
    [session] = bastion.store.sessions()
    assert name == (f"bastion:alice:{session.id}",)


def test_wrong_code_and_replayed_code_are_refused(bastion: Bastion) -> None:
    wrong = bastion.via_bastion("alice", "orders-prod", PASSWORD).replace(
        password=PASSWORD + "000000")  # fmt: skip
    done = run_psql(wrong, "-c", "SELECT 1")
    assert done.returncode != 0 and "wrong verification code" in done.stderr
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    assert run_psql(via, "-c", "SELECT 1").returncode == 0
    again = run_psql(via, "-c", "SELECT 1")
    assert again.returncode != 0 and "used already" in again.stderr


def test_wrong_password_is_refused_without_spending_the_code(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    bad = via.replace(password="wrong password!" + via.password[-6:])
    done = run_psql(bad, "-c", "SELECT 1")
    assert done.returncode != 0 and "password authentication failed" in done.stderr
    assert run_psql(via, "-c", "SELECT 1").returncode == 0


def test_no_grant_is_refused_with_28000(bastion: Bastion) -> None:
    bastion.add_user("bob", password=PASSWORD)
    via = bastion.via_bastion("bob", "orders-prod", PASSWORD)
    with pytest.raises(psycopg.OperationalError, match="no access to orders-prod"):
        psycopg_connect(via)
    assert bastion.events("access.denied")


def test_tickets_are_single_use_and_expire(bastion: Bastion) -> None:
    token = "bt_test-ticket-one"
    bastion.core.identity.add_ticket("alice", "orders-prod", token,
                             bastion.clock.now() + timedelta(minutes=10), "test")  # fmt: skip
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD).replace(password=token)
    assert run_psql(via, "-c", "SELECT 1").returncode == 0
    again = run_psql(via, "-c", "SELECT 1")
    assert again.returncode != 0 and "ticket refused" in again.stderr  # the reason: audited
    assert "used already" in json.loads(bastion.events("auth.ticket_refused")[-1].detail)["why"]
    late = "bt_test-ticket-two"
    bastion.core.identity.add_ticket("alice", "orders-prod", late,
                             bastion.clock.now() + timedelta(minutes=10), "test")  # fmt: skip
    bastion.clock.advance(timedelta(minutes=11))
    expired = run_psql(via.replace(password=late), "-c", "SELECT 1")
    assert expired.returncode != 0 and "ticket refused" in expired.stderr
    assert "expired" in json.loads(bastion.events("auth.ticket_refused")[-1].detail)["why"]


def test_asyncpg_extended_protocol_and_binary_results(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)

    async def run() -> list[Any]:
        conn = await asyncpg.connect(via.url, ssl=False)
        try:
            return list(await conn.fetch(
                "SELECT id, created_at FROM customers WHERE id <= $1 ORDER BY id", 3))  # fmt: skip
        finally:
            await conn.close()

    rows = asyncio.run(run())
    assert [r["id"] for r in rows] == [1, 2, 3]
    executes = [q for q in bastion.store.queries() if q.step == "execute"]
    assert any("$1" in q.sql for q in executes)
    assert all(q.parameters is None or "3" not in q.parameters.replace("$", "") for q in executes)


def test_psycopg_pipeline_mode(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via) as conn, conn.pipeline():
        cursors = [conn.execute("SELECT %s::int + 1", (n,)) for n in range(5)]
    assert [c.fetchone() for c in cursors] == [(n + 1,) for n in range(5)]
