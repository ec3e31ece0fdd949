"""Strict durability for pure reads: a read grant's statement goes upstream at once while its
record commits, and its reply is held from the first byte until the record is durable (lost:
FATAL, nothing of the reply). Writes still wait for their record before they go upstream."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bastion import pgwire as pw
from bastion.pgproxy.door import PgDoor
from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, alice_on, wait_for_outcomes
from tests.pgproxy.test_door_admin import frames_until, logged_in
from tests.realpg import PgDatabase, psycopg_connect, run_psql

STRICT = '\n[audit]\ndurability = "strict"\n'


@pytest.fixture
def strict(tmp_path: Path, pg: PgDatabase) -> Iterator[Bastion]:
    """alice has a read grant on orders-prod and bob a write grant, under strict durability."""
    b = alice_on(tmp_path / "bastion", pg, STRICT)
    b.add_user("bob", password=PASSWORD)
    b.grant("bob", "orders-prod", mode="write")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def nothing_received(sock: socket.socket) -> bool:
    """Whether no byte waits to be read on `sock` now (a look, not a wait)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def wait_for_backend(pg: PgDatabase, marker: str, state: str = "idle") -> None:
    """Poll the server until a bastion session's backend shows `marker` in `state` ('idle':
    it ran and its whole reply left the server)."""
    deadline = time.monotonic() + 10
    with psycopg_connect(pg, autocommit=True) as admin:
        while time.monotonic() < deadline:
            found = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'bastion:%%'"
                " AND state = %s AND strpos(query, %s) > 0",
                (state, marker),
            ).fetchone()
            if found is not None and found[0]:
                return
            time.sleep(0.02)
    raise AssertionError(f"no backend showed {marker!r} in state {state!r}")


def ran(pg: PgDatabase, marker: str) -> bool:
    """Whether any bastion session's backend ever received text holding `marker`."""
    with psycopg_connect(pg, autocommit=True) as admin:
        found = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'bastion:%%'"
            " AND strpos(query, %s) > 0",
            (marker,),
        ).fetchone()
    return found is not None and found[0] > 0


