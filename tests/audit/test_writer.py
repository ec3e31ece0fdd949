"""Group commit: concurrent appends share commits, stay chained, and failures reach callers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bastion.audit import Event, QueryEnd, QueryStart, Store
from bastion.audit.location import PgLocation
from bastion.audit.writer import AuditWriter
from bastion.clock import FakeClock
from bastion.errors import StoreError

off = asyncio.to_thread  # store calls block: never on the event loop (PostgreSQL refuses)


def break_chain_table(store: Store) -> None:
    """Every later chain write fails, in the writer's process too (the table is gone)."""
    store.conn.execute("ALTER TABLE audit_events RENAME TO audit_events_away")


def mend_chain_table(store: Store) -> None:
    store.conn.execute("ALTER TABLE audit_events_away RENAME TO audit_events")


async def test_concurrent_appends_are_all_durable_and_chained(store_at: Path | PgLocation) -> None:
    store = await off(Store.create, store_at, FakeClock())
    writer = AuditWriter(store)
    await writer.start()
    rows = await asyncio.gather(*(writer.append(Event("test.n", f"t{i}")) for i in range(500)))
    await writer.stop()
    assert sorted(r.seq for r in rows) == list(range(1, 501))
    assert writer.commits < 500  # events shared commits
    reopened = await off(Store.open, store_at, FakeClock())
    verdict = await off(reopened.verify_chain)
    assert verdict.ok and verdict.checked == 500


async def test_a_failed_commit_fails_every_waiter(store_at: Path | PgLocation) -> None:
    store = await off(Store.create, store_at, FakeClock())
    writer = AuditWriter(store)
    await writer.start()
    await off(break_chain_table, store)
    results = await asyncio.gather(
        *(writer.append(Event("test.n", "t")) for _ in range(5)), return_exceptions=True
    )
    await writer.stop()
    await off(mend_chain_table, store)
    assert all(isinstance(r, StoreError) for r in results)
    assert (await off(store.events)) == []


async def test_append_before_start_is_refused(store_at: Path | PgLocation) -> None:
    writer = AuditWriter(await off(Store.create, store_at, FakeClock()))
    with pytest.raises(StoreError, match="not running"):
        await writer.append(Event("test.n", "t"))


async def test_lazy_records_wait_for_an_urgent_one_and_share_its_commit(
    store_at: Path | PgLocation,
) -> None:
    writer = AuditWriter(await off(Store.create, store_at, FakeClock()), linger=60)
    await writer.start()
    lazy = [writer.submit(Event("test.lazy", f"t{i}"), urgent=False) for i in range(3)]
    await asyncio.sleep(0.05)  # the writer is lingering, not committing
    assert not any(f.done() for f in lazy) and writer.commits == 0
    urgent = await writer.append(Event("test.urgent", "t"))
    rows = await asyncio.gather(*lazy)
    await writer.stop()
    assert writer.commits == 1
    assert [r.seq for r in rows] + [urgent.seq] == [1, 2, 3, 4]


async def test_a_lone_lazy_record_is_committed_after_the_linger(
    store_at: Path | PgLocation,
) -> None:
    writer = AuditWriter(await off(Store.create, store_at, FakeClock()), linger=0.01)
    await writer.start()
    row = await writer.submit(Event("test.lazy", "t"), urgent=False)
    await writer.stop()
    assert row.seq == 1 and writer.commits == 1


async def test_stop_writes_what_is_lingering(store_at: Path | PgLocation) -> None:
    store = await off(Store.create, store_at, FakeClock())
    writer = AuditWriter(store, linger=3600)
    await writer.start()
    future = writer.submit(Event("test.lazy", "t"), urgent=False)
    await writer.stop()
    assert future.done() and future.result().seq == 1
    assert [e.kind for e in (await off(store.events))] == ["test.lazy"]
    with pytest.raises(StoreError, match="not running"):
        writer.submit(Event("test.late", "t"))


def store_with_a_session(store_at: Path | PgLocation, clock: FakeClock) -> Store:
    """A store where alice has session s1 open on the database target db."""
    store = Store.create(store_at, clock)
    store.add_user("alice", "engineer", None, b"seed", "admin")
    store.add_target(name="db", kind="postgres", host="127.0.0.1", port=5432, login="svc",
                     database="d", secret_sealed=b"x", actor="admin")  # fmt: skip
    store.open_session(session_id="s1", user="alice", target="db", grant_id=None,
                       protocol="postgres", client_addr="127.0.0.1")  # fmt: skip
    return store


