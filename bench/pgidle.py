"""Idle PostgreSQL sessions through the served bastion and its RSS per session (for bench.pg).

A fresh `bastion serve` process; a few sessions opened and closed first (imports, the scribe,
caches warm), then the bastion's RSS (VmRSS) and its child processes' (the audit scribe) read
from /proc; then N asyncpg connections from this one process, logging in with one-time
tickets, at most CONCURRENCY logging in at once, each running `SELECT 1` and then idling; a
second settles the audit writes; RSS read again while all N are open. The upstream PostgreSQL
backends (one per session) are other processes and not counted; their number is checked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from bench._common import ServedBastion, one_use_ticket, rss_bytes, run_loop
from tests.harness import Bastion
from tests.realpg import PgCluster, PgDatabase
from tests.realssh import wait_for_banner

USER = "idler"  # a user of its own with a write grant, whatever grant the other users have
# Logins at once: below the door's default limit of 10 logins in progress per address
# (postgres.max_unauthenticated_per_source; every bench connection comes from 127.0.0.1).
CONCURRENCY = 8
WARM = 16  # sessions opened and closed before the first reading
SETTLE = 1.0  # seconds for the audit writes of the last logins before a reading
KIB = 1024
TARGET_KIB = 50


@dataclass
class Idle:
    """One measurement: RSS in bytes, before and after, of the bastion and of its children."""

    sessions: int
    seconds: float  # to open them all
    bastion: tuple[int, int]
    children: dict[str, tuple[int, int]]  # "scribe (pid N)": (before, after)
    backends: int  # upstream backends the sessions added
    nofile: str  # the served bastion's open-files limit (soft, hard)
    durability: str


class Backends:
    """PostgreSQL backends on one database started since mark() (pg_stat_activity)."""

    def __init__(self, cluster: PgCluster, database: str) -> None:
        self.cluster, self.database = cluster, database
        self.since: datetime | None = None

    def mark(self) -> None:
        self.since = self.cluster.sql("SELECT clock_timestamp()")[0][0]

    def count(self) -> int:
        found = self.cluster.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_start >= %s",
            params=[self.database, self.since],
        )
        return int(found[0][0])


def mint(b: Bastion, target: str, sessions: int, password: str) -> list[str]:
    """Tickets for USER (added here, with a write grant) on `target`: WARM + `sessions`."""
    b.add_user(USER, key=False, password=password)
    b.grant(USER, target, mode="write")
    return [one_use_ticket(b.core.identity, USER, target) for _ in range(WARM + sessions)]


def children(pid: int) -> dict[int, str]:
    """The direct children of `pid` (from /proc), each named by what it runs."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) != pid:
                continue
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        name = "scribe" if b"bastion.audit.scribe" in argv else argv[0].decode(errors="replace")
        found[int(stat.parent.name)] = name
    return found


def open_files_limit(pid: int, sessions: int) -> str:
    """The process's open-files limit; RuntimeError if it is too low for `sessions` (a
    client socket and an upstream socket each)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            if soft != "unlimited" and int(soft) < 2 * sessions + 100:
                raise RuntimeError(f"the bastion may open {soft} files: too few for {sessions}"
                                   " sessions (raise the hard limit, or --idle fewer)")  # fmt: skip
            return f"{soft} soft, {hard} hard"
    raise RuntimeError(f"no open-files limit in /proc/{pid}/limits")


async def _open(via: PgDatabase, tickets: Sequence[str]) -> list[asyncpg.Connection]:
    """A session per ticket, each having run SELECT 1; all or none (RuntimeError)."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(ticket: str) -> asyncpg.Connection:
        async with gate:
            conn = await asyncpg.connect(host=via.host, port=via.port, user=USER,
                                         password=ticket, database=via.database, ssl=False,
                                         timeout=60, statement_cache_size=0)  # fmt: skip
        try:
            await conn.execute("SELECT 1")  # no arguments: the simple protocol
        except BaseException:
            await conn.close()
            raise
        return conn

    found = await asyncio.gather(*(one(t) for t in tickets), return_exceptions=True)
    conns = [c for c in found if isinstance(c, asyncpg.Connection)]
    failed = [e for e in found if isinstance(e, BaseException)]
    if failed:
        await _close(conns)
        raise RuntimeError(f"{len(failed)} of {len(tickets)} sessions failed: {failed[0]!r}")
    return conns


async def _close(conns: Sequence[asyncpg.Connection]) -> None:
    await asyncio.gather(*(c.close(timeout=30) for c in conns), return_exceptions=True)


async def _measure(
    via: PgDatabase, pid: int, tickets: list[str], backends: Backends
) -> tuple[float, tuple[int, int], dict[str, tuple[int, int]], int]:
    await _close(await _open(via, tickets[:WARM]))
    await asyncio.sleep(SETTLE)
    kids = children(pid)
    before, kids_before = rss_bytes(pid), {k: rss_bytes(k) for k in kids}
    backends.mark()
    began = time.monotonic()
    conns = await _open(via, tickets[WARM:])
    seconds = time.monotonic() - began
    try:
        await asyncio.sleep(SETTLE)
        after = rss_bytes(pid)
        named = {f"{kids[k]} (pid {k})": (b, rss_bytes(k)) for k, b in kids_before.items()}
        upstream = backends.count()
    finally:
        await _close(conns)
    return seconds, (before, after), named, upstream


def measure(
    b: Bastion, log: Path, via: PgDatabase, tickets: list[str], cluster: PgCluster
) -> tuple[Idle, ServedBastion]:
    """Serve the bastion `b` afresh and hold len(tickets) - WARM sessions open through it
    at `via`; the served (stopped) process is returned for its log."""
    config = b.home / "bastion.toml"
    durability = "batched" if '"batched"' in config.read_text() else "strict"
    served = ServedBastion(config, log).start()
    try:
        wait_for_banner("127.0.0.1", b.port, timeout=30, alive=served.alive)
        nofile = open_files_limit(served.pid, len(tickets) - WARM)
        backends = Backends(cluster, via.database)
        seconds, rss, kids, upstream = run_loop(_measure(via, served.pid, tickets, backends))
    finally:
        served.stop()
    idle = Idle(len(tickets) - WARM, seconds, rss, kids, upstream, nofile, durability)
    return idle, served


def report(idle: Idle) -> None:
    n = idle.sessions
    print(
        f"\n{n:,} idle sessions through the bastion (served afresh, audit {idle.durability};"
        f" each logged in by ticket, ran SELECT 1, then idled; opened in {idle.seconds:.1f} s,"
        f" {CONCURRENCY} logging in at once):"
    )
    rows = {"bastion process": idle.bastion, **idle.children}
    for name, (before, after) in rows.items():
        note = f"(target <= {TARGET_KIB} KiB)" if name == "bastion process" else "(separately)"
        print(
            f"  {name:<22} RSS before {before / KIB:9,.0f} KiB   after {after / KIB:9,.0f} KiB"
            f"   (after-before)/sessions {(after - before) / n / KIB:6.1f} KiB {note}"
        )
    print(
        f"  the bastion's open-files limit: {idle.nofile}; upstream PostgreSQL backends the"
        f" sessions added: {idle.backends} (other processes: not counted in any RSS here)"
    )
