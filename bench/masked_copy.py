"""Masked exports' costs: .venv/bin/python -m bench.masked_copy [--rows N] [--no-door]

Prints, in one run: the speed of masking CopyData rows (6 columns, 3 masked, partial) in
text, csv and binary format, against DataRows with the same masks; then, on a private
PostgreSQL 15, psql's `COPY (SELECT * FROM people) TO STDOUT` in csv direct, through the door
with masking off, and masked (email, phone, ssn), side by side. Figures only, never asserts.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bastion.masking.copyrows import (
    CopyFormat,
    CopyRows,
    binary_header,
    binary_trailer,
    copy_data_run,
    csv_format,
    encode_row,
)
from bastion.masking.rows import data_row, mask_run
from bastion.masking.values import partial
from bench._common import MIB, ServedBastion, one_use_ticket
from bench.pg import PASSWORD
from tests.harness import Bastion
from tests.realpg import PgCluster, PgDatabase, psql_argv, psql_env
from tests.realssh import wait_for_banner

ROW = [b"4711", b"Jane Doe", b"jane.doe@example.com", b"+1 555-123-4567", b"123-45-6789",
       b"2026-01-01 00:00:00+00"]  # fmt: skip
MASKERS = {2: partial, 3: partial, 4: partial}
PEOPLE = (
    "CREATE TABLE people AS SELECT g AS id, 'Person ' || g AS name,"
    " 'person' || g || '@example.com' AS email, '+1 555-' || lpad(g::text, 7, '0') AS phone,"
    " lpad((g % 1000)::text, 3, '0') || '-' || lpad((g % 100)::text, 2, '0') || '-'"
    " || lpad((g % 10000)::text, 4, '0') AS ssn,"
    " timestamptz '2026-01-01' + g * interval '1 second' AS created_at"
    " FROM generate_series(1, {rows}) g"
)
USER = "bench"
CONFIG = '[audit]\ndurability = "strict"\n[targets.unmasked.masking]\nenabled = false\n'


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def pure(rows: int) -> None:
    print(f"CopyData rows (6 columns, email, phone and ssn masked partial), {rows:,} rows:")
    for label, fmt in (("text", CopyFormat()), ("csv", csv_format()),
                       ("binary", CopyFormat("binary"))):  # fmt: skip
        # As PostgreSQL writes it: csv quotes only values that need it (none of these).
        body = b",".join(ROW) + b"\n" if fmt.kind == "csv" else encode_row(ROW, fmt)
        run = _message(b"d", body) * rows
        if fmt.binary:
            run = _message(b"d", binary_header() + body) + run + _message(b"d", binary_trailer())
        started = time.perf_counter()
        copy_data_run(run, CopyRows(fmt, len(ROW), MASKERS))
        seconds = time.perf_counter() - started
        _rate(label, rows, len(run), seconds)
    run = _message(b"D", data_row(list(ROW))) * rows
    started = time.perf_counter()
    mask_run(run, MASKERS)
    seconds = time.perf_counter() - started
    _rate("DataRow", rows, len(run), seconds)


def _rate(label: str, rows: int, size: int, seconds: float) -> None:
    print(f"  {label:<8} {rows / seconds:>12,.0f} rows/s {size / MIB / seconds:>8.1f} MiB/s")


def export(db: PgDatabase) -> tuple[float, int, bytes]:
    """Seconds for psql to export the table as csv, the bytes, a sample."""
    sql = "COPY (SELECT * FROM people) TO STDOUT (FORMAT csv)"
    argv = psql_argv(db, "-c", sql)
    started = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=900,
                          env=psql_env(db, {"PGSSLMODE": "disable"}), check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.decode(errors='replace')}")
    return seconds, len(done.stdout), done.stdout[:2000]


def door(rows: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-copy-"))
    cluster = PgCluster().start()
    served: ServedBastion | None = None
    try:
        db = cluster.seed_orders("copydb")
        cluster.sql(PEOPLE.format(rows=rows), db="copydb")
        cluster.sql(f'ALTER TABLE people OWNER TO "{db.user}"', db="copydb")
        b = Bastion(work / "bastion", CONFIG, postgres=True)
        b.add_user(USER, key=False, password=PASSWORD)
        tickets = {}
        for name in ("masked", "unmasked"):
            b.add_pg_target(name, db)
            b.grant(USER, name)
            tickets[name] = one_use_ticket(b.core.identity, USER, name)
        b.release()
        served = ServedBastion(b.home / "bastion.toml", work / "bastion.log").start()
        wait_for_banner("127.0.0.1", b.port, timeout=30, alive=served.alive)
        results = {"direct": export(db)}
        for name in ("unmasked", "masked"):
            results[name] = export(PgDatabase("127.0.0.1", b.pg_port, name, USER, tickets[name]))
    finally:
        if served is not None:
            served.stop()
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)
    size = results["direct"][1] / MIB
    print(f"\npsql COPY ... TO STDOUT (FORMAT csv), {rows:,} rows, {size:.1f} MiB:")
    for name in ("direct", "unmasked", "masked"):
        seconds = results[name][0]
        print(f"  {name:<9} {size / seconds:8.1f} MiB/s  {rows / seconds:>10,.0f} rows/s"
              f"  {results['direct'][0] / seconds:5.2f}x direct")  # fmt: skip
    if b"person1@" in results["masked"][2]:
        print("  PROBLEM: the masked export showed an address in clear")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--no-door", action="store_true", help="the row masking alone")
    args = parser.parse_args()
    pure(args.rows)
    if not args.no_door:
        door(args.rows)


if __name__ == "__main__":
    main()
