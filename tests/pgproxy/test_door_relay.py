"""The PostgreSQL door's relay: read-only grants, cancel, disconnects, malformed input."""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import time

import psycopg
import pytest

from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, wait_for_tags
from tests.realpg import PgDatabase, psql_argv, psql_env, psycopg_connect, run_psql


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("INSERT INTO orders (customer_id, total) VALUES (1, 2)", "INSERT"),
        ("CREATE TABLE t (x int)", "CREATE"),
        ("SET default_transaction_read_only = off", "default_transaction_read_only"),
        ("SELECT 1; DELETE FROM orders", "DELETE"),
    ],
)
def test_read_grants_refuse_writes_with_25006(bastion: Bastion, statement: str,
                                              reason: str) -> None:  # fmt: skip
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as caught:
            conn.execute(statement)
        assert reason.lower() in str(caught.value).lower()
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
    refused = [q for q in bastion.store.queries() if q.refused]
    assert refused and reason.lower() in (refused[0].refused or "").lower()


def test_a_write_grant_allows_writes(bastion: Bastion, pg: PgDatabase) -> None:
    bastion.add_user("wendy", password=PASSWORD)
    bastion.grant("wendy", "orders-prod", mode="write")
    via = bastion.via_bastion("wendy", "orders-prod", PASSWORD)
    done = run_psql(via, "-c", "INSERT INTO orders (customer_id, total) VALUES (1, 9.5)")
    assert done.returncode == 0, done.stderr
    wait_for_tags(bastion, 1)
    [row] = [q for q in bastion.store.queries() if "INSERT" in q.sql]
    assert row.tag == "INSERT 0 1" and row.rows == 1


def test_cancel_reaches_the_running_statement(bastion: Bastion) -> None:
    """psql sends a CancelRequest on Ctrl-C (SIGINT); the bastion maps it to the backend.

    The client is a separate process: libpq's blocking cancel call would hold this
    process's interpreter lock while the bastion, served from a thread here, must answer it.
    """
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    proc = subprocess.Popen(psql_argv(via, "-c", "SELECT pg_sleep(30)"), env=psql_env(via),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not bastion.store.queries() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "canceling statement due to user request" in err
    assert time.monotonic() - started < 20
    assert bastion.events("query.cancelled")


def test_a_forged_cancel_key_cancels_nothing(bastion: Bastion) -> None:
    with socket.create_connection(("127.0.0.1", bastion.pg_port), timeout=10) as sock:
        sock.sendall(struct.pack("!iiii", 16, 80877102, 1234, 5678))
        assert sock.recv(100) == b""
    bastion.clock.advance(61)  # cancels are summed up per address, a minute at a time
    deadline = time.monotonic() + 10
    while not bastion.events("query.cancel_request") and time.monotonic() < deadline:
        time.sleep(0.05)
    [summary] = bastion.events("query.cancel_request")
    assert json.loads(summary.detail)["why"] == {"no such backend key": 1}


def test_client_killed_mid_query_cancels_upstream(bastion: Bastion, pg: PgDatabase) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    conn = psycopg_connect(via)
    conn.pgconn.send_query(b"SELECT pg_sleep(30)")
    time.sleep(0.5)
    conn.pgconn.finish()  # the client goes away without a word
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with psycopg_connect(pg) as admin:
            running = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
                " AND state = 'active'").fetchone()  # fmt: skip
        if running == (0,):
            break
        time.sleep(0.1)
    assert running == (0,)


@pytest.mark.parametrize(
    "packet",
    [
        struct.pack("!i", 0),
        struct.pack("!i", 3),
        struct.pack("!i", 2**31 - 1),
        struct.pack("!ii", 40, 196608) + b"user\x00al",
    ],
    ids=["length-0", "length-3", "length-2^31-1", "truncated"],
)
def test_malformed_startup_gets_an_error_not_a_crash(bastion: Bastion, packet: bytes) -> None:
    with socket.create_connection(("127.0.0.1", bastion.pg_port), timeout=10) as sock:
        sock.sendall(packet)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    if reply:
        assert reply[:1] == b"E"
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    assert run_psql(via, "-c", "SELECT 1").returncode == 0  # the door is still up
