"""What writing and proving a retention archive costs, and that its memory does not grow with it.

Run: .venv/bin/python -m bench.retention_archive [--events 10000 100000 1000000] [--dir /tmp]

For each size, a fresh process archives N synthetic keyed events (a real chain, made as it is
written) and N/4 query-log rows, as a retention run does (bastion/retention_archive.py: written
a batch of lines at a time, synced, read back in chunks), then proves it as `audit verify
--archive` does. It prints the archive's size, the time of each step and the process's peak
RSS (resource.getrusage) before and after: the growth is what archiving took.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bastion import retention_archive
from bastion.audit.chain import GENESIS, ChainedEvent, Event, link

CHAIN, ANCHOR = b"c" * 32, b"a" * 32
SQL = "SELECT id, name, email FROM customers WHERE id = $1 AND region = $2 ORDER BY name"


def peak_mib() -> float:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def events(count: int) -> Iterator[ChainedEvent]:
    """A keyed chain of `count` events, made one at a time."""
    head = GENESIS
    for seq in range(1, count + 1):
        detail = {"statement": seq, "rows": seq % 97, "target": "db-1", "kind": "read"}
        event = Event("pg.commit", "alice", "db-1", session_id=f"pg-alice-{seq // 500}",
                      detail=detail)  # fmt: skip
        row = link(event, seq, f"2026-01-01T00:00:{seq % 60:02d}.000000Z", head, CHAIN)
        head = row.row_hash
        yield row


def queries(count: int) -> Iterator[dict[str, Any]]:
    for n in range(1, count + 1):
        yield {"id": n, "session_id": f"pg-alice-{n // 100}", "at": "2026-01-01T00:00:00Z",
               "protocol_step": "simple", "sql": SQL, "parameters": None, "rows": 1,
               "command_tag": "SELECT 1", "duration_us": 120}  # fmt: skip


def one(count: int, folder: Path) -> dict[str, Any]:
    """Archive `count` events here and prove the archive (run in a process of its own)."""
    start = peak_mib()
    path = folder / f"bench-archive-{count}.jsonl"
    header = {"from_seq": 1, "to_seq": count, "start_head": GENESIS, "made_at": "bench"}
    body = retention_archive.Body(header, events(count), queries(count // 4), [])

    def seal_for(sha: str) -> dict[str, Any]:
        last = body.last
        seal = {"seq": last.seq if last else None, "head": last.row_hash if last else None,
                "archive": path.name, "archive_sha256": sha}  # fmt: skip
        return {**seal, "sig": retention_archive.sign(seal, ANCHOR)}

    began = time.perf_counter()
    retention_archive.write(path, body, seal_for)
    wrote = time.perf_counter()
    facts, problem = retention_archive.verify(path, CHAIN, ANCHOR)
    proved = time.perf_counter()
    size = path.stat().st_size
    path.unlink()
    return {"events": count, "queries": facts.get("counts", {}).get("query"),
            "problem": problem, "mib": size / 2**20, "write_s": wrote - began,
            "verify_s": proved - wrote, "rss_before_mib": start,
            "rss_peak_mib": peak_mib()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=None, help="where the archives are written")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child's own size
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-archive-", dir=args.dir))
    if args.one is not None:
        print(json.dumps(one(args.one, folder)))
        folder.rmdir()
        return
    print("retention archive (write + read back, then verify --archive), one process per size:")
    print(f"{'events':>10} {'rows':>9} {'MiB':>8} {'write s':>8} {'verify s':>9}"
          f" {'RSS start':>10} {'RSS peak':>9}")  # fmt: skip
    for count in args.events:
        done = subprocess.run(
            [sys.executable, "-m", "bench.retention_archive", "--one", str(count),
             "--dir", str(folder)], capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(done.stdout)
        if row["problem"]:
            raise SystemExit(f"the archive did not verify: {row['problem']}")
        print(f"{row['events']:>10} {row['queries']:>9} {row['mib']:>8.1f} {row['write_s']:>8.1f}"
              f" {row['verify_s']:>9.1f} {row['rss_before_mib']:>9.1f}M"
              f" {row['rss_peak_mib']:>8.1f}M")  # fmt: skip
    folder.rmdir()


if __name__ == "__main__":
    main()
