"""Refusals inside pipelines and transactions land where the server's own error would, and the
query log keeps every statement's outcome under both durability settings."""

from __future__ import annotations

import json
import signal
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bastion import pgwire as pw
from bastion.audit import Store
from bastion.audit.qlogbind import KIND
from bastion.clock import FakeClock
from bastion.pgproxy import tracker
from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, alice_on, wait_for_outcomes
from tests.pgproxy.test_door_admin import logged_in
from tests.realpg import PgDatabase, psycopg_connect, run_psql
from tests.ssh.test_door_admin import wait_until

INSERT = "INSERT INTO orders (customer_id, total) VALUES (1, 2)"


def test_a_refusal_mid_pipeline_answers_in_order_and_skips_to_sync(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as caught, conn.pipeline():
            first = conn.execute("SELECT %s::int", (1,))
            conn.execute(INSERT)
            conn.execute("SELECT %s::int", (3,))
        assert "refused by the bastion" in str(caught.value)
        assert first.fetchone() == (1,)  # answered before the refusal, as sent
        assert conn.execute("SELECT 4").fetchone() == (4,)  # the session goes on
    wait_for_outcomes(bastion, 5)
    rows = list(reversed(bastion.store.queries()))
    assert [(q.step, q.sql.split()[0], q.sqlstate, q.tag) for q in rows] == [
        ("execute", "SELECT", None, "SELECT 1"),
        ("parse", "INSERT", "25006", None),  # refused at Parse ...
        ("execute", "INSERT", None, "not executed"),  # ... so its Execute never ran,
        ("execute", "SELECT", None, "not executed"),  # nor anything else before Sync
        ("simple", "SELECT", None, "SELECT 1"),
    ]


def test_a_refusal_aborts_the_transaction_as_the_server_would(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)  # opens a transaction
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(INSERT)
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 2")
        conn.rollback()
        assert conn.execute("SELECT 3").fetchone() == (3,)


def test_simple_protocol_refusal_keeps_the_reply_order(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    script = f"SELECT 'before';\n{INSERT};\nSELECT 'after';\n"
    done = run_psql(via, "-At", "-v", "ON_ERROR_STOP=0", input=script)
    assert done.stdout.split() == ["before", "after"]
    assert "refused by the bastion" in done.stderr and "INSERT" in done.stderr


@pytest.mark.parametrize("durability", ["strict", "batched"])
def test_the_query_log_keeps_each_outcome(tmp_path: Path, pg: PgDatabase, durability: str) -> None:
    b = alice_on(tmp_path / "bastion", pg, f'\n[audit]\ndurability = "{durability}"\n')
    b.start()
    try:
        via = b.via_bastion("alice", "orders-prod", PASSWORD)
        script = "SELECT id FROM customers WHERE id <= 3;\nSELECT 1/0;\nSELECT 'x' AS secret;\n"
        run_psql(via, "-At", "-v", "ON_ERROR_STOP=0", input=script)
        wait_for_outcomes(b, 3)
        rows = list(reversed(b.store.queries()))
        verdict = b.store.verify_chain()
        commits = [json.loads(e.detail) for e in b.store.events() if e.kind == KIND]
    finally:
        b.stop()
    assert [(q.rows, q.tag, q.sqlstate) for q in rows] == [
        (3, "SELECT 3", None),
        (None, None, "22012"),
        (1, "SELECT 1", None),
    ]
    assert rows[2].sql == "SELECT $1 AS secret;"  # the literal never reaches the log
    assert all(q.duration_us is not None and q.duration_us >= 0 for q in rows)
    assert verdict.ok, verdict.problem
    assert sum(len(c["starts"]) // 32 for c in commits) == 3  # each row bound by its commit


def test_stopping_the_bastion_ends_live_sessions_and_closes_their_rows(
    tmp_path: Path, pg: PgDatabase
) -> None:
    """`bastion serve` on SIGTERM: clients get 57P01 and every session row is closed."""
    b = alice_on(tmp_path / "bastion", pg)
    expires = datetime.now(UTC) + timedelta(minutes=10)
    b.core.identity.add_ticket("alice", "orders-prod", "bt_stop-test-ticket", expires, "test")
    b.release()
    proc = b.serve_process()
    try:
        via = PgDatabase("127.0.0.1", b.pg_port, "orders-prod", "alice", "bt_stop-test-ticket")
        with psycopg_connect(via, autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            with pytest.raises(psycopg.OperationalError, match="shutting down"):
                conn.execute("SELECT 2")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = Store.open(b.config.paths.store, FakeClock())
    try:
        [session] = store.sessions()
        assert (session.state, session.ended_at is not None) == ("interrupted", True)
    finally:
        store.close()


def test_reads_held_for_the_audit_trail_go_upstream_in_order(bastion: Bastion) -> None:
    """Strict durability holds each client read until its statements are on disk; reads that
    arrive meanwhile (one query per TCP segment, sent without waiting) wait their turn."""
    sock, reader = logged_in(bastion)
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for n in range(1, 9):
            sock.sendall(pw.query(f"SELECT {n} AS n, pg_backend_pid() IS NOT NULL"))
        frames: list[pw.Frame] = []
        while sum(f.type == b"Z" for f in frames) < 8:
            data = sock.recv(65536)
            assert data, "the door closed before every query was answered"
            reader.feed(data)
            frames += reader.frames()
        sock.sendall(pw.terminate())
    answers = [pw.data_row_values(f.raw[5:])[0] for f in frames if f.type == b"D"]
    assert answers == [str(n).encode() for n in range(1, 9)]
    assert [f.type for f in frames] == [b"T", b"D", b"C", b"Z"] * 8
    wait_for_outcomes(bastion, 8)
    rows = list(reversed(bastion.store.queries()))
    assert [(q.rows, q.tag) for q in rows] == [(1, "SELECT 1")] * 8
    assert bastion.config.audit.durability == "strict"


def test_too_many_statements_in_flight_end_the_session_with_a_reason(
    bastion: Bastion, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracker, "MAX_PENDING", 3)  # 100,000 in service
    sock, reader = logged_in(bastion)
    with sock:
        sock.sendall(b"".join(pw.query(f"SELECT {n}") for n in range(10)))
        while data := sock.recv(65536):
            reader.feed(data)
    error = pw.decode_backend(reader.frames()[-1])
    assert isinstance(error, pw.ErrorResponse)
    assert (error.severity, error.sqlstate) == ("FATAL", "54000")
    assert "more than 3 statements in flight" in error.message
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    assert run_psql(via, "-c", "SELECT 1").returncode == 0  # the door is still up


def test_a_fault_in_the_relay_ends_only_that_session_and_says_so(
    bastion: Bastion, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    sock, reader = logged_in(bastion)
    monkeypatch.setattr(tracker.Tracker, "sent", broken)  # injected after login
    with sock:
        sock.sendall(pw.query("SELECT 1"))
        while data := sock.recv(65536):
            reader.feed(data)
    monkeypatch.undo()
    error = pw.decode_backend(reader.frames()[-1])
    assert isinstance(error, pw.ErrorResponse)
    assert (error.sqlstate, error.message) == (
        "XX000", "internal error in the bastion; the session was ended")  # fmt: skip
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    assert run_psql(via, "-c", "SELECT 1").returncode == 0
    wait_until(lambda: not bastion.store.sessions(open_only=True))
    [ended, _] = sorted(bastion.store.sessions(), key=lambda s: s.started_at)
    assert "internal error" in (ended.end_reason or "")


@pytest.mark.parametrize("together", [True, False], ids=["same-segment", "while-connecting"])
def test_a_query_sent_with_the_password_is_answered_after_login(
    bastion: Bastion, together: bool
) -> None:
    """Bytes that come before the relay starts (read ahead during login, or waiting while the
    bastion logs in upstream) are relayed first."""
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    reader = pw.FrameReader()
    with socket.create_connection(("127.0.0.1", bastion.pg_port), timeout=15) as sock:
        sock.sendall(pw.startup_message({"user": "alice", "database": "orders-prod"}))
        while (frame := reader.next_frame()) is None:
            reader.feed(sock.recv(65536))
        assert frame.type == b"R"
        password, query = pw.password_message(via.password.encode()), pw.query("SELECT 41 + 1")
        if together:
            sock.sendall(password + query)
        else:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(password)
            sock.sendall(query)
        frames: list[pw.Frame] = []
        while sum(f.type == b"Z" for f in frames) < 2:  # the greeting's, then the query's
            data = sock.recv(65536)
            assert data, "the door closed early"
            reader.feed(data)
            frames += reader.frames()
    rows = [pw.data_row_values(f.raw[5:]) for f in frames if f.type == b"D"]
    assert rows == [(b"42",)]
