"""What one page of the console's audit log costs over a long chain (a figure, not a test).

Run: .venv/bin/python -m bench.audit_log [--events 400000] [--dir /tmp]

Fills a keyed store with statement-like events (a few other kinds sprinkled in), then times
one page of each search, and the longest single statement of each: the time the store's lock
is held, during which a door's store call waits.
  newest     no filter: the head's 50 events
  kind       an exact kind that is 1 event in 1,000
  prefix     a kind prefix ("session.") over the same
  nothing    an actor no event has: the search looks at its budget of events and stops
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion.audit import ChainKey, Event, EventFilter, Store
from bastion.audit.eventlog import BUDGET, WINDOW
from bastion.clock import SystemClock

KEY = ChainKey(os.urandom(32))
QUERY = Event("query", "alice", "orders-prod", "info", "s-1",
              {"sql": "SELECT id, email FROM customers WHERE id = $1", "rows": 1})  # fmt: skip
RARE = Event("session.closed", "bob", "web-1", "info", "s-2", {"reason": "client closed"})


def fill(store: Store, count: int) -> None:
    batch = [RARE if n % 1000 == 0 else QUERY for n in range(5000)]
    for start in range(0, count, 5000):
        store.append_events(batch[: min(5000, count - start)])


class Timed(Store):
    """The store, noting how long its longest read held the lock."""

    longest = 0.0

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        start = time.perf_counter()
        try:
            return super()._rows(sql, params)
        finally:
            self.longest = max(self.longest, time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        path = Path(scratch) / "bastion.db"
        Store.create(path, SystemClock(), KEY).close()
        store = Timed.open(path, SystemClock(), KEY)
        start = time.perf_counter()
        fill(store, args.events)
        print(f"filled {args.events:,} events in {time.perf_counter() - start:.1f} s"
              f" (window {WINDOW:,}, budget {BUDGET:,})")  # fmt: skip
        searches = {"newest": EventFilter(), "kind": EventFilter(kind="session.closed"),
                    "prefix": EventFilter(kind="session."),
                    "nothing": EventFilter(actor="nobody")}  # fmt: skip
        for name, wanted in searches.items():
            assert isinstance(store, Timed)
            store.longest = 0.0
            start = time.perf_counter()
            page = store.search_events(wanted, before=None, limit=50)
            took = time.perf_counter() - start
            print(f"{name:<8} {len(page.events):>3} events, looked at"
                  f" {page.looked_to - page.looked_from + 1:>7,}: {took * 1000:7.1f} ms,"
                  f" longest statement {store.longest * 1000:6.1f} ms")  # fmt: skip
        store.close()


if __name__ == "__main__":
    main()
