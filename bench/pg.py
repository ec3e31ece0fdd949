"""PostgreSQL door throughput vs direct and pgbouncer: .venv/bin/python -m bench.pg [--quick]

In one run on one private PostgreSQL 15 cluster: pgbench -S TPS (simple and extended, 1 and 10
clients) direct, through pgbouncer (session mode) and through the bastion (served as its own
process, audit durability "strict" then "batched"); and MB/s streaming a 1M-row result (psql
SELECT, psql COPY TO STDOUT) through each. Every connection is plain TCP (sslmode=disable) so
the paths compare like for like; a second, smaller table repeats 10 clients and the SELECT with
TLS on every connection, direct and through the bastion. Then, on each path after its reads,
pgbench's default TPC-B-like script (writes) the same way, pgbench's tables made afresh
(pgbench -i) before each of those runs and after the last, so no run sees another's updates;
with --grant read the users may not write and these runs are skipped, saying so. Last, a fresh
bastion process holds --idle N (default 1000) idle sessions (bench/pgidle.py): its RSS per
session, its audit scribe's apart; the upstream backends are not counted. Figures only, never
asserts speed.

Logins through the bastion use one-time tickets minted in its store. Every pgbench process opens
two connections (a setup connection, then its client), so each pgbench process is `-c 1 -j 1`
with a private passfile and a two-host connection string: the setup connection goes through a
one-shot local relay (ticket 1), which then refuses, so libpq moves on to the bastion itself
(ticket 2). "10 clients" is 10 such processes started together, TPS summed; direct and pgbouncer
runs use the same 10 x `-c 1` shape so the comparison is fair. The cluster's max_connections is
raised for the idle sessions, and this process's open-files limit to its hard limit (the
served bastion inherits it).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import pgcpu, pgidle, pgreport
from bench._common import ServedBastion
from bench.pgidle import Idle
from bench.pgreport import PAD, QUERIES, ROWS, SELECT, TPCB
from tests.flood import raise_fd_limit
from tests.harness import Bastion
from tests.oneshot import OneShotRelay, pgbench_via_bastion
from tests.realpg import (
    PGBENCH,
    PgCluster,
    PgDatabase,
    make_conninfo,
    pgbench_tps,
    psql_argv,
    psql_env,
    run_pgbench,
    run_psql,
)
from tests.realssh import free_port, wait_for_banner

PGBOUNCER = Path("/usr/sbin/pgbouncer")
USERS = [f"u{i}" for i in range(10)]
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway bench user
IDLE = 1000  # idle sessions held through the bastion (--idle; about 10 s, --quick too)


# --- pgbouncer -------------------------------------------------------------------------


def ensure_pgbouncer() -> None:
    if PGBOUNCER.exists():
        return
    install = ["apt-get", "install", "-y", "pgbouncer"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, capture_output=True, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, check=False)
        subprocess.run(install, capture_output=True, env=env, check=True)


def wait_port(port: int, alive: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            raise RuntimeError(f"the server for port {port} died")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on {port}")
        time.sleep(0.05)


def start_pgbouncer(directory: Path, db: PgDatabase) -> tuple[subprocess.Popen[bytes], int]:
    """pgbouncer as the postgres OS user, session pooling, SCRAM to client and server."""
    owner = pwd.getpwnam("postgres")
    port = free_port()
    (directory / "userlist.txt").write_text(f'"{db.user}" "{db.password}"\n')
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={db.host} port={db.port}\n[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {directory}/userlist.txt\n"
        "pool_mode = session\nmax_client_conn = 200\ndefault_pool_size = 20\n"
        f"logfile = {directory}/pgbouncer.log\npidfile = {directory}/pgbouncer.pid\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    for path in (directory, *directory.iterdir()):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    directory.chmod(0o700)
    proc = subprocess.Popen(
        [str(PGBOUNCER), str(directory / "pgbouncer.ini")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(directory / "stderr").open("wb"),
        user=owner.pw_uid,
        group=owner.pw_gid,
        extra_groups=[],
        start_new_session=True,
    )
    try:
        wait_port(port, lambda: proc.poll() is None)
    except RuntimeError:
        raise RuntimeError(
            "pgbouncer did not start: " + (directory / "stderr").read_text(errors="replace")
        ) from None
    return proc, port


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- pgbench ---------------------------------------------------------------------------


class Tickets:
    """Tickets minted in the bastion's store before it is served: per user, used in order."""

    def __init__(self, b: Bastion, target: str, per_user: int) -> None:
        expires = datetime.now(UTC) + timedelta(hours=2)
        self.left: dict[str, list[str]] = {}
        for user in USERS:
            tokens = [f"bt_{secrets.token_urlsafe(24)}" for _ in range(per_user)]
            for token in tokens:
                b.core.identity.add_ticket(user, target, token, expires, "bench")
            self.left[user] = tokens

    def take(self, user: str) -> str:
        return self.left[user].pop()


