"""How long the reviewer's reads take on a big store (a figure, not a test).

Run: .venv/bin/python -m bench.reviewing [--sessions 20000] [--statements 1000000]

Fills a store with bench/reports.py's week, then times, each as the median of five runs: the
first page of sessions, a search by person and a day, a text search that matches one
session in twenty (a command) and one that matches nothing (it reads every command, every
statement and every file path), a session's command index, and a query-log page by text.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from bastion.access.viewing import Viewer
from bastion.audit import ChainKey, SessionFilter, Store
from bastion.clock import SystemClock
from bastion.config import load_config
from bastion.identity.sealing import SecretBox
from bastion.reports.week import parse_week
from bastion.reviewing.logs import QueryFilter, search_queries
from bastion.reviewing.sessions import command_index, search_sessions
from bench.reports import WEEK, fill

VIEWER = Viewer.operator("bench")


def timed(what: str, call: Callable[[], object]) -> None:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        call()
        runs.append(time.perf_counter() - started)
    print(f"{what:<48} {statistics.median(runs) * 1000:9.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--statements", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        fill(root, args.sessions, args.statements)
        print(f"filled {args.sessions} sessions, {args.statements} statements"
              f" in {time.perf_counter() - started:.0f} s")  # fmt: skip
        config = load_config(root / "bastion.toml")
        box = SecretBox(config.paths.secrets_key.read_bytes())  # raw, as bench.reports writes it
        store = Store.open(config.paths.store, SystemClock(), ChainKey.of(box))
        day = parse_week(WEEK, "UTC").start + timedelta(days=2)

        def sessions(**wanted: object) -> Callable[[], object]:
            return lambda: search_sessions(store, VIEWER, SessionFilter(**wanted))  # type: ignore[arg-type]

        timed("sessions, first page", sessions())
        timed("sessions of one person on one day",
              sessions(user="user07", since=day, until=day + timedelta(days=1)))  # fmt: skip
        timed("sessions by a command's text (1 in 20)", sessions(text="systemctl restart"))
        timed("sessions by a text nowhere (reads everything)", sessions(text="no such text"))
        timed("command index of a session", lambda: command_index(store, VIEWER, "s000001"))
        timed("query log page by text",
              lambda: search_queries(store, VIEWER, QueryFilter(text="invoices")))  # fmt: skip
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