def test_a_statement_started_and_ended_in_one_batch_is_one_row_bound_by_its_commit(
    store_at: Path | PgLocation,
) -> None:
    clock = FakeClock()
    store = store_with_a_session(store_at, clock)
    start = [QueryStart(f"s1:{n}", "s1", "alice", "db", clock.now(), "simple", "SELECT $1")
             for n in (1, 2)]  # fmt: skip
    end = [QueryEnd(f"s1:{n}", "s1", "alice", "db", clock.now(), n, f"SELECT {n}", None, 7)
           for n in (1, 2)]  # fmt: skip
    first = store.write_batch([start[0], start[1], end[0]])  # 1 ends here, 2 in the next batch
    second = store.write_batch([end[1]])
    assert first[0] == first[1] == first[2] and first[0].kind == "queries.committed"
    assert second[0].kind == "queries.committed" and second[0].seq == first[0].seq + 1
    assert [e.kind for e in store.events()][-2:] == ["queries.committed"] * 2
    bound, later = json.loads(first[0].detail), json.loads(second[0].detail)
    assert (bound["first"], len(bound["starts"]) // 32, len(bound["ends"]) // 48) == (1, 2, 1)
    assert bound["sessions"] == {"s1": ["alice", "db"]}
    assert (len(later["starts"]), int(later["ends"][:16], 16)) == (0, 2)  # row 2's outcome
    rows = sorted(store.queries(), key=lambda q: q.id)
    assert [(q.rows, q.tag, q.duration_us) for q in rows] == [
        (1, "SELECT 1", 7),
        (2, "SELECT 2", 7),
    ]
    assert store.verify_chain().ok


async def test_posted_records_are_written_and_their_loss_is_told_once_per_batch(
    store_at: Path | PgLocation,
) -> None:
    store = await off(Store.create, store_at, FakeClock())
    writer = AuditWriter(store, linger=0.01)
    await writer.start()
    told: list[str] = []
    writer.post(Event("test.posted", "t"), lambda: told.append("a"))
    await writer.append(Event("test.urgent", "t"))  # shares the posted record's commit
    assert [e.kind for e in (await off(store.events))] == [
        "test.posted",
        "test.urgent",
    ] and told == []
    await off(break_chain_table, store)
    lost_a, lost_b = (lambda: told.append("a")), (lambda: told.append("b"))
    for lost in (lost_a, lost_a, lost_b):
        writer.post(Event("test.posted", "t"), lost)
    with pytest.raises(StoreError):
        await writer.append(Event("test.urgent", "t"))
    await writer.stop()
    await off(mend_chain_table, store)
    assert sorted(told) == ["a", "b"]  # each session hears of the lost batch once
    with pytest.raises(StoreError, match="not running"):
        writer.post(Event("test.late", "t"), lost_a)


async def test_records_submitted_together_resolve_only_when_all_are_written(
    store_at: Path | PgLocation,
) -> None:
    store = await off(Store.create, store_at, FakeClock())
    writer = AuditWriter(store, max_batch=2)  # five records: three commits
    await writer.start()
    together = writer.submit_all([Event("test.n", f"t{i}") for i in range(5)])
    await together
    written = len(await off(store.events))
    await writer.stop()
    assert written == 5 and writer.commits == 3


async def test_records_submitted_together_fail_if_an_earlier_split_batch_fails(
    store_at: Path | PgLocation,
) -> None:
    store = await off(Store.create, store_at, FakeClock())
    writer = AuditWriter(store, max_batch=2)
    real_commit = writer.scribe.commit
    calls = 0

    async def first_commit_fails(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreError("disk full")
        return await real_commit(*args)

    writer.scribe.commit = first_commit_fails  # type: ignore[method-assign,assignment]
    await writer.start()
    together = writer.submit_all([Event("test.n", f"t{i}") for i in range(3)])
    with pytest.raises(StoreError):
        await together
    await writer.stop()
    assert calls == 2  # the last record's batch was written, yet the group failed
    assert [e.actor for e in (await off(store.events))] == ["t2"]


def test_the_store_refuses_a_statement_whose_text_was_not_redacted(
    store_at: Path | PgLocation,
) -> None:
    clock = FakeClock()
    store = Store.create(store_at, clock)
    raw = QueryStart("s1:1", "s1", "alice", "db", clock.now(), "simple", "SELECT 'x'", raw=True)
    with pytest.raises(StoreError, match="must be redacted"):
        store.write_batch([Event("test.n", "t"), raw])
    assert store.events() == []


async def test_the_writer_redacts_a_statement_the_door_passed_on_unparsed(
    store_at: Path | PgLocation,
) -> None:
    clock = FakeClock()
    store = await off(store_with_a_session, store_at, clock)
    writer = AuditWriter(store)
    await writer.start()
    sql = "UPDATE t SET pin = '4321' WHERE id = 7"
    await writer.append(QueryStart("s1:1", "s1", "alice", "db", clock.now(), "simple", sql,
                                   raw=True))  # fmt: skip
    await writer.stop()
    [row] = await off(store.queries)
    assert (row.sql, row.kind) == ("UPDATE t SET pin = $1 WHERE id = $2", "UPDATE")
    # the events' own words, not their MACs: a keyed hash's hex may hold "4321" by chance
    words = [(e.kind, e.actor, e.subject, e.detail) for e in (await off(store.events))]
    assert "4321" not in json.dumps(words)
