"""How long the query-log check of the weekly review and `audit verify` takes (a figure).

Run: .venv/bin/python -m bench.qlog [--statements 1000000] [--store both] [--dir /tmp]

Fills a SQLite store with bench/reports.py's week, copies it to a private PostgreSQL 15
(`store copy`), then times on each store, as the median of three runs, the check of every
statement row against its commit events (bastion/audit/qlogbind.py): the week's, as the review
runs it, and the whole log's, as `audit verify` runs it. Both find nothing on this store.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bastion.audit import ChainKey, Store
from bastion.audit.location import PgLocation
from bastion.audit.qlogbind import EVERYTHING, check
from bastion.clock import SystemClock, iso
from bastion.config import load_config
from bastion.identity.sealing import SecretBox
from bastion.reports.querycheck import MARGIN
from bastion.reports.week import parse_week
from bench.audit_events import postgresql_places
from bench.reports import WEEK, fill

RUNS = 3


def timed(call: Callable[[], object]) -> tuple[float, float, object]:
    """The median wall time and this process's CPU time of RUNS calls, and what one gave."""
    runs, cpu, out = [], [], None
    for _ in range(RUNS):
        started, used = time.perf_counter(), time.process_time()
        out = call()
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    return statistics.median(runs), statistics.median(cpu), out


def measure(store: Store) -> dict[str, tuple[float, float, object]]:
    week = parse_week(WEEK, "UTC")
    span = iso(week.start), iso(week.end)
    wide = iso(week.start - MARGIN), iso(week.end + MARGIN)
    return {
        "the week (review)": timed(lambda: check(store.reader, store.path, span, wide)),
        "everything (audit verify)": timed(
            lambda: check(store.reader, store.path, EVERYTHING, EVERYTHING)
        ),
    }


def profile(store: Store) -> None:
    """One check of the week under cProfile: the calls that took the most time."""
    import cProfile  # noqa: PLC0415 - only when asked
    import pstats  # noqa: PLC0415

    week = parse_week(WEEK, "UTC")
    span = iso(week.start), iso(week.end)
    wide = iso(week.start - MARGIN), iso(week.end + MARGIN)
    with cProfile.Profile() as prof:
        check(store.reader, store.path, span, wide)
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def to_postgresql(store: Store, places: object) -> PgLocation:
    from bastion.audit.copying import copy_store  # noqa: PLC0415 - asyncpg, PostgreSQL only

    where = places.fresh("qlog")  # type: ignore[attr-defined]
    assert isinstance(where, PgLocation)
    copy_store(store, where, store.chain_key, store.chain_head(), node="bench")
    return where


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.qlog",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--statements", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go")
    parser.add_argument("--profile", action="store_true", help="where PostgreSQL's time goes")
    args = parser.parse_args()
    found: dict[str, dict[str, tuple[float, float, object]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-qlog-", dir=args.dir) as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        fill(root, args.sessions, args.statements)
        print(f"filled {args.sessions:,} sessions, {args.statements:,} statements"
              f" in {time.perf_counter() - started:.0f} s")  # fmt: skip
        config = load_config(root / "bastion.toml")
        key = ChainKey.of(SecretBox(config.paths.secrets_key.read_bytes()))
        store = Store.open(config.paths.store, SystemClock(), key)
        if args.store in ("both", "sqlite"):
            found["sqlite"] = measure(store)
        if args.store in ("both", "postgresql"):
            with postgresql_places(root) as places:
                started = time.perf_counter()
                where = to_postgresql(store, places)
                print(f"copied to postgresql in {time.perf_counter() - started:.0f} s")
                pg = Store.open(where, SystemClock(), key)
                try:
                    if args.profile:
                        profile(pg)
                    found["postgresql"] = measure(pg)
                finally:
                    pg.close()
        store.close()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"query-log check, {args.statements:,} statements (median of {RUNS}; wall time, and"
          f" this process's CPU: PostgreSQL's own is apart), load average {load}:")  # fmt: skip
    for engine, rows in found.items():
        for what, (seconds, cpu, findings) in rows.items():
            print(f"  {engine:<11} {what:<26} {seconds:7.2f} s  cpu {cpu:6.2f} s"
                  f"  findings {findings!r}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
