"""The export feed's cost on the PG door: .venv/bin/python -m bench.export [--seconds N]

pgbench -S (10 clients, simple protocol, bench/pg.py's shape: 10 `-c 1` processes logging in
with one-time tickets) through the bastion served as its own process, in one run on one
private PostgreSQL 15 cluster, with no export sink, with a JSON-lines file sink, and with a
syslog sink over TLS to a local RFC 5425 receiver (tests/export/receivers.py, a thread of
this process); the three alternated `--rounds` times, TPS the median of each, and
"paired" the median of each round's ratio to that round's run without a sink. Before each
measured run the sink first takes what the other setups' runs chained since its own last run
(unmeasured), so a run carries only its own events; after it the sink's cursor must reach the
chain's head (every event delivered), else it says so.
Also the bastion's CPU per transaction (its processes, from /proc), which a busy machine
bends less than TPS. Figures only, never asserts speed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bastion.audit import ChainKey, Store
from bastion.clock import SystemClock
from bastion.config_export import ExportSink
from bastion.identity.sealing import SecretBox
from bastion.pki import make_tls
from bench import pgcpu, pgidle
from bench._common import ServedBastion
from bench.export_feed import feed_alone
from bench.pg import USERS, Tickets, init_pgbench, pgbench_many
from tests.export.receivers import SyslogReceiver
from tests.harness import Bastion
from tests.realpg import PgCluster, PgDatabase
from tests.realssh import free_port, wait_for_banner

PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway bench user
BASE = '[audit]\ndurability = "strict"\n[targets.benchdb.masking]\nenabled = false\n'


def sinks(work: Path, receiver: SyslogReceiver) -> dict[str, str]:
    """Each configuration's [export] tables, by name."""
    ca = receiver.cert.parent / "bastion-ca.pem"
    return {
        "none": "",
        "file": f'[export.trail]\nkind = "file"\npath = "{work / "export.jsonl"}"\n',
        "syslog": (f'[export.siem]\nkind = "syslog"\naddress = "127.0.0.1:{receiver.port}"\n'
                   f'tls_ca = "{ca}"\nserver_name = "localhost"\n'),
    }  # fmt: skip


def delivered(b: Bastion) -> str:
    """Whether every configured sink's cursor reached the chain's head, read from the store."""
    box = SecretBox.load(b.config.paths.secrets_key)
    store = Store.open(b.store_at, SystemClock(), ChainKey.of(box))
    try:
        head = store.chain_head()[0]
        behind = [c.sink for c in store.export_cursors() if c.enabled and c.delivered_seq < head]
        return "" if not behind else f"behind the head {head}: {', '.join(behind)}"
    finally:
        store.close()


def one_run(work: Path, b: Bastion, name: str, export: str, *, tickets: Tickets,
            seconds: int) -> tuple[float, float, str]:  # fmt: skip
    """pgbench -S through a freshly served bastion with `export`: (TPS, the bastion's CPU
    microseconds per transaction, its processes together, problem or '')."""
    config = b.home / "bastion.toml"
    config.write_text(b.home.joinpath("bastion.base.toml").read_text() + export)
    served = ServedBastion(config, work / f"bastion-{name}.log").start()
    via = PgDatabase("127.0.0.1", b.pg_port, "benchdb", USERS[0], "")
    try:
        try:
            wait_for_banner("127.0.0.1", b.port, timeout=30, alive=served.alive)
        except RuntimeError:
            print(served.log_path.read_text(errors="replace")[-3000:])
            raise
        backlog = caught_up(b) if export else ""
        with pgcpu.metered(lambda: processes(served.pid)) as cpu:
            tps = pgbench_many(work, via, clients=10, mode="simple", seconds=seconds,
                               tickets=tickets)  # fmt: skip
            time.sleep(0.5)  # the feed's last batches, counted with the run
        problem = "?"
        for _ in range(100):  # the feed catches up within a few of its looks
            problem = delivered(b) if export else ""
            if not problem:
                break
            time.sleep(0.1)
    finally:
        served.stop()
    per_transaction = sum(cpu.used.values()) / (tps * seconds) * 1e6 if tps else 0.0
    return tps, per_transaction, problem or (f"before the run: {backlog}" if backlog else "")


def caught_up(b: Bastion) -> str:
    """Wait until the sink has taken the events the other setups' runs made since its last
    run, so the measured run carries only its own ('' or what is still behind)."""
    problem = "?"
    for _ in range(600):
        problem = delivered(b)
        if not problem:
            break
        time.sleep(0.1)
    return problem


def catch_up(work: Path, b: Bastion, configs: dict[str, str]) -> str:
    """Serve once with every sink and no load, until each has taken the whole chain so far
    (the set-up's events)."""
    config = b.home / "bastion.toml"
    config.write_text(b.home.joinpath("bastion.base.toml").read_text() + "".join(configs.values()))
    served = ServedBastion(config, work / "bastion-warm-up.log").start()
    try:
        wait_for_banner("127.0.0.1", b.port, timeout=30, alive=served.alive)
        return caught_up(b)
    finally:
        served.stop()


def chain_head(b: Bastion) -> int:
    box = SecretBox.load(b.config.paths.secrets_key)
    store = Store.open(b.store_at, SystemClock(), ChainKey.of(box))
    try:
        return store.chain_head()[0]
    finally:
        store.close()


