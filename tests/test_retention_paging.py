"""A retention run streams its archive from the store: the events and query-log rows are read a
page at a time and written a chunk at a time, so a month of a busy bastion never sits in
memory at once. With pages of a few rows and chunks of a few bytes, the run archives exactly
what it deletes (held rows break the runs of ids), and everything still verifies. Run on
SQLite and on PostgreSQL, on the month of history of tests/test_retention.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bastion import retention_archive
from bastion.audit import retention as store_retention
from bastion.audit.queries import QueryEnd, QueryStart
from bastion.retention import Runner, plan
from tests.test_retention import History, _history

pytestmark = pytest.mark.both_stores


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    yield from _history(tmp_path, legacy_days=0)


def test_tiny_pages_and_chunks_archive_exactly_what_is_deleted(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    bst = history.bst
    store = bst.store
    assert history.cli("hold", "add", "--session", "pg-alice-03", "--reason", "case 7")[0] == 0
    found = plan(store, bst.config.retention)
    assert found.query_before is not None
    assert store.query_runs_due(found.query_before, page=1) == found.query_runs
    assert store.query_runs_due(found.query_before, page=3) == found.query_runs
    assert len(found.query_runs) > 1  # the held session's rows break the run of ids
    head = store.chain_head()[0]
    assert list(store.events_between(0, head, page=2)) == list(store.events_between(0, head))
    before = {int(r["id"]): r for r in store._rows("SELECT * FROM queries")}

    monkeypatch.setattr(store_retention, "PAGE", 3)
    monkeypatch.setattr(retention_archive, "CHUNK", 37)
    done = Runner(store, bst.box, bst.config.retention, "node-1", "test").run()
    assert done.archive is not None and not done.warnings
    assert done.queries_deleted == found.queries == 98  # 100 but pg-alice-03's two

    lines = [json.loads(x) for x in done.archive.read_bytes().splitlines()]
    archived = {int(x["query"]["id"]): x["query"] for x in lines if "query" in x}
    after = {int(r["id"]) for r in store._rows("SELECT id FROM queries")}
    assert set(archived) == set(before) - after  # each deleted row archived, as it stood
    assert all(archived[i] == before[i] for i in archived)
    seqs = [x["event"]["seq"] for x in lines if "event" in x]
    assert seqs == list(range(done.plan.cut_from + 1, done.plan.cut_to + 1))
    assert len(seqs) == done.events_deleted

    code, said = history.cli("audit", "verify", "--archive", str(done.archive))
    assert code == 0 and said.startswith("archive intact:"), said
    code, said = history.cli("audit", "verify")
    assert code == 0, said


def test_a_statement_still_running_in_an_open_session_is_kept_until_it_ends(
    history: History,
) -> None:
    """A long-lived database session (an app's connection through the bastion) whose statement
    began before the query-log limit and is still running: its row is neither archived
    unfinished nor deleted, so its outcome, written when it ends, is not lost."""
    bst = history.bst
    sid, key = "pg-alice-long", "pg-alice-long-0"
    began = history.start + timedelta(days=1, hours=12)
    bst.clock.set(began)
    bst.store.open_session(session_id=sid, user="alice", target="db-1", grant_id=None,
                           protocol="postgres", client_addr="127.0.0.1:5002")  # fmt: skip
    bst.store.write_batch([QueryStart(key, sid, "alice", "db-1", began, "simple",
                                      "SELECT count(*) FROM orders, orders o2")])  # fmt: skip
    bst.clock.set(history.end)
    done = Runner(bst.store, bst.box, bst.config.retention, "node-1", "test").run()
    assert done.archive is not None and done.queries_deleted > 0
    archived = [json.loads(x) for x in done.archive.read_bytes().splitlines()]
    assert not [x for x in archived if x.get("query", {}).get("session_id") == sid]
    ended = history.end + timedelta(minutes=1)
    bst.store.write_batch([QueryEnd(key, sid, "alice", "db-1", ended, 1, "SELECT 1", None, 9)])
    [row] = bst.store._rows("SELECT command_tag FROM queries WHERE session_id = ?", [sid])
    assert row["command_tag"] == "SELECT 1"
