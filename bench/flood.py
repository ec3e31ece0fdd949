"""Logins under a pre-login flood: .venv/bin/python -m bench.flood [--per-door N] [--logins N]

One `bastion serve` process with both doors (fewer seats in login than hostile connections,
so the doors have to shed load), a private sshd target and a private PostgreSQL 15. Prints
(figures only, never asserts):
  refusals      how long the PostgreSQL door takes to refuse a wrong password, an unknown
                user, a key-only user and an unknown target (they should not differ)
  logins        a real login on each door (SSH: key + TOTP, `echo`; PostgreSQL: password +
                TOTP, `SELECT 1`), median and worst, idle and then while N hostile pre-login
                connections per door are open (tests/flood.py: oversized messages, slow
                senders, cancel floods, silent sockets; they reconnect when ended)
  memory        the bastion's RSS idle, its peak during the flood, and the growth
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench._common import MIB, ServedBastion, median, rss_bytes
from tests.flood import (
    PASSWORD,
    FloodProcess,
    flooded_home,
    pg_login,
    raise_fd_limit,
    ssh_login,
)
from tests.harness import Bastion
from tests.realpg import PgCluster
from tests.realssh import Sshd, wait_for_banner


def refusal_seconds(b: Bastion, user: str, database: str, password: str, runs: int) -> float:
    """Median seconds for the door to refuse this login (psycopg, plain TCP on loopback)."""
    times = []
    for _ in range(runs):
        began = time.monotonic()
        try:
            psycopg.connect(host="127.0.0.1", port=b.pg_port, dbname=database, user=user,
                            password=password + "123456", sslmode="disable").close()  # fmt: skip
        except psycopg.OperationalError:
            times.append(time.monotonic() - began)
        else:
            raise RuntimeError(f"{user} on {database} was let in")
    return median(times)


class PeakRss:
    """Samples a process's RSS every 50 ms in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


class Users:
    """Each login by a user of its own (two codes a user per 30 s step)."""

    def __init__(self, prefix: str) -> None:
        self.prefix, self.next = prefix, 1

    def take(self) -> str:
        self.next += 1
        return f"{self.prefix}{self.next - 1}"


def timed(login: Callable[[Bastion, str], float], b: Bastion, users: Users,
          runs: int) -> list[float]:  # fmt: skip
    return [login(b, users.take()) for _ in range(runs)]


def line(name: str, idle: list[float], flooded: list[float]) -> str:
    return (f"  {name:<12} idle median {median(idle):6.3f} s   under flood median"
            f" {median(flooded):6.3f} s, worst {max(flooded):6.3f} s")  # fmt: skip


def run(work: Path, per_door: int, logins: int) -> None:
    sshd, cluster = Sshd(), PgCluster()
    served: ServedBastion | None = None
    flood: FloodProcess | None = None
    try:
        sshd.start()
        cluster.start()
        db = cluster.fresh_orders("bench")
        b = flooded_home(work / "bastion", sshd, db, pairs=2 * logins + 1)
        sshers, pgers = Users("alice"), Users("bob")
        b.add_user("carol", key=False, password=PASSWORD)
        b.release()
        served = ServedBastion(b.home / "bastion.toml", work / "bastion.log").start()
        wait_for_banner("127.0.0.1", b.port, alive=served.alive)
        pg_login(b)  # warm
        print("refusals (PostgreSQL door, median of 4):")
        for what, user, database in (
            ("wrong password", "carol", "orders-prod"), ("unknown user", "mallory", "orders-prod"),
            ("key-only user", "alice", "orders-prod"), ("unknown target", "carol", "no-such-db"),
        ):  # fmt: skip
            seconds = refusal_seconds(b, user, database, "not the password", 4)
            print(f"  {what:<16} {seconds * 1000:7.1f} ms")
        idle_ssh = timed(ssh_login, b, sshers, logins)
        idle_pg = timed(pg_login, b, pgers, logins)
        idle_rss = rss_bytes(served.pid)
        flood = FloodProcess(b.pg_port, b.port, per_door)
        peak = PeakRss(served.pid)
        flood.wait_ready()
        time.sleep(3)  # slow senders trickle, oversized messages stream, cancels repeat
        flooded_ssh = timed(ssh_login, b, sshers, logins)
        flooded_pg = timed(pg_login, b, pgers, logins)
        top = peak.stop()
        counts = flood.stop()
        flood = None
        print(f"logins ({logins} each; {2 * per_door} hostile pre-login connections open):")
        print(line("SSH", idle_ssh, flooded_ssh))
        print(line("PostgreSQL", idle_pg, flooded_pg))
        print(f"memory: idle {idle_rss / MIB:.0f} MiB, peak under flood {top / MIB:.0f} MiB,"
              f" growth {(top - idle_rss) / MIB:.0f} MiB")  # fmt: skip
        print("flood: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    finally:
        if flood is not None:
            flood.stop()
        if served is not None:
            served.stop()
        cluster.close()
        sshd.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-door", type=int, default=500, help="hostile connections per door")
    parser.add_argument("--logins", type=int, default=3, help="timed logins per door and phase")
    args = parser.parse_args()
    raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    try:
        run(work, args.per_door, args.logins)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
