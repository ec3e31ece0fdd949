"""How many audit events per second the store writes with full durability (a figure, not a test).

Run: .venv/bin/python -m bench.audit_events [--seconds 3] [--store both] [--dir /tmp]

The store as a SQLite file beside the store on PostgreSQL 15 (a private cluster started for
the run, on the same disk, with fsync, full_page_writes and synchronous_commit on: every event
on disk before it is acknowledged, as SQLite's synchronous=FULL), in one run:
  raw      a plain INSERT, one durable commit per row: the engine's floor
  strict   Store.append_events, one event per transaction: chained (HMAC), head file written
  grouped  AuditWriter with 64 concurrent producers: events share commits (group commit in
           the scribe, the writer's own process)
  nodes    3 AuditWriters (3 stores, 3 scribe processes: the several-node case) with the same
           64 producers spread over them, appending to one chain at once (on PostgreSQL they
           take turns on the chain lock; on SQLite, on the file's write lock)
After each run the chain is verified (keyed MACs, the head file): a broken chain, or a count
of events that is not the number acknowledged, is printed, never hidden.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bastion.audit import ChainKey, Event, Store, chain
from bastion.audit.location import PgLocation
from bastion.audit.writer import AuditWriter
from bastion.clock import SystemClock
from bastion.errors import StoreError

KEY = ChainKey(os.urandom(32))  # the chain is keyed, as in a real bastion
EVENT = Event(
    "bench.query",
    "alice",
    subject="orders-prod",
    session_id="s-1",
    detail={"sql": "SELECT id, email FROM customers WHERE id = $1", "rows": 1},
)
BODY = "x" * 200
Where = Path | PgLocation
DURABLE = ["fsync = on", "full_page_writes = on", "synchronous_commit = on"]


@dataclass
class Run:
    """One measure: events acknowledged per second, events per commit, what verify said."""

    rate: float
    per_commit: float = 1.0
    chain: str = ""  # "" for raw (no chain); "ok (N events)" or what is wrong
    failed: int = 0  # appends that raised StoreError


class Places:
    """Fresh store places of one backend, and the place of a store as another node sees it."""

    label = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def fresh(self, name: str) -> Where:
        return self.directory / f"{name}.db"

    def as_node(self, where: Where, node: str) -> Where:
        """The same store for node `node`: on PostgreSQL with a head file of its own."""
        if isinstance(where, PgLocation):
            assert where.head_file is not None
            url, password, schema, head = where.handoff()
            assert head is not None
            return PgLocation.handed(
                url, password, schema, head.with_name(f"{head.stem}-{node}.head")
            )
        return where


class PgPlaces(Places):
    """Each fresh place is a new database, owned by a role that is not a superuser."""

    label = "postgresql"

    def __init__(self, directory: Path, database: Callable[[str], str], template: PgLocation):
        """`database(name)` makes an empty database and returns its name; `template` is a
        location on the cluster (role, password file) whose database is replaced."""
        super().__init__(directory)
        self._database = database
        self._template = template

    def fresh(self, name: str) -> Where:
        database = self._database(name)
        base = self._template.url.rsplit("/", 1)[0]
        return PgLocation(f"{base}/{database}", password_file=self._template.password_file,
                          head_file=self.directory / f"{database}.head")  # fmt: skip


def timed(seconds: float, step: Callable[[], int]) -> float:
    """Call step until `seconds` pass; returns events per second."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        count += step()
    return count / elapsed


def verdict(store: Store, expected: int) -> str:
    """'ok (N events)', or what is wrong with the chain: never an exception."""
    try:
        found = store.verify_chain()
    except StoreError as exc:
        return f"BROKEN: verify failed: {exc}"
    if not found.ok:
        return f"BROKEN at seq {found.bad_seq}: {found.problem}"
    if found.checked != expected:
        return f"BROKEN: {found.checked} events in the chain, {expected} acknowledged"
    return f"ok ({found.checked:,} events)"


def bench_raw(where: Where, seconds: float) -> Run:
    if isinstance(where, PgLocation):
        return Run(asyncio.run(_raw_pg(where, seconds)))
    conn = sqlite3.connect(where, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT)")

    def one() -> int:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (body) VALUES (?)", (BODY,))
        conn.execute("COMMIT")
        return 1

    try:
        return Run(timed(seconds, one))
    finally:
        conn.close()


async def _raw_pg(where: PgLocation, seconds: float) -> float:
    """asyncpg directly, no store: one INSERT per round trip, each its own durable commit."""
    url, password, _, _ = where.handoff()
    conn = await asyncpg.connect(url, password=password,
                                 server_settings={"synchronous_commit": "on"})  # fmt: skip
    try:
        await conn.execute("CREATE TABLE t (seq bigserial PRIMARY KEY, body text)")
        insert = await conn.prepare("INSERT INTO t (body) VALUES ($1)")
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            await insert.fetch(BODY)
            count += 1
        return count / elapsed
    finally:
        await conn.close()


def bench_strict(where: Where, seconds: float) -> Run:
    store = Store.create(where, SystemClock(), KEY)
    written = 0

    def one() -> int:
        nonlocal written
        store.append_events([EVENT])
        written += 1
        return 1

    try:
        rate = timed(seconds, one)
        return Run(rate, 1.0, verdict(store, written))
    finally:
        store.close()


