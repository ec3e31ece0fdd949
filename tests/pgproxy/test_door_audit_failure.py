"""When the audit trail cannot be written the session ends, says why, and (strict durability)
the statement that could not be recorded never runs."""

from __future__ import annotations

import time
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
    try:
        with psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD),
                             autocommit=True) as conn:  # fmt: skip
            assert conn.execute("SELECT 1").fetchone() == (1,)
            b.store.conn.execute("PRAGMA query_only=ON")  # every later write fails
            with pytest.raises(psycopg.OperationalError) as caught:
                conn.execute(MARK)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # batched: noticed at a later statement
                    conn.execute("SELECT 1")
                    time.sleep(0.01)
    finally:
        b.store.conn.execute("PRAGMA query_only=OFF")
        b.stop()
    assert "could not write its audit trail" in str(caught.value)
    if durability == "strict":
        assert marked_rows(pg) == 0  # never recorded, so never run
