"""How many audit events per second the store writes with full durability (a figure, not a test).

Run: .venv/bin/python -m bench.audit_events [--seconds 3] [--dir /tmp]

Compares, on the same disk in one run:
  raw      plain SQLite INSERT, one fsync'd transaction per row (WAL, synchronous=FULL): the floor
  strict   Store.append_events, one event per transaction: chained (HMAC), head file written
  grouped  AuditWriter with 64 concurrent producers: events share commits (group commit)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bastion.audit import ChainKey, Event, Store, chain
from bastion.audit.writer import AuditWriter
from bastion.clock import SystemClock

KEY = ChainKey(os.urandom(32))  # the chain is keyed, as in a real bastion
EVENT = Event(
    "bench.query",
    "alice",
    subject="orders-prod",
    session_id="s-1",
    detail={"sql": "SELECT id, email FROM customers WHERE id = $1", "rows": 1},
)


def timed(seconds: float, step: Callable[[], int]) -> float:
    """Call step until `seconds` pass; returns events per second."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        count += step()
    return count / elapsed


def bench_raw(directory: Path, seconds: float) -> float:
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT)")

    def one() -> int:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (body) VALUES (?)", ("x" * 200,))
        conn.execute("COMMIT")
        return 1

    return timed(seconds, one)


def bench_strict(directory: Path, seconds: float) -> float:
    store = Store.create(directory / "strict.db", SystemClock(), KEY)

    def one() -> int:
        store.append_events([EVENT])
        return 1

    rate = timed(seconds, one)
    assert store.verify_chain().ok
    return rate


async def _grouped(directory: Path, seconds: float, producers: int) -> tuple[float, float]:
    store = Store.create(directory / "grouped.db", SystemClock(), KEY)
    writer = AuditWriter(store)
    await writer.start()
    deadline = time.perf_counter() + seconds
    counts = [0] * producers

    async def producer(index: int) -> None:
        while time.perf_counter() < deadline:
            await writer.append(EVENT)
            counts[index] += 1

    start = time.perf_counter()
    await asyncio.gather(*(producer(i) for i in range(producers)))
    elapsed = time.perf_counter() - start
    await writer.stop()
    assert store.verify_chain().ok
    total = sum(counts)
    return total / elapsed, total / max(writer.commits, 1)


def bench_link(count: int = 100_000) -> tuple[float, float]:
    """CPU cost of chaining one event (no disk): unkeyed SHA-256 vs keyed HMAC, in µs."""
    out = []
    for key in (None, KEY.secret):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for seq in range(count):
                chain.link(EVENT, seq, "2026-01-05T09:00:00.000000Z", chain.GENESIS, key)
            best = min(best, time.perf_counter() - start)
        out.append(best / count * 1e6)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default: tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        raw = bench_raw(directory, args.seconds)
        strict = bench_strict(directory, args.seconds)
        grouped, per_commit = asyncio.run(_grouped(directory, args.seconds, args.producers))
    unkeyed, keyed = bench_link()
    print(f"audit events/s, full durability (WAL, synchronous=FULL), {args.seconds:g}s each:")
    print(f"  raw sqlite insert, 1 per commit   {raw:10,.0f}/s   1.00x")
    print(f"  strict: 1 chained event per commit{strict:10,.0f}/s   {strict / raw:.2f}x raw")
    print(
        f"  grouped: {args.producers} producers, group commit"
        f"{grouped:8,.0f}/s   {grouped / raw:.2f}x raw  ({per_commit:.1f} events/commit)"
    )
    print(f"  chaining one event (CPU only): SHA-256 {unkeyed:.1f} us, HMAC-SHA-256 {keyed:.1f} us")


if __name__ == "__main__":
    main()
