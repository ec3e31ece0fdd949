"""The PostgreSQL door under an admin's and a hostile client's hands: kills, \\watch cancelled,
malformed messages after login, and pgbench driving it."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from bastion import pgwire as pw
from bastion.audit.queries import QueryRow
from tests.harness import Bastion
from tests.oneshot import pgbench_via_bastion
from tests.pgproxy.conftest import PASSWORD, wait_for_outcomes
from tests.realpg import PgDatabase, psql_argv, psql_env, psycopg_connect, run_psql
from tests.ssh.test_door_admin import cli, wait_until

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL


def backend_queries(pg: PgDatabase, like: str) -> int:
    """Active statements on the cluster whose text starts like `like`."""
    with psycopg_connect(pg, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
            (like + "%",),
        ).fetchone()
    return int(row[0]) if row else 0


def psql_running(b: Bastion, script: str) -> subprocess.Popen[str]:
    """psql through the bastion reading `script` from stdin, left running."""
    via = b.via_bastion("alice", "orders-prod", PASSWORD)
    path = b.home / "script.sql"
    path.write_text(script)
    with path.open() as stdin:
        return subprocess.Popen(psql_argv(via), env=psql_env(via), stdin=stdin, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_sessions_kill_ends_a_database_session_and_its_query(bastion: Bastion,
                                                             pg: PgDatabase) -> None:  # fmt: skip
    proc = psql_running(bastion, "SELECT pg_sleep(60);\n")
    try:
        wait_until(lambda: backend_queries(pg, "SELECT pg_sleep(60)") == 1)
        [session] = bastion.store.sessions(open_only=True)
        killed = cli(bastion, "sessions", "kill", session.id, "--reason", "incident over")
        assert killed.returncode == 0, killed.stderr
        code, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code != 0
    assert "session ended by cli:" in err and "incident over" in err
    wait_until(lambda: backend_queries(pg, "SELECT pg_sleep(60)") == 0)
    wait_until(lambda: not bastion.store.sessions(open_only=True))
    [closed] = bastion.store.sessions()
    assert closed.state == "killed"


def test_watch_is_cancelled_by_ctrl_c(bastion: Bastion, pg: PgDatabase) -> None:
    proc = psql_running(bastion, "SELECT pg_sleep(30) \\watch 1\n")
    try:
        wait_until(lambda: backend_queries(pg, "SELECT pg_sleep(30)") == 1)
        proc.send_signal(signal.SIGINT)  # psql sends a CancelRequest, then stops watching
        _, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "canceling statement due to user request" in err
    assert backend_queries(pg, "SELECT pg_sleep(30)") == 0
    wait_for_outcomes(bastion, 1)
    [row] = bastion.store.queries()
    assert row.sqlstate == "57014"
    assert bastion.events("query.cancelled")


def logged_in(
    b: Bastion, user: str = "alice", target: str = "orders-prod"
) -> tuple[socket.socket, pw.FrameReader]:
    """A raw protocol connection through the door as `user`, ready for queries."""
    via = b.via_bastion(user, target, PASSWORD)
    sock = socket.create_connection(("127.0.0.1", b.pg_port), timeout=15)
    sock.sendall(pw.startup_message({"user": user, "database": target}))
    reader = pw.FrameReader()
    while True:
        frame = reader.next_frame()
        if frame is None:
            data = sock.recv(65536)
            assert data, "the door closed during login"
            reader.feed(data)
            continue
        if frame.type == b"R" and frame.raw[5:9] == struct.pack("!i", 3):
            sock.sendall(pw.password_message(via.password.encode()))
        elif frame.type == b"Z":
            return sock, reader
        assert frame.type != b"E", bytes(frame.raw)


def replies_until_ready(sock: socket.socket, reader: pw.FrameReader) -> list[pw.Frame]:
    frames: list[pw.Frame] = []
    while not frames or frames[-1].type != b"Z":
        frames += reader.frames()
        if not frames or frames[-1].type != b"Z":
            data = sock.recv(65536)
            assert data, "the door closed before ReadyForQuery"
            reader.feed(data)
    return frames


def frames_until(sock: socket.socket, reader: pw.FrameReader, readies: int, *,
                 stop: bytes = b"Z", closing_ok: bool = True) -> list[pw.Frame]:  # fmt: skip
    """Replies up to the `readies`-th message of type `stop` (ReadyForQuery), or until the door
    closes (which fails the test unless `closing_ok`)."""
    frames: list[pw.Frame] = []
    seen = 0  # counted as they come: a recount per frame is quadratic (100k rows: "hangs")
    while seen < readies:
        frame = reader.next_frame()
        if frame is not None:
            frames.append(frame)
            seen += frame.type == stop
            continue
        data = sock.recv(65536)
        if not data:
            assert closing_ok, "the door closed early"
            break
        reader.feed(data)
    return frames


def replies(sock: socket.socket, reader: pw.FrameReader) -> list[pw.Frame]:
    frames = reader.frames()
    while data := sock.recv(65536):
        reader.feed(data)
        frames += reader.frames()
    return frames


@pytest.mark.parametrize(
    "garbage",
    [
        b"Q" + struct.pack("!i", 0),
        b"Q" + struct.pack("!i", 3),
        b"Q" + struct.pack("!i", 2**31 - 1) + b"SELECT",
        b"Q" + struct.pack("!i", 2**20) + b"SELECT 1",  # truncated: the client stops mid-message
    ],
    ids=["length-0", "length-3", "length-2^31-1", "truncated"],
)
def test_malformed_messages_after_login_end_the_session_cleanly(
    bastion: Bastion, garbage: bytes
) -> None:
    sock, reader = logged_in(bastion)
    with sock:
        sock.sendall(pw.query("SELECT 1"))
        assert [f.type for f in replies_until_ready(sock, reader)] == [b"T", b"D", b"C", b"Z"]
        sock.sendall(garbage)
        sock.shutdown(socket.SHUT_WR)
        frames = replies(sock, reader)
    error = pw.decode_backend(frames[-1])
    assert isinstance(error, pw.ErrorResponse)
    assert (error.severity, error.sqlstate) == ("FATAL", "08P01")
    assert "the client sent a malformed message" in error.message
    wait_until(lambda: not bastion.store.sessions(open_only=True))
    [session] = bastion.store.sessions()
    assert "message" in (session.end_reason or "")
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    assert run_psql(via, "-c", "SELECT 1").returncode == 0  # the door is still up


def test_pgbench_through_the_door(bastion: Bastion, pg: PgDatabase, tmp_path: Path) -> None:
    bastion.add_user("wendy", password=PASSWORD)
    bastion.grant("wendy", "orders-prod", mode="write")
    setup = run_psql(pg, "-c", "CREATE TABLE pgbench_branches (bid int, bbalance int,"
                     " filler char(88)); INSERT INTO pgbench_branches VALUES (1, 0, '');"
                     " CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int,"
                     " abalance int, filler char(84)); INSERT INTO pgbench_accounts"
                     " SELECT g, 1, 0, '' FROM generate_series(1, 100000) g")  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    expires = bastion.clock.now() + timedelta(minutes=10)
    tickets = (f"bt_{tmp_path.name}-1", f"bt_{tmp_path.name}-2")
    for token in tickets:
        bastion.core.identity.add_ticket("wendy", "orders-prod", token, expires, "test")
    via = PgDatabase("127.0.0.1", bastion.pg_port, "orders-prod", "wendy", "")
    args = ["-S", "-n", "-t", "200", "-c", "1", "-j", "1", "-M", "extended"]
    argv, env, relay = pgbench_via_bastion(tmp_path, via, tickets, args)
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                              check=False)  # fmt: skip
    finally:
        relay.close()
    assert done.returncode == 0, done.stderr
    assert "number of transactions actually processed: 200/200" in done.stdout

    def selects() -> list[QueryRow]:
        return [q for q in bastion.store.queries(limit=1000) if "pgbench_accounts" in q.sql]

    wait_until(lambda: sum(q.tag is not None for q in selects()) == 200)
    rows = selects()
    assert len(rows) == 200
    assert {(q.step, q.tag, q.rows) for q in rows} == {("execute", "SELECT 1", 1)}
    assert all("$1" in q.sql for q in rows)  # the account number never reaches the log