def pgbench_many(
    work: Path,
    db: PgDatabase,
    *,
    clients: int,
    mode: str,
    seconds: int,
    tickets: Tickets | None,
    sslmode: str = "disable",
    script: str = SELECT,
) -> float:
    """`clients` pgbench processes of -c 1 -j 1 running the built-in `script`, started
    together; their TPS summed."""
    procs: list[subprocess.Popen[str]] = []
    relays: list[OneShotRelay] = []
    args = ["-b", script, "-n", "-T", str(seconds), "-c", "1", "-j", "1", "-M", mode]
    try:
        for i in range(clients):
            if tickets is None:
                argv = [PGBENCH, *args, make_conninfo(db.params(with_password=False))]
                env = psql_env(db, {"PGSSLMODE": sslmode})
            else:
                user = USERS[i]
                pair = (tickets.take(user), tickets.take(user))
                argv, env, relay = pgbench_via_bastion(
                    work, db.replace(user=user), pair, args, sslmode
                )
                relays.append(relay)
            procs.append(_popen(argv, env))
        total = 0.0
        for proc in procs:
            out, err = proc.communicate(timeout=seconds + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"pgbench failed ({proc.returncode}):\n{out}{err}")
            total += pgbench_tps(out)
        return total
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for relay in relays:
            relay.close()


def _popen(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        start_new_session=True,
    )


# --- streaming -------------------------------------------------------------------------


def stream_seconds(db: PgDatabase, kind: str, sslmode: str = "disable") -> float:
    argv = psql_argv(db, *QUERIES[kind])
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=psql_env(db, {"PGSSLMODE": sslmode}),
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"psql {kind} failed: {done.stderr}")
    return elapsed


# --- the run ---------------------------------------------------------------------------


Results = dict[tuple[str, int, str], float]  # (script, clients, mode): TPS
Pids = Callable[[], dict[str, int]]  # a path's proxy processes by name, read when it starts


def bench_pgbench(
    work: Path,
    db: PgDatabase,
    seconds: int,
    tickets: Tickets | None,
    *,
    script: str = SELECT,
    before_each: Callable[[], None] | None = None,
    pids: Pids = dict,
    cpu: dict[tuple[str, int, str], pgcpu.Cpu] | None = None,
) -> Results:
    """Every mode at 1 and 10 clients; `cpu` gets what the processes `pids` names used."""
    found: Results = {}
    for mode in ("simple", "extended"):
        for clients in (1, 10):
            if before_each is not None:
                before_each()
            with pgcpu.metered(pids) as used:
                found[(script, clients, mode)] = pgbench_many(
                    work, db, clients=clients, mode=mode, seconds=seconds, tickets=tickets,
                    script=script,
                )  # fmt: skip
            if cpu is not None:
                cpu[(script, clients, mode)] = used
    return found


def init_pgbench(db: PgDatabase) -> None:
    """pgbench's tables at scale 1, dropped and made afresh (as the database's owner)."""
    done = run_pgbench(db, "-i", "-s", "1", "-q")
    if done.returncode != 0:
        raise RuntimeError(f"pgbench -i failed: {done.stderr}")


