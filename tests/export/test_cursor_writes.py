"""The feed's cursor writes: while events flow, at most one every WRITE_EVERY seconds (a
store write each batch took the door's throughput down, bench/export.py); at once when the
feed is idle and when it stops; and a node that dies before its write sends those events
again, which the file sink's own dedupe keeps out of its file."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bastion.audit import ChainKey, Event, Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config_export import ExportSink
from bastion.export.sinks import SinkError
from bastion.export.worker import WRITE_EVERY, Exporter

KEY = ChainKey(bytes(range(32)))


class Here:
    """Core.run's stand-in: the store call on a thread (never on the loop)."""

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


async def cursor(store: Store) -> int:
    return int(await asyncio.to_thread(store.export_cursor, "trail"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))


@pytest.fixture
def store(store_at: Path | PgLocation, clock: FakeClock) -> Store:
    made = Store.create(store_at, clock, KEY)
    if made.location is not None:
        made.store_clock = clock
    return made


async def more(store: Store, count: int) -> int:
    events = [Event("test.event", "t", str(n)) for n in range(count)]
    await asyncio.to_thread(store.append_events, events)
    return int((await asyncio.to_thread(store.chain_head))[0])


def seqs(path: Path) -> list[int]:
    return [json.loads(line)["seq"] for line in path.read_bytes().splitlines()]


async def exporter(store: Store, clock: FakeClock, path: Path) -> Exporter:
    sink = ExportSink("trail", "file", path=path)
    made = Exporter((sink,), store, Here(), "node-a", clock)
    await asyncio.to_thread(store.export_sinks_configured, [(sink.name, sink.kind, sink.selection)])
    return made


async def head_of(store: Store) -> int:
    return int((await asyncio.to_thread(store.chain_head))[0])


def test_the_cursor_is_written_every_few_seconds_when_idle_and_at_the_stop(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"

    async def go() -> None:
        feed = await exporter(store, clock, path)
        worker = feed.workers[0]
        await more(store, 5)
        await worker.step()  # the first batch (and the lease's event): written at once
        written = await head_of(store)
        assert await cursor(store) == written == worker.delivered_seq
        for _ in range(3):  # events flowing within WRITE_EVERY: delivered, not yet written
            head = await more(store, 4)
            await worker.step()
            assert worker.delivered_seq == head and seqs(path)[-1] == head
            assert await cursor(store) == written
        clock.advance(WRITE_EVERY)
        head = await more(store, 2)
        await worker.step()
        assert await cursor(store) == head
        head = await more(store, 3)
        await worker.step()
        assert await cursor(store) < head
        await worker.step()  # nothing new: idle, so written at once
        assert await cursor(store) == head
        head = await more(store, 3)
        await worker.step()
        assert await cursor(store) < head
        await feed.close()  # the stop writes it
        assert await cursor(store) == head

    asyncio.run(go())
    assert seqs(path) == list(range(1, store.chain_head()[0] + 1))


def test_a_node_that_dies_before_its_write_repeats_nothing_in_the_file(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"

    async def go() -> None:
        first = (await exporter(store, clock, path)).workers[0]
        await more(store, 5)
        await first.step()
        written = await head_of(store)
        head = await more(store, 5)
        await first.step()  # delivered to the file; the node dies before its cursor write
        assert await cursor(store) == written < head == seqs(path)[-1]
        clock.advance(first.lease_ttl)  # its lease runs out
        feed = await exporter(store, clock, path)
        second = feed.workers[0]
        run = asyncio.create_task(second.run())
        while await cursor(store) < head:
            await asyncio.sleep(0.01)
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await feed.close()

    asyncio.run(go())
    assert seqs(path) == list(range(1, store.chain_head()[0] + 1))  # each line once, in order


def test_what_a_sink_took_before_it_failed_is_written_at_the_failure(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    """A sink down for hours does not leave the store's cursor behind what it took."""
    path = tmp_path / "audit.jsonl"

    async def go() -> None:
        worker = (await exporter(store, clock, path)).workers[0]
        await more(store, 5)
        await worker.step()
        taken = await more(store, 5)
        await worker.step()
        assert await cursor(store) < taken == worker.delivered_seq
        path.unlink()
        path.mkdir()  # the sink fails: the path is no longer a file
        await more(store, 2)
        with pytest.raises(SinkError):
            await worker.step()
        assert await cursor(store) == taken

    asyncio.run(go())
