"""The audit writer's process: frames survive any cut, a killed process loses nothing that was
reported written and is replaced, signals for the process group leave it to the parent."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.audit import ChainKey, Event, Store
from bastion.audit.location import PgLocation
from bastion.audit.scribe import Frames, Scribe, encode
from bastion.audit.writer import AuditWriter
from bastion.clock import FakeClock, iso
from bastion.errors import StoreError
from tests.harness import Bastion
from tests.storeadmin import hold_write_lock

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
    """The process has exited (a zombie waiting for whoever adopted it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


async def test_events_carry_the_parents_clock_and_stop_ends_the_process(
    store_at: Path | PgLocation,
) -> None:
    clock = FakeClock()
    clock.advance(timedelta(days=3))
    store = await asyncio.to_thread(Store.create, store_at, clock)  # never on the loop
    writer = AuditWriter(store)
    await writer.start()
    pid = writer.scribe.pid
    row = await writer.append(Event("test.n", "t"))
    await writer.stop()
    assert row.at == iso(clock.now())
    assert pid is not None and gone(pid)
    await asyncio.to_thread(store.close)


async def test_a_writer_killed_mid_commit_fails_that_batch_and_the_next_gets_a_new_process(
    store_at: Path | PgLocation, request: pytest.FixtureRequest
) -> None:
    store = await asyncio.to_thread(Store.create, store_at, FakeClock())
    writer = AuditWriter(store)
    await writer.start()
    first = await writer.append(Event("test.before", "t"))
    pid = writer.scribe.pid
    assert pid is not None
    blocker = hold_write_lock(store, request)  # the writer's next commit waits for this lock
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
    assert [e.kind for e in (await asyncio.to_thread(store.events))] == [
        "test.before",
        "test.after",
    ]
    assert (first.seq, after.seq) == (1, 2)
    assert (await asyncio.to_thread(store.verify_chain)).ok
    await asyncio.to_thread(store.close)


async def test_ctrl_c_for_the_process_group_leaves_the_flush_to_the_parent(
    store_at: Path | PgLocation,
) -> None:
    store = await asyncio.to_thread(Store.create, store_at, FakeClock())
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
    assert [e.kind for e in (await asyncio.to_thread(store.events))] == [
        "test.first",
        "test.lingering",
    ]
    await asyncio.to_thread(store.close)


async def test_a_writer_process_that_cannot_open_the_store_stops_the_start(
    tmp_path: Path,
) -> None:
    scribe = Scribe(tmp_path / "gone.db")
    with pytest.raises(StoreError, match=r"could not start: the store .* does not exist"):
        await scribe.start()
    assert not (tmp_path / "gone.db").exists() and scribe.pid is None


async def test_a_writer_process_on_an_empty_postgresql_store_stops_the_start(
    pg_store_at: PgLocation,
) -> None:
    scribe = Scribe(pg_store_at)
    with pytest.raises(StoreError, match=r"could not start: the store at .* has no tables"):
        await scribe.start()
    assert scribe.pid is None


async def test_the_scribe_gets_the_store_and_its_password_only_over_its_pair(
    store_at: Path | PgLocation,
) -> None:
    """Its command line names no store, its environment no password: both come over the pair,
    with the chain key."""
    key = ChainKey(os.urandom(32))
    store = await asyncio.to_thread(Store.create, store_at, FakeClock(), key)
    writer = AuditWriter(store)
    await writer.start()
    try:
        await writer.append(Event("test.n", "tester"))
        pid = writer.scribe.pid
        assert pid is not None and pid != os.getpid()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        seen = argv + Path(f"/proc/{pid}/environ").read_bytes()
        assert key.secret not in seen and key.secret.hex().encode() not in seen
        if isinstance(store_at, PgLocation):
            password = store_at.handoff()[1]
            assert password is not None and password.encode() not in seen
            assert store_at.url.encode() not in argv
        assert str(store.where).encode() not in argv
    finally:
        await writer.stop()
    assert (await asyncio.to_thread(store.verify_chain)).ok
    await asyncio.to_thread(store.close)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(stat[1]) == pid:
                    found.append(int(entry.name))
    return found


def test_the_writer_process_does_not_outlive_a_killed_bastion(tmp_path: Path) -> None:
    b = Bastion(tmp_path / "bastion")
    b.release()
    proc = b.serve_process()
    try:
        [scribe] = children(proc.pid)
        assert "bastion.audit.scribe" in Path(f"/proc/{scribe}/cmdline").read_text()
        proc.kill()  # no flush, no goodbye: the pair's other end just closes
        proc.wait(10)
        deadline = time.monotonic() + 10
        while not gone(scribe) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gone(scribe)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
