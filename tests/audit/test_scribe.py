"""The audit writer's process: frames survive any cut, a killed process loses nothing that was
reported written and is replaced, signals for the process group leave it to the parent."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.audit import Event, Store
from bastion.audit.scribe import Frames, encode
from bastion.audit.writer import AuditWriter
from bastion.clock import FakeClock, iso
from bastion.errors import StoreError

values = st.recursive(
    st.none() | st.integers() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner),
    max_leaves=12,
)


@given(st.lists(values, max_size=6), st.data())
def test_frames_come_out_whole_however_the_stream_is_cut(
    items: list[object], data: st.DataObject
) -> None:
    stream = b"".join(encode(item) for item in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    frames, got = Frames(), []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += frames.feed(stream[start:end])
    assert got == items and frames.pending == 0


def test_a_frame_longer_than_any_batch_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(ValueError, match="too large"):
        Frames().feed(b"\xff\xff\xff\xff" + b"x")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_events_carry_the_parents_clock_and_stop_ends_the_process(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.advance(timedelta(days=3))
    writer = AuditWriter(Store.create(tmp_path / "b.db", clock))
    await writer.start()
    pid = writer.scribe.pid
    row = await writer.append(Event("test.n", "t"))
    await writer.stop()
    assert row.at == iso(clock.now())
    assert pid is not None and gone(pid)


async def test_a_writer_killed_mid_commit_fails_that_batch_and_the_next_gets_a_new_process(
    tmp_path: Path,
) -> None:
    store = Store.create(tmp_path / "b.db", FakeClock())
    writer = AuditWriter(store)
    await writer.start()
    first = await writer.append(Event("test.before", "t"))
    pid = writer.scribe.pid
    assert pid is not None
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer's next commit waits for this lock
    lost = asyncio.create_task(writer.append(Event("test.lost", "t")))
    await asyncio.sleep(0.2)
    assert not lost.done()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(StoreError, match="audit writer process ended"):
        await lost
    blocker.close()
    after = await writer.append(Event("test.after", "t"))
    await writer.stop()
    assert writer.scribe.started == 2
    assert [e.kind for e in store.events()] == ["test.before", "test.after"]
    assert (first.seq, after.seq) == (1, 2)
    assert store.verify_chain().ok


async def test_ctrl_c_for_the_process_group_leaves_the_flush_to_the_parent(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "b.db", FakeClock())
    writer = AuditWriter(store, linger=3600)
    await writer.start()
    pid = writer.scribe.pid
    assert pid is not None
    await writer.append(Event("test.first", "t"))  # the process is up and serving
    for sig in (signal.SIGINT, signal.SIGTERM):
        os.kill(pid, sig)
    lingering = writer.submit(Event("test.lingering", "t"), urgent=False)
    await asyncio.sleep(0.1)
    assert not gone(pid)
    await writer.stop()  # the parent flushes what lingers, then the process ends
    assert lingering.result().seq == 2
    assert [e.kind for e in store.events()] == ["test.first", "test.lingering"]