def locked(b: Bastion) -> sqlite3.Connection:
    """Another connection holding the store's write lock: no record can commit."""
    blocker = sqlite3.connect(b.store.file, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


@contextmanager
def writer_stopped(b: Bastion) -> Iterator[None]:
    """The audit writer's process stopped (SIGSTOP) until the block ends: no record becomes
    durable meanwhile, for as long as the test needs (a lock held on the store would give
    the writer's busy timeout, and a busy machine can outlast it), then it goes on (SIGCONT)."""
    assert b.core.writer is not None
    pid = b.core.writer.scribe.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_pure_read_goes_upstream_before_its_record_and_its_reply_waits(
    strict: Bastion, pg: PgDatabase
) -> None:
    sock, reader = logged_in(strict, "alice")
    with sock:
        with writer_stopped(strict):
            sock.sendall(pw.query("SELECT 'strict-read-1' AS marker, 42 AS answer"))
            wait_for_backend(pg, "strict-read-1")  # it ran, and its reply left the server
            assert nothing_received(sock)  # ... but none of it reached the client
        frames = frames_until(sock, reader, 1)  # the record commits; the reply is let go
        sock.sendall(pw.terminate())
    assert [f.type for f in frames] == [b"T", b"D", b"C", b"Z"]
    assert pw.data_row_values(frames[1].raw[5:]) == (b"strict-read-1", b"42")
    wait_for_outcomes(strict, 1)
    [row] = strict.store.queries()
    assert row.tag == "SELECT 1"


def test_a_lost_record_ends_the_session_and_nothing_of_the_reply_is_sent(
    strict: Bastion, pg: PgDatabase
) -> None:
    sock, reader = logged_in(strict, "alice")
    blocker = locked(strict)
    renamed = False
    try:
        with sock:
            sock.sendall(pw.query("SELECT 'strict-read-2' AS marker, 42 AS answer"))
            wait_for_backend(pg, "strict-read-2")
            assert nothing_received(sock)
            # The writer waits for the lock; when it has it, the chain's table is gone.
            blocker.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
            blocker.execute("COMMIT")
            renamed = True
            frames = frames_until(sock, reader, 1)
    finally:
        if renamed:
            strict.store.conn.execute("ALTER TABLE audit_events_away RENAME TO audit_events")
        blocker.close()
    assert [f.type for f in frames] == [b"E"]  # FATAL, and not one byte of the rows
    fields = pw.error_fields(frames[0].body, "ErrorResponse")
    assert fields["S"] == "FATAL"
    assert "audit trail" in fields["M"]


def test_a_write_waits_for_its_record_before_it_goes_upstream(
    strict: Bastion, pg: PgDatabase
) -> None:
    writer, writer_frames = logged_in(strict, "bob")
    reader, _ = logged_in(strict, "alice")
    with writer, reader:
        with writer_stopped(strict):
            insert = "INSERT INTO orders (customer_id, total) VALUES (1, 4343) -- strict-write"
            writer.sendall(pw.query(insert))
            # A read sent after it, on another session, reaches the server; the write does not.
            reader.sendall(pw.query("SELECT 'strict-read-3'"))
            wait_for_backend(pg, "strict-read-3")
            assert not ran(pg, "strict-write")
            assert nothing_received(writer)
        frames = frames_until(writer, writer_frames, 1)
        writer.sendall(pw.terminate())
        reader.sendall(pw.terminate())
    assert [f.type for f in frames] == [b"C", b"Z"]
    done = run_psql(pg, "-At", "-c", "SELECT count(*) FROM orders WHERE total = 4343")
    assert done.stdout.strip() == "1"


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_a_pipeline_of_read_write_read_keeps_its_order(
    strict: Bastion, pg: PgDatabase, user: str
) -> None:
    """Under a read grant the write is refused in its place (and the reads don't wait); under
    a write grant the whole pipeline waits for its records; either way replies keep order."""
    sock, reader = logged_in(strict, user)
    with sock:
        sock.sendall(
            pw.query("SELECT 'first'")
            + pw.query("INSERT INTO orders (customer_id, total) VALUES (1, 4444)")
            + pw.query("SELECT 'last'")
            + pw.parse("", "SELECT 'extended'", ())
            + pw.bind("", "", ())
            + pw.execute("", 0)
            + pw.sync()
        )
        frames = frames_until(sock, reader, 4)
        sock.sendall(pw.terminate())
    kinds = [f.type for f in frames]
    second = [b"C", b"Z"] if user == "bob" else [b"E", b"Z"]
    assert kinds == [b"T", b"D", b"C", b"Z", *second, b"T", b"D", b"C", b"Z",
                     b"1", b"2", b"D", b"C", b"Z"]  # fmt: skip
    values = [pw.data_row_values(f.raw[5:])[0] for f in frames if f.type == b"D"]
    assert values == [b"first", b"last", b"extended"]
    done = run_psql(pg, "-At", "-c", "SELECT count(*) FROM orders WHERE total = 4444")
    assert done.stdout.strip() == ("1" if user == "bob" else "0")


def test_a_held_reply_past_its_bound_stops_reading_the_database(
    strict: Bastion, pg: PgDatabase
) -> None:
    """Back-pressure, not memory: past its bound, a large reply held for its record stops the
    door reading the database, which waits to write (ClientWrite) until the record is durable;
    then every row arrives."""
    sock, reader = logged_in(strict, "alice")
    with sock:
        with writer_stopped(strict):
            sock.sendall(pw.query(
                "SELECT 'strict-big', repeat('x', 1000) FROM generate_series(1, 100000)"
            ))  # fmt: skip
            wait_for_backend_waiting(pg, "strict-big")
            wait_for_upstream_paused(strict)  # the door holds a bounded part, reads no more
            assert nothing_received(sock)
        frames = frames_until(sock, reader, 1)  # the record is durable: the reply goes
        sock.sendall(pw.terminate())
    assert sum(f.type == b"D" for f in frames) == 100000
    assert frames[-2].type == b"C"


def wait_for_backend_waiting(pg: PgDatabase, marker: str) -> None:
    """Poll until the backend running `marker` waits to write its reply (nobody reads it)."""
    deadline = time.monotonic() + 10
    with psycopg_connect(pg, autocommit=True) as admin:
        while time.monotonic() < deadline:
            found = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                " AND application_name LIKE 'bastion:%%'"
                " AND wait_event = 'ClientWrite' AND strpos(query, %s) > 0",
                (marker,),
            ).fetchone()
            if found is not None and found[0]:
                return
            time.sleep(0.02)
    raise AssertionError(f"the backend running {marker!r} never waited to write")


def wait_for_upstream_paused(b: Bastion) -> None:
    """Poll until the one live database session's upstream transport is not being read."""

    async def reading() -> bool:
        assert b.server is not None
        [door] = [d for d in b.server.doors if isinstance(d, PgDoor)]
        [session] = door.live.values()
        assert session.up is not None
        transport = session.up.writer.transport
        assert isinstance(transport, asyncio.Transport)
        return transport.is_reading()

    deadline = time.monotonic() + 10
    while b.call(reading()):
        if time.monotonic() > deadline:
            raise AssertionError("the door kept reading the database past the held bound")
        time.sleep(0.02)
