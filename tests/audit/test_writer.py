"""Group commit: concurrent appends share commits, stay chained, and failures reach callers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bastion.audit import Event, Store
from bastion.audit.writer import AuditWriter
from bastion.clock import FakeClock
from bastion.errors import StoreError


async def test_concurrent_appends_are_all_durable_and_chained(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "b.db", FakeClock())
    writer = AuditWriter(store)
    await writer.start()
    rows = await asyncio.gather(*(writer.append(Event("test.n", f"t{i}")) for i in range(500)))
    await writer.stop()
    assert sorted(r.seq for r in rows) == list(range(1, 501))
    assert writer.commits < 500  # events shared commits
    reopened = Store.open(tmp_path / "b.db", FakeClock())
    verdict = reopened.verify_chain()
    assert verdict.ok and verdict.checked == 500


async def test_a_failed_commit_fails_every_waiter(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "b.db", FakeClock())
    store.conn.execute("PRAGMA query_only=ON")
    writer = AuditWriter(store)
    await writer.start()
    results = await asyncio.gather(
        *(writer.append(Event("test.n", "t")) for _ in range(5)), return_exceptions=True
    )
    await writer.stop()
    assert all(isinstance(r, StoreError) for r in results)
    store.conn.execute("PRAGMA query_only=OFF")
    assert store.events() == []


async def test_append_before_start_is_refused(tmp_path: Path) -> None:
    writer = AuditWriter(Store.create(tmp_path / "b.db", FakeClock()))
    with pytest.raises(StoreError, match="not running"):
        await writer.append(Event("test.n", "t"))
