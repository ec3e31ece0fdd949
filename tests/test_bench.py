"""The benches that the issue asks for, at a tiny size: they run, and what they report of the
chain is what `audit verify` would say (three writers at once leave one chain, on both
engines); a node's config for the bench's shared PostgreSQL store is one serve accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bastion.audit.location import PgLocation
from bastion.config import load_config
from bench.audit_events import Places, bench_grouped, bench_strict
from bench.cluster import Node

REPO = Path(__file__).resolve().parent.parent


def test_three_writers_at_once_append_one_chain_that_verifies(
    store_at: Path | PgLocation, tmp_path: Path
) -> None:
    """Three AuditWriters (three stores, three scribe processes: the nodes) on one store."""
    run = bench_grouped(Places(tmp_path), store_at, seconds=0.3, producers=6, writers=3)
    assert run.chain.startswith("ok ("), run.chain
    assert run.failed == 0 and run.rate > 0


def test_one_chained_event_per_commit_verifies(store_at: Path | PgLocation) -> None:
    run = bench_strict(store_at, seconds=0.1)
    assert run.chain.startswith("ok ("), run.chain


def test_the_audit_events_bench_runs_and_prints_its_rows(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.audit_events", "--store", "sqlite", "--seconds", "0.1",
         "--producers", "4", "--links", "100", "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for row in ("raw insert", "strict", "grouped: 4 producers", "nodes: 4 producers, 3 writers"):
        assert row in done.stdout
    assert done.stdout.count("chain after sqlite") == 3
    assert "BROKEN" not in done.stdout


def test_a_bench_node_on_the_postgresql_store_has_its_own_name_head_file_and_sink(
    pg_store_at: PgLocation, tmp_path: Path
) -> None:
    config = load_config(Node("b").config(tmp_path, pg_store_at))
    assert config.store.url == pg_store_at.url
    assert config.cluster.node == "b"
    assert config.store.head_file == "store-b.head"
    assert config.audit.anchors == (f"file:{tmp_path}/anchors-b.log",)


def test_the_export_bench_runs_and_every_sink_catches_up() -> None:
    """bench.export at a tiny size: each configuration runs, and each sink's cursor reaches
    the chain's head after its run (it would print PROBLEM)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.export", "--seconds", "1", "--rounds", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for row in ("export none", "export file", "export syslog", "events exported: file"):
        assert row in done.stdout
    assert "PROBLEM" not in done.stdout
    assert done.stdout.count(" paired ") == 6  # TPS and CPU, each setup against the same round's
