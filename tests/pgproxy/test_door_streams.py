"""COPY both ways, NOTIFY, upstream loss and a slow reader of a large result, through the door."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from bastion.identity import totp
from tests.harness import Bastion, proc_kib
from tests.pgproxy.conftest import PASSWORD, alice_on, wait_for_tags
from tests.realpg import PgCluster, PgDatabase, psql_argv, psql_env, psycopg_connect, run_psql


def test_copy_out_and_in_through_psql(bastion: Bastion, tmp_path: Path) -> None:
    bastion.add_user("wendy", password=PASSWORD)
    bastion.grant("wendy", "orders-prod", mode="write")
    out = tmp_path / "orders.csv"
    via = bastion.via_bastion("wendy", "orders-prod", PASSWORD)
    done = run_psql(via, "-c", f"\\copy (SELECT id, total FROM orders ORDER BY id) TO '{out}' CSV")
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert len(lines) > 100
    source = tmp_path / "new.csv"
    source.write_text("".join(f"{n},1,{n}.5,note\n" for n in range(900001, 900011)))
    via = bastion.via_bastion("wendy", "orders-prod", PASSWORD)
    done = run_psql(via, "-c", f"\\copy orders (id, customer_id, total, note) FROM '{source}' CSV")
    assert done.returncode == 0, done.stderr
    tags = wait_for_tags(bastion, 2)
    assert "COPY 10" in tags and f"COPY {len(lines)}" in tags


def test_copy_from_is_refused_under_a_read_grant(bastion: Bastion, tmp_path: Path) -> None:
    source = tmp_path / "new.csv"
    source.write_text("1,1,1.5,x\n")
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    done = run_psql(via, "-c", f"\\copy orders FROM '{source}' CSV")
    assert done.returncode != 0 and "COPY FROM writes data" in done.stderr


def test_notifications_and_notices_pass_through(bastion: Bastion, pg: PgDatabase) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        conn.execute("LISTEN news")
        with psycopg_connect(pg, autocommit=True) as other:
            other.execute("NOTIFY news, 'hello'")
        conn.execute("SELECT 1")
        got = [n.payload for n in conn.notifies(timeout=5, stop_after=1)]
    assert got == ["hello"]


def test_upstream_restart_ends_the_session_as_upstream_lost(
    tmp_path: Path, pg_private: PgCluster
) -> None:
    db = pg_private.seed_orders()
    b = alice_on(tmp_path / "bastion", db)
    b.start()
    try:
        via = b.via_bastion("alice", "orders-prod", PASSWORD)
        conn = psycopg_connect(via)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        pg_private.restart(mode="fast")
        try:
            conn.execute("SELECT 1")
        except Exception as exc:  # the client is told, in its own words
            assert "terminat" in str(exc).lower() or "lost" in str(exc).lower()
        conn.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = [s.state for s in b.store.sessions()]
            if states and states[0] != "open":
                break
            time.sleep(0.05)
        assert states == ["upstream_lost"]
        via = b.via_bastion("alice", "orders-prod", PASSWORD)
        assert run_psql(via, "-c", "SELECT 1").returncode == 0  # new sessions work again
    finally:
        b.stop()


def test_a_slow_reader_of_500_mb_keeps_memory_bounded(
    tmp_path: Path, pg_cluster: PgCluster, pg: PgDatabase
) -> None:
    """psql streams COPY output to a pipe nobody reads for a while: the bastion must wait."""
    pg_cluster.make_big_table(pg, 1_000_000, pad=500)
    b = alice_on(tmp_path / "bastion", pg)
    b.release()
    proc = b.serve_process()
    try:
        before = proc_kib(proc.pid, "VmRSS")
        code = totp.code_for_step(b.seeds["alice"], totp.step_at(datetime.now(UTC)) + 1)
        via = PgDatabase("127.0.0.1", b.pg_port, "orders-prod", "alice", PASSWORD + code)
        with subprocess.Popen(psql_argv(via, "-c", "COPY big TO STDOUT"), env=psql_env(via),
                              stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL) as reader:  # fmt: skip
            assert reader.stdout is not None
            time.sleep(3)  # nobody reads: psql blocks, so must the bastion
            held = proc_kib(proc.pid, "VmRSS") - before
            total = 0
            while chunk := reader.stdout.read(1 << 20):
                total += len(chunk)
            assert reader.wait(60) == 0
        assert total > 500 * 1_000_000
        assert held < 64 * 1024, f"the bastion held {held} KiB while the client paused"
        peak = proc_kib(proc.pid, "VmHWM") - before
        assert peak < 160 * 1024, f"peak memory grew by {peak} KiB"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
