"""Masking's own costs, before the door uses it: .venv/bin/python -m bench.masking [--quick]

Prints, in one run: the time to plan a statement (parse with PostgreSQL's grammar, lineage over
a catalog of the shop schema, decision), cold and with a warm cache, p50 and p99; and the speed
of rewriting DataRows with 3 of 6 columns masked, against walking the same rows without masking
and against copying them (the floor), in rows/s and MiB/s; then, on a private PostgreSQL 15,
psql streaming a 1M-row result with 3 masked columns through the door (served as its own
process, each target's first session done before, untimed: it reads the target's catalog),
against the same result with masking off and direct (with --rounds N, each N times,
interleaved, the median run shown); and one scan of each pathological value the red team
found (linear patterns, bounded checks). Figures only, never asserts speed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bastion.masking.detect import KINDS, Detectors
from bastion.masking.freetext import Scan
from bastion.masking.rows import data_row
from bastion.masking.session import Masking, ResultMask, mask_data_rows
from bastion.pgwire import Field
from bench._common import MIB, ServedBastion, one_use_ticket
from bench.pg import PASSWORD
from tests.harness import Bastion
from tests.masking.test_lineage import CATALOG, POLICY
from tests.realpg import PgCluster, PgDatabase, psql_argv, psql_env
from tests.realssh import wait_for_banner

STATEMENTS = (
    "SELECT id, name, email FROM customers WHERE id = 4711",
    "SELECT c.id, c.name, o.total_cents FROM customers c JOIN orders o ON o.customer_id = c.id"
    " WHERE o.placed_on > '2026-01-01' ORDER BY o.total_cents DESC LIMIT 20",
    "WITH recent AS (SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id)"
    " SELECT c.id, c.email, r.n FROM customers c JOIN recent r ON r.customer_id = c.id",
    "SELECT email, phone FROM customer_contacts WHERE id IN (SELECT customer_id FROM orders)",
)


def plan_times(rounds: int) -> tuple[list[float], list[float]]:
    cold, warm = [], []
    for round_ in range(rounds):
        masking = Masking(CATALOG, POLICY, b"k" * 32, "2026-W47")
        for sql in STATEMENTS:
            text = f"{sql} /* {round_} */"  # a new text each round: nothing cached
            started = time.perf_counter()
            masking.plan(text)
            cold.append(time.perf_counter() - started)
            started = time.perf_counter()
            masking.plan(text)
            warm.append(time.perf_counter() - started)
    return cold, warm


def rows_per_second(rows: int) -> list[tuple[str, float, float]]:
    masking = Masking(CATALOG, POLICY, b"k" * 32, "2026-W47")
    plan = masking.plan("SELECT id, name, email, phone, ssn, created_at FROM customers")
    types = (23, 25, 25, 25, 25, 1184)  # int4, text ... timestamptz: the shop's own types
    fields = [Field(n, 1, i, types[i - 1], -1, -1, 0) for i, n in enumerate(
        ("id", "name", "email", "phone", "ssn", "created_at"), 1)]  # fmt: skip
    result = masking.result(plan, fields)
    body = data_row([b"4711", b"Jane Doe", b"jane.doe@example.com", b"+1 555-123-4567",
                     b"123-45-6789", b"2026-01-01 00:00:00+00"])  # fmt: skip
    row = b"D" + (len(body) + 4).to_bytes(4, "big") + body
    batch = row * 1000
    mib = len(row) * rows / 2**20
    out = []
    for label, mask in (("3 masked, name scanned", result), ("walked, nothing masked",
                                                             ResultMask({}, []))):  # fmt: skip
        started = time.perf_counter()
        for _ in range(rows // 1000):
            mask_data_rows(batch, mask)
        seconds = time.perf_counter() - started
        out.append((label, rows / seconds, mib / seconds))
    started = time.perf_counter()
    for _ in range(rows // 1000):
        bytes(memoryview(batch))
    seconds = time.perf_counter() - started
    out.append(("copied as they came (floor)", rows / seconds, mib / seconds))
    return out


# --- through the door ------------------------------------------------------------------

PEOPLE = (
    "CREATE TABLE people AS SELECT g AS id, 'Person ' || g AS name,"
    " 'person' || g || '@example.com' AS email, '+1 555-' || lpad(g::text, 7, '0') AS phone,"
    " lpad((g % 1000)::text, 3, '0') || '-' || lpad((g % 100)::text, 2, '0') || '-'"
    " || lpad((g % 10000)::text, 4, '0') AS ssn,"
    " timestamptz '2026-01-01' + g * interval '1 second' AS created_at"
    " FROM generate_series(1, {rows}) g"
)
# Two free-text columns scanned by the content detectors (one row in {every} holds an email and
# a phone number in its note), beside the same three masked columns.
FREE_TEXT = (
    "CREATE TABLE tickets AS SELECT g AS id, 'person' || g || '@example.com' AS email,"
    " '+1 555-' || lpad(g::text, 7, '0') AS phone,"
    " lpad((g % 1000)::text, 3, '0') || '-' || lpad((g % 100)::text, 2, '0') || '-'"
    " || lpad((g % 10000)::text, 4, '0') AS ssn,"
    " CASE WHEN g % {every} = 0 THEN 'please call +31 6 1234 ' || lpad((g % 10000)::text, 4, '0')"
    "  || ' or mail person' || g || '@example.com about order ' || g"
    "  ELSE 'order ' || g || ' shipped in 2 parcels, customer asked for gift wrap' END AS note,"
    " 'status: delivered at the front door; rating ' || (g % 5 + 1) || ' of 5' AS body"
    " FROM generate_series(1, {rows}) g"
)
USER = "bench"
DOOR_CONFIG = '[audit]\ndurability = "strict"\n[targets.unmasked.masking]\nenabled = false\n'


Stream = tuple[float, int, bytes]  # seconds, bytes psql printed, a sample of them


def stream(db: PgDatabase, table: str = "people") -> Stream:
    """Seconds to stream the table through psql (text), the bytes it printed, a sample."""
    argv = psql_argv(db, "-At", "-c", f"SELECT * FROM {table}")
    started = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=900,
                          env=psql_env(db, {"PGSSLMODE": "disable"}), check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.decode(errors='replace')}")
    at = done.stdout.find(b"please call")  # and the first note with personal data in it
    sample = done.stdout[:2000] + (done.stdout[at : at + 300] if at >= 0 else b"")
    return seconds, len(done.stdout), sample


def door(rows: int, every: int, rounds: int = 1) -> None:
    """The same result direct, through the door with masking off, and masked (3 columns);
    with `rounds`, each path that many times, interleaved, and the median run reported."""
    work = Path(tempfile.mkdtemp(prefix="bench-masking-"))
    cluster = PgCluster().start()
    served: ServedBastion | None = None
    try:
        db = cluster.seed_orders("maskdb")
        cluster.sql(PEOPLE.format(rows=rows), db="maskdb")
        cluster.sql(f'ALTER TABLE people OWNER TO "{db.user}"', db="maskdb")
        cluster.sql(FREE_TEXT.format(rows=rows, every=every), db="maskdb")
        cluster.sql(f'ALTER TABLE tickets OWNER TO "{db.user}"', db="maskdb")
        b = Bastion(work / "bastion", DOOR_CONFIG, postgres=True)
        b.add_user(USER, key=False, password=PASSWORD)
        for name in ("masked", "unmasked"):
            b.add_pg_target(name, db)
            b.grant(USER, name)
        tickets = {f"{name} {table} {r}": one_use_ticket(b.core.identity, USER, name)
                   for name in ("masked", "unmasked") for table in ("people", "tickets")
                   for r in range(rounds)}  # fmt: skip
        for name in ("masked", "unmasked"):
            tickets[f"warm {name}"] = one_use_ticket(
                b.core.identity, USER, name
            )  # one session each
        b.release()
        served = ServedBastion(b.home / "bastion.toml", work / "bastion.log").start()
        wait_for_banner("127.0.0.1", b.port, timeout=30, alive=served.alive)
        warm_up(b.pg_port, tickets)
        if rounds > 1:
            print(f"\neach path below streamed {rounds} times, interleaved: the median run shown")
        report_door(rows, streams(db, b.pg_port, tickets, "people", rounds))
        report_free_text(rows, every, streams(db, b.pg_port, tickets, "tickets", rounds))
    finally:
        if served is not None:
            served.stop()
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)


def streams(db: PgDatabase, port: int, tickets: dict[str, str], table: str,
            rounds: int) -> dict[str, Stream]:  # fmt: skip
    """Each path's median stream of `table` over `rounds` rounds (direct, masking off,
    masked, in that order each round)."""
    found: dict[str, list[Stream]] = {"direct": [], "unmasked": [], "masked": []}
    for r in range(rounds):
        found["direct"].append(stream(db, table))
        for name in ("unmasked", "masked"):
            via = PgDatabase("127.0.0.1", port, name, USER, tickets[f"{name} {table} {r}"])
            found[name].append(stream(via, table))
    return {name: sorted(runs)[(len(runs) - 1) // 2] for name, runs in found.items()}


def warm_up(port: int, tickets: dict[str, str]) -> None:
    """One small session per target before the timed streams: a target's first session reads
    its catalog for the checks (shared by its sessions for a minute), which is not the relay's
    speed. Printed, not hidden."""
    print("\nfirst session on each target (it reads the target's catalog), not timed below:")
    for name in ("unmasked", "masked"):
        via = PgDatabase("127.0.0.1", port, name, USER, tickets[f"warm {name}"])
        started = time.perf_counter()
        done = subprocess.run(psql_argv(via, "-At", "-c", "SELECT 1"), stdin=subprocess.DEVNULL,
                              capture_output=True, env=psql_env(via, {"PGSSLMODE": "disable"}),
                              timeout=120, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr.decode(errors='replace')}")
        print(f"  {name:<28} {time.perf_counter() - started:8.2f} s for SELECT 1")


def report_door(rows: int, results: dict[str, Stream]) -> None:
    size = results["direct"][1] / MIB
    print(f"\nthrough the door: {rows:,} rows (id, name, email, phone, ssn, created_at),"
          f" {size:.1f} MiB as psql prints it; email, phone and ssn masked (partial)")  # fmt: skip
    direct = size / results["direct"][0]
    for name, label in (("direct", "direct"), ("unmasked", "bastion, masking off"),
                        ("masked", "bastion, 3 columns masked")):  # fmt: skip
        rate = size / results[name][0]
        print(f"  {label:<28} {rate:8.1f} MiB/s   {rate / direct:5.2f}x direct"
              f"   {rows / results[name][0]:>10,.0f} rows/s")  # fmt: skip
    sample = results["masked"][2]
    if b"person1@" in sample or b"person2@" in sample:
        print("  PROBLEM: the masked stream showed an address in clear")


def report_free_text(rows: int, every: int, results: dict[str, Stream]) -> None:
    size = results["direct"][1] / MIB
    print(f"\nfree text: {rows:,} rows (id, email, phone, ssn, note, body), {size:.1f} MiB as"
          " psql prints it; email, phone and ssn masked, note and body scanned; one note in"
          f" {every} holds an email and a phone number")  # fmt: skip
    direct = size / results["direct"][0]
    for name, label in (("direct", "direct"), ("unmasked", "bastion, masking off"),
                        ("masked", "bastion, 3 masked + 2 scanned")):  # fmt: skip
        rate = size / results[name][0]
        print(f"  {label:<28} {rate:8.1f} MiB/s   {rate / direct:5.2f}x direct"
              f"   {rows / results[name][0]:>10,.0f} rows/s")  # fmt: skip
    sample = results["masked"][2]
    if b"please call" not in sample or f"person{every}@".encode() in sample:
        print("  PROBLEM: the scanned stream showed an address or a phone number in clear")


# The red team's values, each just under the scan's size limit (and one a megabyte, over it):
# how long one scan of each takes.
PATHOLOGICAL = (
    ("IPv6-shaped run", "::" + "1" * 250_000 + "g"),
    ("run of '(' then a card", "(" * 250_000 + " 4111 1111 1111 1111"),
    ("separated digits", "1 " * 125_000 + "ab"),
    ("phone-like text", "+1 555 123 4567 " * 16_000),
    ("phone-like text, 1 MiB", "+1 555 123 4567 " * 65_536),
    ("emails", "jane@example.com " * 15_000),
)


def pathological() -> None:
    """One scan of each pathological value: the most one value stalls the event loop."""
    print("\npathological values, one scan each (all detectors on):")
    for label, text in PATHOLOGICAL:
        counts: dict[str, int] = {}
        masker = Scan(Detectors(KINDS), 25, set(), counts)
        started = time.perf_counter()
        masker(text.encode())
        took = time.perf_counter() - started
        print(f"  {label:<28} {len(text) / 1024:8.0f} KiB {took * 1e3:9.1f} ms   {counts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and rows")
    parser.add_argument("--no-door", action="store_true", help="masking's own costs only")
    parser.add_argument(
        "--pii-every",
        type=int,
        default=100,
        metavar="N",
        help="one free-text note in N holds personal data (default 100)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="stream each path through the door N times, interleaved; report the median",
    )
    args = parser.parse_args()
    cold, warm = plan_times(20 if args.quick else 200)
    for label, times in (("plan, cold", cold), ("plan, warm cache", warm)):
        ordered = sorted(times)
        p99 = ordered[int(len(ordered) * 0.99) - 1]
        print(f"{label:<18} p50 {statistics.median(times) * 1e6:8.1f} us"
              f"   p99 {p99 * 1e6:8.1f} us   ({len(times)} statements)")  # fmt: skip
    rows = 100_000 if args.quick else 1_000_000
    print(f"\nDataRows (6 text columns, {rows:,} rows):")
    for label, per_second, mib in rows_per_second(rows):
        print(f"  {label:<30} {per_second:>12,.0f} rows/s {mib:>9.1f} MiB/s")
    pathological()
    if not args.no_door:
        door(100_000 if args.quick else 1_000_000, args.pii_every, max(1, args.rounds))


if __name__ == "__main__":
    main()
