"""How long a big week's review takes to build, and its peak memory (a figure, not a test).

Run: .venv/bin/python -m bench.reports [--sessions 20000] [--statements 1000000] [--quick]

Fills a store with one week (people, targets, grants, sessions on both doors, commands, file
transfers and statements: mostly reads, some writes, a few destructive ones, masking notes),
then builds that week's review (verify the chain, the recordings and the query log; gather;
render HTML, JSON, CSV and SQLite; sign the pack) in a child process, and prints the build's
wall time and the child's peak RSS. Issue 15's target: 1,000,000 statements and 20,000
sessions in under 10 s and 500 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bastion.audit import ChainKey, CommandLine, FileOp, NewGrant, QueryEnd, QueryStart, Store
from bastion.clock import FakeClock
from bastion.config import Config, load_config
from bastion.identity.sealing import SecretBox
from bastion.reports.week import parse_week

WEEK = "2026-W47"
PEOPLE, TARGETS = 50, 10
# The week's statements: nine in ten reads, the rest writes with their WHERE; one update in
# ten typed with its literal (each a text of its own, judged on its own), and one statement
# in 10,000 destructive (a DELETE without WHERE: 100 high findings in a million).
KINDS = ["SELECT"] * 90 + ["UPDATE"] * 5 + ["INSERT"] * 4 + ["DELETE"]
SQL = {
    "SELECT": "SELECT id, email FROM customers WHERE id = $1",
    "UPDATE": "UPDATE invoices SET paid = $1 WHERE id = $2",
    "INSERT": "INSERT INTO notes (body) VALUES ($1)",
    "DELETE": "DELETE FROM sessions_cache WHERE expires_at < $1",
}
DESTRUCTIVE = "DELETE FROM sessions_cache"


def _sql(i: int, kind: str) -> str:
    if i % 10_000 == 5_099:
        return DESTRUCTIVE
    if kind == "UPDATE" and i % 1000 < 100:
        return f"UPDATE invoices SET paid = true WHERE id = {i}"
    return SQL[kind]


# A masking note as the door writes it (sorted keys).
NOTE = '{"detected": {"notes.body": {"email": 1}}, "masked": ["customers.email"]}'


@dataclass
class Sources:
    store: Store
    config: Config
    box: SecretBox
    clock: FakeClock


def home(root: Path) -> tuple[Path, SecretBox]:
    key = os.urandom(32)
    (root / "secrets.key").write_bytes(key)
    (root / "secrets.key").chmod(0o600)
    (root / "bastion.toml").write_text('[paths]\nstore = "bastion.db"\n')
    return root / "bastion.toml", SecretBox(key)


def fill(root: Path, sessions: int, statements: int) -> None:
    """One week of activity in the store at root, written at that week's times."""
    config_path, box = home(root)
    config = load_config(config_path)
    week = parse_week(WEEK, "UTC")
    clock = FakeClock(week.start - timedelta(days=1))
    store = Store.create(config.paths.store, clock, ChainKey.of(box))
    store.conn.execute("PRAGMA synchronous=OFF")  # the filling only: the build reads as usual
    people = [f"user{i:02d}" for i in range(PEOPLE)]
    for name in people:
        store.add_user(name, "engineer", None, os.urandom(16), "bench")
    for t in range(TARGETS):
        store.add_target(
            name=f"t{t}",
            kind="ssh" if t % 2 else "postgres",
            host="127.0.0.1",
            port=22,
            login="x",
            database=None,
            secret_sealed=b"x",
            actor="bench",
        )
    grants = {
        (p, t): store.add_grant(
            NewGrant(
                target=f"t{t}",
                mode="write",
                starts_at=week.start,
                ends_at=week.end,
                reason="BENCH-1 routine maintenance of the fleet",
                actor="admin",
                user=p,
            )
        ).id
        for p in people
        for t in range(TARGETS)
    }
    step = (week.end - week.start - timedelta(hours=1)) / sessions
    per = max(statements // max(sessions // 2, 1), 1)
    written = 0
    for n in range(sessions):
        person, target = people[n % PEOPLE], n % TARGETS
        clock.advance((week.start + step * n) - clock.now())
        sid = f"s{n:06d}"
        store.open_session(
            session_id=sid,
            user=person,
            target=f"t{target}",
            grant_id=grants[(person, target)],
            protocol="ssh" if target % 2 else "postgres",
            client_addr=f"10.0.{n % 7}.5:5000",
        )
        if target % 2:
            store.log_commands(
                sid,
                [
                    CommandLine(clock.now(), 0, c)
                    for c in ("ls -la", "tail -f log", "systemctl status app")
                    + (("sudo systemctl restart app",) if n % 20 == 1 else ())
                ],
            )
            store.log_file_ops(sid, [FileOp(clock.now(), "read", "/srv/x", size=4096)])
        elif written < statements:
            batch = min(per, statements - written)
            store.write_batch(
                _statements(sid, person, f"t{target}", clock.now(), first=written, count=batch)
            )
            written += batch
        clock.advance(timedelta(minutes=10))
        store.close_session(sid, "closed", "done")
    store.close()


def _statements(
    sid: str, person: str, target: str, at: datetime, *, first: int, count: int
) -> list[QueryStart | QueryEnd]:
    out: list[QueryStart | QueryEnd] = []
    for i in range(first, first + count):
        kind = KINDS[i % len(KINDS)]
        key = f"q{i}"
        out.append(QueryStart(key, sid, person, target, at, "simple", _sql(i, kind), kind=kind))
        out.append(
            QueryEnd(
                key,
                sid,
                person,
                target,
                at,
                1,
                f"{kind} 1",
                None,
                120,
                NOTE if i % 3 == 0 else None,
            )
        )
    return out


def build(root: Path) -> None:
    """The child: build the week's review from the store at root, as `report weekly` does."""
    from bastion.reports.build import build_week  # noqa: PLC0415 - timed in the child

    config = load_config(root / "bastion.toml")
    box = SecretBox((root / "secrets.key").read_bytes())
    clock = FakeClock(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    store = Store.open(config.paths.store, clock, ChainKey.of(box))
    started = time.perf_counter()
    built = build_week(
        Sources(store, config, box, clock), parse_week(WEEK, "UTC"), out=root / "pack"
    )
    print(f"{time.perf_counter() - started:.2f} {built.findings} {built.summary_line}")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--statements", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="2,000 sessions, 100,000 statements")
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args()
    if args.build:
        build(args.build)
        return 0
    sessions, statements = (2_000, 100_000) if args.quick else (args.sessions, args.statements)
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as scratch:
        root = Path(scratch)
        started = time.perf_counter()
        fill(root, sessions, statements)
        filled = time.perf_counter() - started
        os.sync()  # the fill's writes reach the disk before the build is timed, not during it
        child = subprocess.run(
            [sys.executable, "-m", "bench.reports", "--build", str(root)],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds, findings, summary = child.stdout.split(" ", 2)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size = sum(p.stat().st_size for p in (root / "pack").iterdir()) / (1 << 20)
    print(
        f"weekly review: {sessions:,} sessions, {statements:,} statements in one week"
        f" (store filled in {filled:.0f} s)"
    )
    print(
        f"  build (verify, gather, render 4 formats, sign)  {float(seconds):.2f} s"
        f"   peak RSS {peak:.0f} MB   pack {size:.1f} MB   {findings} findings"
    )
    print(f"  {summary.strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