class Run:
    """Everything one bench run measures, and where it reaches the database."""

    def __init__(self, work: Path, seconds: int, db: PgDatabase, size: int, writes: bool) -> None:
        self.work, self.seconds, self.db, self.size = work, seconds, db, size
        self.writes = writes  # the bench users may write: the TPC-B-like runs go ahead
        self.tps: dict[str, Results] = {}
        self.streams: dict[tuple[str, str], float] = {}
        self.tls_tps: dict[str, float] = {}
        self.tls_streams: dict[str, float] = {}
        self.problems: list[str] = []
        self.idled: Idle | None = None
        self.cpu: dict[str, dict[tuple[str, int, str], pgcpu.Cpu]] = {}

    def pgbench(self, name: str, db: PgDatabase, tickets: Tickets | None,
                pids: Pids = dict) -> None:  # fmt: skip
        """pgbench -S on one path; `pids` names its proxy's processes, whose CPU is read."""
        cpu = self.cpu.setdefault(name, {})
        self.tps[name] = bench_pgbench(self.work, db, self.seconds, tickets, pids=pids, cpu=cpu)

    def tpcb(self, name: str, db: PgDatabase, tickets: Tickets | None,
             pids: Pids = dict) -> None:  # fmt: skip
        """The TPC-B-like script (writes), each run on pgbench's tables made afresh, and made
        afresh again after the last, so no path's runs see another's updates and rows."""
        if not self.writes:
            return
        fresh = functools.partial(init_pgbench, self.db)
        cpu = self.cpu.setdefault(name, {})
        self.tps[name].update(
            bench_pgbench(
                self.work,
                db,
                self.seconds,
                tickets,
                script=TPCB,
                before_each=fresh,
                pids=pids,
                cpu=cpu,
            )
        )
        fresh()

    def peers(self, via_bouncer: PgDatabase, bouncer: int) -> None:
        """Everything measured direct and through pgbouncer (process `bouncer`)."""
        db = self.db

        def pids() -> dict[str, int]:
            return {"pgbouncer": bouncer}

        self.pgbench("direct", db, None)
        self.pgbench("pgbouncer", via_bouncer, None, pids)
        self.tls("direct", db, None)
        for kind in QUERIES:
            for name, target in (("direct", db), ("pgbouncer", via_bouncer)):
                self.streams[(name, kind)] = stream_seconds(target, kind)
        self.tpcb("direct", db, None)
        self.tpcb("pgbouncer", via_bouncer, None, pids)

    def tls(self, name: str, db: PgDatabase, tickets: Tickets | None) -> None:
        """10 simple-protocol clients and the 1M-row SELECT, every connection over TLS."""
        self.tls_tps[name] = pgbench_many(self.work, db, clients=10, mode="simple",
                                          seconds=self.seconds, tickets=tickets,
                                          sslmode="require")  # fmt: skip
        target = db if tickets is None else db.replace(password=tickets.take(USERS[0]))
        self.tls_streams[name] = stream_seconds(target, "select", "require")

    def served(self, durability: str, b: Bastion, tickets: Tickets, via: PgDatabase) -> None:
        """The bastion as its own process with `durability`: pgbench, streams, TLS."""
        config = b.home / "bastion.toml"
        text = config.read_text().replace('"strict"', f'"{durability}"')
        config.write_text(text)
        served = ServedBastion(config, self.work / f"bastion-{durability}.log").start()

        def pids() -> dict[str, int]:
            return {"door": served.pid, **{name: pid for pid, name in
                                           pgidle.children(served.pid).items()}}  # fmt: skip

        try:
            wait_for_banner("127.0.0.1", b.port, timeout=30, alive=served.alive)
            self.pgbench(durability, via, tickets, pids)
            self.tls(durability, via, tickets)
            if durability == "strict":
                for kind in QUERIES:
                    ticket = via.replace(password=tickets.take(USERS[0]))
                    self.streams[("bastion", kind)] = stream_seconds(ticket, kind)
                check = via.replace(password=tickets.take(USERS[0]))
                ok = run_psql(check, "-At", "-c", "SELECT count(*) FROM big")
                if ok.stdout.strip() != str(ROWS):
                    self.problems.append(f"check through the bastion: {ok.stdout!r} {ok.stderr!r}")
            self.tpcb(durability, via, tickets, pids)
        finally:
            served.stop()
        self.log_problems(durability, served)

    def idle(self, b: Bastion, tickets: list[str], via: PgDatabase, cluster: PgCluster) -> Idle:
        """Sessions held open through the bastion, served afresh: its RSS per session."""
        log = self.work / "bastion-idle.log"
        idle, served = pgidle.measure(b, log, via, tickets, cluster)
        self.log_problems("idle sessions", served)
        return idle

    def log_problems(self, name: str, served: ServedBastion) -> None:
        lines, levels, worst = served.log_problems(limit=20)
        self.problems.append(f"bastion ({name}) log: {lines} lines, {levels}")
        self.problems.extend(f"  {line}" for line in worst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3-second pgbench runs")
    parser.add_argument(
        "--grant",
        choices=("write", "read"),
        default="write",
        help="the bench users' grant (read: strict reads go at once;"
        " the TPC-B-like runs are skipped)",
    )
    parser.add_argument("--idle", type=int, default=IDLE, metavar="N",
                        help="idle sessions held through the bastion")  # fmt: skip
    args = parser.parse_args()
    seconds = 3 if args.quick else 10
    idle = args.idle
    raise_fd_limit()  # the served bastion inherits it: two sockets per idle session
    ensure_pgbouncer()
    work = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    work.chmod(0o711)  # pgbouncer runs as postgres and must reach its own directory
    cluster: PgCluster | None = None
    bouncer: subprocess.Popen[bytes] | None = None
    try:
        # a backend per idle session, beside pgbouncer's pool and the pgbench clients
        extra = [f"max_connections = {max(300, idle + 100)}"]
        cluster = PgCluster(ssl=True, extra_config=extra).start()
        db = cluster.seed_orders("benchdb")
        init_pgbench(db)
        cluster.make_big_table(db, ROWS, pad=PAD)
        size = cluster.sql("SELECT sum(length(id::text) + length(pad) + 2) FROM big", db="benchdb")
        run = Run(work, seconds, db, int(size[0][0]), writes=args.grant == "write")
        bouncer_dir = work / "pgbouncer"
        bouncer_dir.mkdir()
        bouncer, bouncer_port = start_pgbouncer(bouncer_dir, db)
        via_bouncer = db.replace(port=bouncer_port)
        run.peers(via_bouncer, bouncer.pid)

        # The relay's own figures: masking (bench.masking) is switched off for this target.
        relay_only = '[audit]\ndurability = "strict"\n[targets.benchdb.masking]\nenabled = false\n'
        # The idle sessions are one person's: the door's caps on open sessions are raised.
        seats = idle + 100
        relay_only += f"[postgres]\nmax_sessions = {seats}\nmax_sessions_per_user = {seats}\n"
        b = Bastion(work / "bastion", relay_only, postgres=True)
        b.add_pg_target(db.database, db)
        for user in USERS:
            b.add_user(user, key=False, password=PASSWORD)
            b.grant(user, db.database, mode=args.grant)
        tickets = Tickets(b, db.database, per_user=80)
        idle_tickets = pgidle.mint(b, db.database, idle, PASSWORD)
        b.release()
        via_bastion = PgDatabase("127.0.0.1", b.pg_port, db.database, USERS[0], "")
        for durability in ("strict", "batched"):
            run.served(durability, b, tickets, via_bastion)
        run.idled = run.idle(b, idle_tickets, via_bastion, cluster)
        pgreport.report(run)
    finally:
        stop(bouncer)
        if cluster is not None:
            cluster.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
