"""Masking's own costs, before the door uses it: .venv/bin/python -m bench.masking [--quick]

Prints, in one run: the time to plan a statement (parse with PostgreSQL's grammar, lineage over
a catalog of the shop schema, decision), cold and with a warm cache, p50 and p99; and the speed
of rewriting DataRows with 3 of 6 columns masked, against walking the same rows without masking
and against copying them (the floor), in rows/s and MiB/s. The door-level figure (a 1M-row
result through the bastion, masked against unmasked and direct) comes when the door masks.
Figures only, never asserts speed.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bastion.masking.rows import data_row
from bastion.masking.session import Masking, ResultMask, mask_data_rows
from bastion.pgwire import Field
from tests.masking.test_lineage import CATALOG, POLICY

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
    fields = [Field(n, 1, i, 25, -1, -1, 0) for i, n in enumerate(
        ("id", "name", "email", "phone", "ssn", "created_at"), 1)]  # fmt: skip
    result = masking.result(plan, fields)
    body = data_row([b"4711", b"Jane Doe", b"jane.doe@example.com", b"+1 555-123-4567",
                     b"123-45-6789", b"2026-01-01 00:00:00+00"])  # fmt: skip
    row = b"D" + (len(body) + 4).to_bytes(4, "big") + body
    batch = row * 1000
    mib = len(row) * rows / 2**20
    out = []
    for label, mask in (("3 of 6 columns masked", result), ("walked, nothing masked",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and rows")
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


if __name__ == "__main__":
    main()
