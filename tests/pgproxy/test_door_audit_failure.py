"""When the audit trail cannot be written the session ends, says why, and (strict durability)
the statement that could not be recorded never runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from tests.pgproxy.conftest import PASSWORD, alice_on
from tests.realpg import PgDatabase, psycopg_connect, run_psql

MARK = "INSERT INTO orders (customer_id, total) VALUES (1, 4242)"


def marked_rows(pg: PgDatabase) -> int:
    done = run_psql(pg, "-At", "-c", "SELECT count(*) FROM orders WHERE total = 4242")
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.mark.parametrize("durability", ["strict", "batched"])
def test_a_lost_audit_write_ends_the_session_with_a_reason(
    tmp_path: Path, pg: PgDatabase, durability: str
) -> None:
    b = alice_on(tmp_path / "bastion", pg, f'\n[audit]\ndurability = "{durability}"\n')
    b.grant("alice", "orders-prod", mode="write")
    b.start()
    broken = False
    try:
        with psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD),
                             autocommit=True) as conn:  # fmt: skip
            assert conn.execute("SELECT 1").fetchone() == (1,)
            # Every later chain write fails, in the audit writer's process too.
            b.store.conn.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
            broken = True
            with pytest.raises(psycopg.OperationalError) as caught:
                conn.execute(MARK)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # batched: noticed at a later statement
                    conn.execute("SELECT 1")
                    time.sleep(0.01)
    finally:
        if broken:
            b.store.conn.execute("ALTER TABLE audit_events_away RENAME TO audit_events")
        b.stop()
    assert "could not write its audit trail" in str(caught.value)
    if durability == "strict":
        assert marked_rows(pg) == 0  # never recorded, so never run


def test_a_writer_process_killed_mid_commit_ends_the_session_and_the_next_one_works(
    tmp_path: Path, pg: PgDatabase
) -> None:
    b = alice_on(tmp_path / "bastion", pg, '\n[audit]\ndurability = "strict"\n')
    b.grant("alice", "orders-prod", mode="write")
    b.start()
    dsn = b.via_bastion("alice", "orders-prod", PASSWORD)
    blocker = sqlite3.connect(b.store.file, isolation_level=None)
    try:
        with psycopg_connect(dsn, autocommit=True) as conn, ThreadPoolExecutor(1) as pool:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert b.core.writer is not None
            pid = b.core.writer.scribe.pid
            assert pid is not None
            blocker.execute("BEGIN IMMEDIATE")  # the statement's commit waits for this lock
            held = pool.submit(conn.execute, MARK)
            time.sleep(0.3)
            assert not held.done()  # strict: the statement waits for its audit row
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
            blocker.execute("ROLLBACK")  # the rest of the bastion may write again
            with pytest.raises(psycopg.OperationalError) as caught:
                held.result(timeout=10)
        with psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD),
                             autocommit=True) as again:  # fmt: skip
            assert again.execute("SELECT 2").fetchone() == (2,)
    finally:
        blocker.close()
        b.stop()
    assert "could not write its audit trail" in str(caught.value)
    assert marked_rows(pg) == 0  # never recorded, so never run
