"""What one look of the session watcher costs: .venv/bin/python -m bench.lifecycle [--quick]

`bastion serve` looks twice a second for sessions whose access has ended (expired, revoked,
user disabled, outside hours) and for requests left pending too long. Access must end within
5 s of the moment, so one look has to stay far below that as live sessions grow. For 10, 100
and 1,000 open sessions (half of them under grants to their own user, half through a group
grant), with 10x as many finished grants and 100 pending requests in the store, this prints
the median and worst time of one look (expire requests, pending kills, endings) on a real
SQLite store, and checks that a revocation shows up in the very next look. Figures only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bastion.access.grants import Access
from bastion.audit import NewGrant, NewRequest, Store
from bastion.audit.cluster import node_lease
from bastion.clock import FakeClock
from bastion.config import load_config

REASON = "benchmark of the session watcher"


def populate(store: Store, clock: FakeClock, sessions: int) -> list[int]:
    """Users, grants old and live, open sessions and pending requests; returns live grant ids."""
    now = clock.now()
    store.add_target(name="db", kind="postgres", host="127.0.0.1", port=5432, login="svc",
                     database="db", secret_sealed=b"x", actor="bench")  # fmt: skip
    store.add_group("oncall", "bench")
    group_grant = store.add_grant(NewGrant(target="db", mode="read", starts_at=now,
                                           ends_at=now + timedelta(hours=8), reason=REASON,
                                           actor="bench", group="oncall"))  # fmt: skip
    live: list[int] = []
    for n in range(sessions):
        name = f"user{n}"
        store.add_user(name, "engineer", None, b"sealed", "bench")
        for old in range(10):  # finished grants: history the watcher must not trip over
            start = now - timedelta(days=old + 1)
            store.add_grant(NewGrant(target="db", mode="read", starts_at=start,
                                     ends_at=start + timedelta(hours=1), reason=REASON,
                                     actor="bench", user=name))  # fmt: skip
        if n % 2:
            store.set_membership("oncall", name, "bench", member=True)
            grant_id = group_grant.id
        else:
            grant_id = store.add_grant(NewGrant(target="db", mode="read", starts_at=now,
                                                ends_at=now + timedelta(hours=8), reason=REASON,
                                                actor="bench", user=name)).id  # fmt: skip
            live.append(grant_id)
        store.open_session(session_id=f"s{n}", user=name, target="db", grant_id=grant_id,
                           protocol="postgres", client_addr="127.0.0.1")  # fmt: skip
        if n < 100:
            store.add_request(NewRequest(user=name, target="db", mode="read",
                                         duration=timedelta(hours=1), reason=REASON,
                                         ticket_ref=None, requested_by=name,
                                         expires_at=now + timedelta(hours=24),
                                         approvals_needed=1))  # fmt: skip
    return live


def look(store: Store, access: Access) -> int:
    """One look of the watcher, as `Core.watch_sessions` makes it; returns endings found."""
    store.take_lease(node_lease("bench"), "bench", timedelta(seconds=30), quiet=True)
    store.expire_requests()
    store.pending_kills()
    return len(access.endings())


def measure(sessions: int, rounds: int) -> tuple[float, float, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
        (Path(tmp) / "bastion.toml").write_text("", encoding="utf-8")
        store = Store.create(Path(tmp) / "bastion.db", clock)
        access = Access(store, load_config(Path(tmp) / "bastion.toml"), clock)
        live = populate(store, clock, sessions)
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            assert look(store, access) == 0
            times.append(time.perf_counter() - started)
        store.revoke_grant(live[0], "bench")
        seen_next = look(store, access) == 1
        store.close()
    return statistics.median(times), max(times), seen_next


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and rounds")
    args = parser.parse_args()
    sizes = (10, 100) if args.quick else (10, 100, 1000)
    rounds = 10 if args.quick else 50
    print("| open sessions | one look, median | one look, worst | share of a 0.5 s tick"
          " | revocation seen at the next look |")  # fmt: skip
    print("|---|---|---|---|---|")
    for size in sizes:
        median, worst, seen = measure(size, rounds)
        print(f"| {size:,} | {median * 1000:.1f} ms | {worst * 1000:.1f} ms"
              f" | {median / 0.5:.1%} | {'yes' if seen else 'NO'} |")  # fmt: skip


if __name__ == "__main__":
    main()
