"""The export feed's own CPU per event, measured alone (bench/export.py): a sink's worker run
in this process over a store's whole chain until its cursor reaches the head."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from bastion.audit import ChainKey, Store
from bastion.audit.location import PgLocation
from bastion.clock import SystemClock
from bastion.config_export import ExportSink
from bastion.export.worker import Exporter
from bench._common import run_loop


class _Here:
    """Core.run's stand-in: the store call made at once, on the loop's thread."""

    async def run(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


def thread_seconds(tid: int | None) -> float:
    """CPU seconds a thread of this process has used (0.0 for None)."""
    if tid is None:
        return 0.0
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def feed_alone(
    where: Path | PgLocation, key: ChainKey, sink: ExportSink, receiver: int | None = None
) -> tuple[int, float]:
    """(events, CPU microseconds per event) for `sink` taking the whole chain of the store at
    `where`: this process's CPU, less the receiver's thread's (`receiver`, its native id)."""
    store = Store.open(where, SystemClock(), key)
    try:
        head = store.chain_head()[0]
        exporter = Exporter((sink,), store, _Here(), "bench", SystemClock())

        async def go() -> float:
            task = asyncio.ensure_future(exporter.run())
            start, theirs = time.process_time(), thread_seconds(receiver)
            while store.export_cursor(sink.name) < head:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            used = time.process_time() - start - (thread_seconds(receiver) - theirs)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await exporter.close()
            return used

        used = run_loop(go())
    finally:
        store.close()
    return head, used / head * 1e6 if head else 0.0