def alone(b: Bastion, receiver: SyslogReceiver, work: Path, per_transaction: float,
          door_us: float) -> None:  # fmt: skip
    """The feed's CPU per event measured alone, and what it comes to per transaction."""
    key = ChainKey.of(SecretBox.load(b.config.paths.secrets_key))
    ca = receiver.cert.parent / "bastion-ca.pem"
    sinks = [
        ExportSink("alone-file", "file", path=work / "alone.jsonl"),
        ExportSink("alone-syslog", "syslog", address=f"127.0.0.1:{receiver.port}", tls_ca=ca,
                   server_name="localhost"),
    ]  # fmt: skip
    print(
        f"the feed alone, its CPU per event over the whole chain ({per_transaction:.2f} events"
        f" per transaction above; the door's CPU {door_us:.0f} us per transaction):"
    )
    for sink in sinks:
        events, us = feed_alone(b.store_at, key, sink, receiver.thread_id)
        share = us * per_transaction / door_us if door_us else 0.0
        print(f"  {sink.kind:<7} {events:>7,} events  {us:6.1f} us/event"
              f"  = {share:.1%} of the door's CPU per transaction")  # fmt: skip


def processes(pid: int) -> dict[str, int]:
    """The served bastion and its children (the scribe), by name."""
    return {"serve": pid, **{f"{name}-{child}": child for child, name in
                             pgidle.children(pid).items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="each pgbench run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternated")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    cluster: PgCluster | None = None
    receiver: SyslogReceiver | None = None
    try:
        cluster = PgCluster().start()
        db = cluster.seed_orders("benchdb")
        init_pgbench(db)
        tls = make_tls(work / "siem-tls")
        receiver = SyslogReceiver(tls.server_cert, tls.server_key, free_port())
        receiver.start()
        b = Bastion(work / "bastion", BASE, postgres=True)
        b.add_pg_target(db.database, db)
        for user in USERS:
            b.add_user(user, key=False, password=PASSWORD)
            b.grant(user, db.database, mode="read")
        tickets = Tickets(b, db.database, per_user=2 * 3 * args.rounds + 4)
        b.release()
        shutil.copy(b.home / "bastion.toml", b.home / "bastion.base.toml")
        configs = sinks(work, receiver)
        tps: dict[str, list[float]] = {name: [] for name in configs}
        cpu: dict[str, list[float]] = {name: [] for name in configs}
        problems: list[str] = [f"warm-up: {p}" for p in [catch_up(work, b, configs)] if p]
        before = chain_head(b)
        for _ in range(args.rounds):
            for name, export in configs.items():
                rate, used, problem = one_run(
                    work, b, name, export, tickets=tickets, seconds=args.seconds
                )
                tps[name].append(rate)
                cpu[name].append(used)
                if problem:
                    problems.append(f"{name}: {problem}")
        report(tps, cpu, args, receiver=receiver, work=work, problems=problems)
        transactions = sum(sum(rates) for rates in tps.values()) * args.seconds
        alone(
            b,
            receiver,
            work,
            (chain_head(b) - before) / transactions,
            statistics.median(cpu["none"]),
        )
    finally:
        if receiver is not None:
            receiver.close()
        if cluster is not None:
            cluster.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(work)


def report(tps: dict[str, list[float]], cpu: dict[str, list[float]], args: argparse.Namespace, *,
           receiver: SyslogReceiver, work: Path, problems: list[str]) -> None:  # fmt: skip
    base, base_cpu = statistics.median(tps["none"]), statistics.median(cpu["none"])
    print(f"pgbench -S through the PG door, 10 clients, simple protocol, {args.seconds}s each,"
          f" {args.rounds} rounds alternated (median TPS):")  # fmt: skip
    for name, rates in tps.items():
        rate = statistics.median(rates)
        cost = "" if name == "none" else f"  cost {1 - rate / base:+.1%}"
        runs = ", ".join(f"{r:,.0f}" for r in rates)
        print(f"  export {name:<7} {rate:>9,.0f} tps  {rate / base:.3f}x{cost}"
              f"  paired {paired(rates, tps['none']):.3f}x   (runs: {runs})")  # fmt: skip
    print(f"the bastion's CPU per transaction (serve and scribe, median), load {load()}:")
    for name, used in cpu.items():
        each = statistics.median(used)
        print(f"  export {name:<7} {each:>7.0f} us   {each / base_cpu:.3f}x   cost"
              f" {each / base_cpu - 1:+.1%}  paired {paired(used, cpu['none']):.3f}x")  # fmt: skip
    lines = sum(1 for p in work.glob("export.jsonl*") for _ in p.open("rb"))
    print(f"  events exported: file {lines} lines, syslog {len(receiver.deduped())} messages"
          f" ({len(receiver.seqs())} sent, replays included)")  # fmt: skip
    for problem in problems:
        print(f"  PROBLEM {problem}")


def paired(runs: list[float], base: list[float]) -> float:
    """The median over rounds of a run's figure against the no-sink run of the same round
    (next to it in time, so under the same load)."""
    return statistics.median(r / b for r, b in zip(runs, base, strict=True) if b)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