def bench_grouped(places: Places, where: Where, seconds: float, producers: int,
                  writers: int) -> Run:  # fmt: skip
    """`producers` appending at once through `writers` AuditWriters (each its own store and
    scribe: node a, b, c, ...) onto one chain. The stores are opened and verified here, off
    the event loop (a store on PostgreSQL refuses to block one)."""
    nodes = [chr(ord("a") + n) for n in range(writers)]
    stores = [Store.create(where, SystemClock(), KEY, nodes[0])]
    for node in nodes[1:]:
        stores.append(Store.open(places.as_node(where, node), SystemClock(), KEY, node))
    try:
        total, elapsed, commits, failed = asyncio.run(_write_at_once(stores, seconds, producers))
        return Run(total / elapsed, total / max(commits, 1), verdict(stores[0], total), failed)
    finally:
        for store in stores:
            store.close()


async def _write_at_once(stores: list[Store], seconds: float, producers: int
                         ) -> tuple[int, float, int, int]:  # fmt: skip
    """(events acknowledged, seconds taken, commits, appends failed)."""
    started: list[AuditWriter] = []
    try:
        for store in stores:
            writer = AuditWriter(store)
            await writer.start()
            started.append(writer)
        start = time.perf_counter()
        counts, failed = await _produce(started, seconds, producers)
        elapsed = time.perf_counter() - start
    finally:
        for writer in started:
            await writer.stop()
    return sum(counts), elapsed, sum(w.commits for w in started), failed


async def _produce(writers: list[AuditWriter], seconds: float, producers: int
                   ) -> tuple[list[int], int]:  # fmt: skip
    """Each producer appends through its writer until `seconds` pass: the events each had
    acknowledged, and how many appends failed."""
    deadline = time.perf_counter() + seconds
    counts, failed = [0] * producers, 0

    async def producer(index: int) -> None:
        nonlocal failed
        writer = writers[index % len(writers)]
        while time.perf_counter() < deadline:
            try:
                await writer.append(EVENT)
            except StoreError:
                failed += 1
                continue
            counts[index] += 1

    await asyncio.gather(*(producer(i) for i in range(producers)))
    return counts, failed


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


def measure(places: Places, seconds: float, producers: int, writers: int) -> dict[str, Run]:
    """Every measure on one backend, each on a fresh store."""
    return {
        "raw": bench_raw(places.fresh("raw"), seconds),
        "strict": bench_strict(places.fresh("strict"), seconds),
        "grouped": bench_grouped(places, places.fresh("grouped"), seconds, producers, 1),
        "nodes": bench_grouped(places, places.fresh("nodes"), seconds, producers, writers),
    }


@contextmanager
def postgresql_places(directory: Path) -> Iterator[PgPlaces]:
    """A private PostgreSQL 15 cluster, durable (fsync on), and a store role on it."""
    from tests.realpg import PgCluster, random_password  # noqa: PLC0415 - only when wanted

    cluster = PgCluster(extra_config=DURABLE).start()
    try:
        role, password = "bench_store", random_password()
        cluster.create_role(role, password)
        secret = directory / "store.password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        made: list[str] = []

        def database(name: str) -> str:
            full = f"bench_{name}_{secrets.token_hex(3)}"
            cluster.create_database(full, role)
            made.append(full)
            return full

        url = f"postgresql://{role}@{cluster.host}:{cluster.port}/postgres"
        yield PgPlaces(directory, database, PgLocation(url, password_file=secret))
    finally:
        cluster.close()


def report(found: dict[str, dict[str, Run]], args: argparse.Namespace) -> None:
    names = list(found)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"audit events/s, full durability (sqlite: WAL, synchronous=FULL; postgresql 15:"
          f" fsync, synchronous_commit on), {args.seconds:g}s each,"
          f" load average {load}:")  # fmt: skip
    rows = {
        "raw": "raw insert, 1 per commit",
        "strict": "strict: 1 chained event/commit",
        "grouped": f"grouped: {args.producers} producers, 1 writer",
        "nodes": f"nodes: {args.producers} producers, {args.writers} writers",
    }
    head = "".join(f"{n:>12}{'':10}" for n in names)
    print(f"  {'':<36}{head}" + ("   pg/sqlite" if len(names) == 2 else ""))
    for key, label in rows.items():
        cells = ""
        for name in names:
            run = found[name][key]
            per = f" ({run.per_commit:5.1f}/c)" if key in ("grouped", "nodes") else " " * 10
            cells += f"{run.rate:>10,.0f}/s{per}"
        ratio = ""
        if len(names) == 2:
            ratio = f"{found[names[1]][key].rate / found[names[0]][key].rate:>11.2f}x"
        print(f"  {label:<36}{cells}{ratio}")
    for name in names:
        for key, run in found[name].items():
            if run.chain:
                fails = f", {run.failed} appends failed" if run.failed else ""
                print(f"  chain after {name} {key}: {run.chain}{fails}")
    unkeyed, keyed = bench_link(args.links)
    print(f"  chaining one event (CPU only): SHA-256 {unkeyed:.1f} us, HMAC-SHA-256 {keyed:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--writers", type=int, default=3, help="writers (nodes) at once")
    parser.add_argument("--store", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--links", type=int, default=100_000, help="events chained for CPU")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default: tmp)")
    args = parser.parse_args()
    found: dict[str, dict[str, Run]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        if args.store in ("both", "sqlite"):
            found["sqlite"] = measure(Places(directory), args.seconds, args.producers, args.writers)
        if args.store in ("both", "postgresql"):
            with postgresql_places(directory) as places:
                found["postgresql"] = measure(places, args.seconds, args.producers, args.writers)
    report(found, args)


if __name__ == "__main__":
    main()
