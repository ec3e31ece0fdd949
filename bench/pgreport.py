"""bench.pg's printed report: TPS tables with ratios, CPU per transaction, streams, TLS,
idle sessions, and what the bastions logged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench import pgcpu, pgidle
from bench._common import MIB

if TYPE_CHECKING:
    from bench.pg import Results, Run

ROWS = 1_000_000  # the big table streamed: its rows, each an id and PAD bytes
PAD = 100
SELECT, TPCB = "select-only", "tpcb-like"  # pgbench's built-in scripts (-S, and its default)
QUERIES = {  # psql's arguments for each way of streaming the big table
    "select": ["-At", "-c", "SELECT * FROM big"],
    "copy": ["-c", "COPY (SELECT * FROM big) TO STDOUT"],
}


def tps_table(tps: dict[str, Results], script: str) -> None:
    """One script's TPS on every path, and the bastion's ratios to direct and pgbouncer."""
    print(
        f"{script + ' tps':<16}{'clients':>8}  {'mode':<9}{'direct':>9}{'pgbouncer':>11}"
        f"{'bastion(strict)':>17}{'bastion(batched)':>18}{'pgb/direct':>12}"
        f"{'strict/direct':>15}{'batched/direct':>16}{'strict/pgb':>12}{'batched/pgb':>13}"
    )
    for mode in ("simple", "extended"):
        for clients in (1, 10):
            key = (script, clients, mode)
            d, p = tps["direct"][key], tps["pgbouncer"][key]
            s, bt = tps["strict"][key], tps["batched"][key]
            print(
                f"{'':<16}{clients:>8}  {mode:<9}{d:>9.0f}{p:>11.0f}{s:>17.0f}{bt:>18.0f}"
                f"{p / d:>11.2f}x{s / d:>14.2f}x{bt / d:>15.2f}x{s / p:>11.2f}x{bt / p:>12.2f}x"
            )


def cpu_table(run: Run, script: str) -> None:
    """µs of CPU per transaction at 10 clients: the proxy's processes, and the machine."""
    print("CPU per transaction at 10 clients (µs per process; busy: share of all cores)")
    for mode in ("simple", "extended"):
        key = (script, 10, mode)
        found = {path: per[key] for path, per in run.cpu.items() if key in per}
        tps = {path: run.tps[path][key] for path in found}
        print(f"  {mode:<9}{pgcpu.cpu_line(found, tps, run.seconds)}")


def report(run: Run) -> None:
    print(
        "pg bench (2-core machine shared by clients, bastion, pgbouncer and PostgreSQL 15;"
        f" pgbench -n -T {run.seconds}, scale 1)"
    )
    print(
        "each client is its own `pgbench -c 1 -j 1` process (10 clients = 10 processes, TPS"
        " summed), same shape for every path;"
    )
    print("bastion logins by one-time tickets; bastion served as its own process;")
    print("every connection without TLS (sslmode=disable) except in the TLS table\n")
    tps_table(run.tps, SELECT)
    cpu_table(run, SELECT)
    if run.writes:
        print(
            "\npgbench's default TPC-B-like script (writes; its tables made afresh before each run)"
        )
        tps_table(run.tps, TPCB)
        cpu_table(run, TPCB)
    else:
        print("\nTPC-B-like writes: skipped: the bench users have read grants (--grant read),"
              " and the bastion refuses their writes")  # fmt: skip
    mib = run.size / MIB
    print(f"\nstreaming {ROWS:,} rows (id, {PAD}-byte pad): {mib:.1f} MiB of text")
    labels = {"select": "1M-row SELECT", "copy": "COPY TO STDOUT"}
    for kind in QUERIES:
        rate = {name: mib / run.streams[(name, kind)] for name in ("direct", "pgbouncer")}
        rate["bastion"] = mib / run.streams[("bastion", kind)]
        print(
            f"{labels[kind]:<16}direct {rate['direct']:7.1f} MiB/s   pgbouncer"
            f" {rate['pgbouncer']:7.1f} MiB/s   bastion(strict) {rate['bastion']:7.1f} MiB/s"
            f"   bastion/direct {rate['bastion'] / rate['direct']:.2f}x"
            f"   bastion/pgbouncer {rate['bastion'] / rate['pgbouncer']:.2f}x"
        )
    d, s, bt = (run.tls_tps[name] for name in ("direct", "strict", "batched"))
    print("\nwith TLS (sslmode=require) on every connection, direct and through the bastion:")
    print(
        f"10 clients simple tps: direct {d:.0f}   bastion(strict) {s:.0f} ({s / d:.2f}x)"
        f"   bastion(batched) {bt:.0f} ({bt / d:.2f}x)"
    )
    rate = {name: mib / seconds for name, seconds in run.tls_streams.items()}
    print(
        f"1M-row SELECT: direct {rate['direct']:.1f} MiB/s   bastion(strict)"
        f" {rate['strict']:.1f} MiB/s ({rate['strict'] / rate['direct']:.2f}x)"
        f"   bastion(batched) {rate['batched']:.1f} MiB/s"
        f" ({rate['batched'] / rate['direct']:.2f}x)"
    )
    if run.idled is not None:
        pgidle.report(run.idled)
    print()
    for line in run.problems:
        print(line)
