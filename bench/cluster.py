"""Logins through HAProxy in front of two nodes vs one node: python -m bench.cluster [--count N]

In one run, on one private PostgreSQL 15 cluster and one private sshd: two `bastion serve`
processes (nodes) on one store (--store: the SQLite file, the embedded default, or one
PostgreSQL 15 database on a second private cluster, durable: fsync on; each node then has its
own head file and anchor sink, as serve requires), and a real HAProxy in TCP mode in front
of both (round robin, send-proxy-v2, health checks on /healthz over TLS every 2 s, as
docs/haproxy.cfg). Each node trusts HAProxy's address
(listeners.proxy_from), so it reads the PROXY header on HAProxy's connections only.

  pg login+SELECT 1   asyncpg over TLS: connect (a one-time ticket), SELECT 1, close; N in a
                      row after one uncounted (p50, p95), and N by --concurrency clients at
                      once (logins/s): PostgreSQL itself, one node directly, and HAProxy over
                      the two nodes
  ssh login+true      asyncssh: key + TOTP, `true`, close; --ssh in a row after one
                      uncounted (p50), one node directly and HAProxy over the two nodes
                      (0: skipped)
  spread              the connections HAProxy sent to each node

Ratios are to one node directly. Figures only, never asserts speed. --store both runs the
whole bench once per store, one after the other, and prints both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import asyncssh

from bastion.audit import ChainKey, Store
from bastion.audit.location import PgLocation
from bastion.clock import SystemClock
from bastion.core import Core
from bastion.errors import StoreError
from bench._common import ServedBastion
from bench.ssh import TotpClient, UserPool
from tests.harness import Bastion
from tests.realhaproxy import BALANCER, HAProxy, Route
from tests.realpg import PgCluster, PgDatabase, random_password
from tests.realssh import Sshd, free_port, wait_for_banner

USERS = [f"u{i}" for i in range(12)]
PASSWORD = "bench-password-1"  # noqa: S105 - a throwaway bench user
TARGET_SSH = "web-1"
STORES = ("sqlite", "postgresql")
DURABLE = ["fsync = on", "full_page_writes = on", "synchronous_commit = on"]


def store_toml(home: Path, where: Path | PgLocation, node: str) -> str:
    """The store a node serves, as bastion.toml text: the home's SQLite file (nothing to
    say), or the shared PostgreSQL store with this node's own head file and anchor sink."""
    text = f'[cluster]\nnode = "{node}"\n'
    if isinstance(where, PgLocation):
        text += (f'[store]\nurl = "{where.url}"\npassword_file = "{where.password_file}"\n'
                 f'head_file = "store-{node}.head"\n'
                 f'[audit]\nanchors = ["file:{home}/anchors-{node}.log"]\n')  # fmt: skip
    return text


class PgStoreBastion(Bastion):
    """The harness's home with its store on PostgreSQL instead of the SQLite file: users,
    targets, grants and tickets then go to the store the nodes share."""

    def __init__(self, home: Path, where: PgLocation) -> None:
        super().__init__(home, postgres=True)
        self.core.shutdown()
        self.store.close()
        for path in home.glob(f"{self.config.paths.store.name}*"):  # the file, -wal, .head
            path.unlink()
        self.store = Store.create(where, self.clock, ChainKey.of(self.box), "setup")
        self.core = Core(self.config, self.store, self.box, self.clock)


@dataclass
class Node:
    name: str
    ssh: int = field(default_factory=free_port)
    pg: int = field(default_factory=free_port)
    web: int = field(default_factory=free_port)

    def config(self, home: Path, where: Path | PgLocation) -> Path:
        """This node's bastion.toml in the shared home: its own ports, the shared files."""
        path = home / f"bastion-{self.name}.toml"
        path.write_text(
            f'[listeners]\nproxy_from = ["{BALANCER}/32"]\n'
            f"[listeners.ssh]\nport = {self.ssh}\n[listeners.postgres]\nport = {self.pg}\n"
            f"[listeners.web]\nport = {self.web}\n{store_toml(home, where, self.name)}",
            encoding="utf-8",
        )
        return path


class Tickets:
    """One-time tickets minted in the store before the nodes serve it, used in order."""

    def __init__(self, b: Bastion, target: str, count: int) -> None:
        expires = datetime.now(UTC) + timedelta(hours=2)
        self.left: list[tuple[str, str]] = []
        for i in range(count):
            user, token = USERS[i % len(USERS)], f"bt_{secrets.token_urlsafe(24)}"
            b.core.identity.add_ticket(user, target, token, expires, "bench")
            self.left.append((user, token))

    def take(self) -> tuple[str, str]:
        return self.left.pop()


async def pg_login(port: int, user: str, password: str, database: str) -> float:
    """Seconds for connect (TLS), SELECT 1 and close."""
    start = time.perf_counter()
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=user, password=password,
                                 database=database, ssl="require")  # fmt: skip
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    return time.perf_counter() - start


async def in_a_row(login: Callable[[], Awaitable[float]], count: int) -> list[float]:
    """`count` logins one after another, after one not counted (warm caches on every path)."""
    await login()
    return [await login() for _ in range(count)]


async def at_once(login: Callable[[], Awaitable[float]], count: int, clients: int) -> float:
    """Logins per second with `clients` logging in at once, `count` in all."""
    left = count

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await login()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return count / (time.perf_counter() - start)


@dataclass
class Figures:
    p50: float
    p95: float
    rate: float


def figures(times: list[float], rate: float) -> Figures:
    ordered = sorted(times)
    return Figures(statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))], rate)


async def bench_pg(ports: dict[str, int], db: PgDatabase, tickets: Tickets, count: int,
                   clients: int) -> dict[str, Figures]:  # fmt: skip
    found = {}
    for path, port in ports.items():

        async def login(port: int = port, path: str = path) -> float:
            if path == "postgres":
                return await pg_login(port, db.user, db.password, db.database)
            user, ticket = tickets.take()
            return await pg_login(port, user, ticket, db.database)

        times = await in_a_row(login, count)
        found[path] = figures(times, await at_once(login, count, clients))
    return found


async def bench_ssh(ports: dict[str, int], pool: UserPool, known: Path, count: int
                    ) -> dict[str, float]:  # fmt: skip
    """Median seconds for a login (key + TOTP), `true` and close, per path."""
    found = {}
    for path, port in ports.items():

        async def login(port: int = port) -> float:
            user, _, code = pool.take()
            start = time.perf_counter()
            conn = await asyncssh.connect(
                "127.0.0.1", port, username=f"{user}+{TARGET_SSH}", client_keys=[pool.key(user)],
                known_hosts=str(known), client_factory=lambda: TotpClient(code),
                agent_path=None, config=None, preferred_auth="publickey,keyboard-interactive",
            )  # fmt: skip
            async with conn:
                await conn.run("true", check=True)
            return time.perf_counter() - start

        found[path] = statistics.median(await in_a_row(login, count))
    return found


def report(args: argparse.Namespace, store: str, pg: dict[str, Figures],
           ssh: dict[str, float], spread: dict[str, int]) -> None:  # fmt: skip
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cluster bench (2-core machine shared by clients, HAProxy, two nodes, PostgreSQL 15"
          f" and sshd; store: {store}; TLS; {args.count} logins per path; load average"
          f" {load})")  # fmt: skip
    one = pg["one node"]
    print(f"{'pg login+SELECT 1':<22}{'p50 ms':>9}{'p95 ms':>9}"
          f"{f'logins/s @{args.concurrency}':>16}{'p50/one':>10}{'rate/one':>10}")  # fmt: skip
    for path, f in pg.items():
        print(f"  {path:<20}{f.p50 * 1000:>9.1f}{f.p95 * 1000:>9.1f}{f.rate:>16.1f}"
              f"{f.p50 / one.p50:>9.2f}x{f.rate / one.rate:>9.2f}x")  # fmt: skip
    if ssh:
        print(f"{'ssh login+true':<22}{'p50 ms':>9}{'p50/one':>28}")
        for path, seconds in ssh.items():
            ratio = seconds / ssh["one node"]
            print(f"  {path:<20}{seconds * 1000:>9.1f}{ratio:>27.2f}x")
    print("spread (connections HAProxy sent each node, health checks apart): "
          + ", ".join(f"{name} {n}" for name, n in spread.items()))  # fmt: skip


@contextmanager
def shared_store(store: str, work: Path) -> Iterator[PgLocation | None]:
    """None for the SQLite file; else an empty database on a private PostgreSQL 15 cluster
    of its own (durable, unlike the target's), owned by a role that is not a superuser."""
    if store == "sqlite":
        yield None
        return
    cluster = PgCluster(extra_config=DURABLE).start()
    try:
        role, password = "bastion_store", random_password()
        cluster.create_role(role, password)
        cluster.create_database("bastion", role)
        secret = work / "store.password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        url = f"postgresql://{role}@{cluster.host}:{cluster.port}/bastion"
        yield PgLocation(url, password_file=secret, head_file=work / "setup.head")
    finally:
        cluster.close()


def chain_after(b: Bastion, where: PgLocation | None) -> str:
    """What `audit verify` would say of the shared chain once the nodes stopped (node a's
    head file on PostgreSQL)."""
    if where is not None:
        where = PgLocation(where.url, password_file=where.password_file,
                           head_file=b.home / "store-a.head")  # fmt: skip
    try:
        store = Store.open(where or b.config.paths.store, SystemClock(), ChainKey.of(b.box))
        try:
            found = store.verify_chain()
        finally:
            store.close()
    except StoreError as exc:
        return f"BROKEN: {exc}"
    if not found.ok:
        return f"BROKEN at seq {found.bad_seq}: {found.problem}"
    return f"ok ({found.checked:,} events)"


def setup(work: Path, where: PgLocation | None, cluster: PgCluster, sshd: Sshd,
          count: int) -> tuple[Bastion, PgDatabase, Tickets, UserPool]:  # fmt: skip
    """The shared home, its store filled: users, the two targets, grants, tickets."""
    db = cluster.seed_orders(f"benchdb{secrets.token_hex(3)}")
    home = work / "bastion"
    b = Bastion(home, postgres=True) if where is None else PgStoreBastion(home, where)
    b.add_pg_target(db.database, db)
    b.add_target(TARGET_SSH, sshd)
    for user in USERS:
        b.add_user(user, password=PASSWORD)
        b.grant(user, db.database)
        b.grant(user, TARGET_SSH)
    tickets = Tickets(b, db.database, 4 * count + 8)
    pool = UserPool(dict(b.seeds), dict(b.keys))
    b.release()
    return b, db, tickets, pool


def run(args: argparse.Namespace, store: str, cluster: PgCluster, sshd: Sshd) -> None:
    """The whole bench on one kind of store: a home of its own, two nodes, HAProxy."""
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    served: list[ServedBastion] = []
    try:
        with shared_store(store, work) as where:
            b, db, tickets, pool = setup(work, where, cluster, sshd, args.count)
            nodes = [Node("a"), Node("b")]
            try:
                for node in nodes:
                    config = node.config(b.home, where or b.config.paths.store)
                    served.append(ServedBastion(config, work / f"node-{node.name}.log").start())
                    wait_for_banner("127.0.0.1", node.ssh, timeout=30, alive=served[-1].alive)
                pg, ssh, spread = measure(
                    args, b, nodes, db=db, tickets=tickets, pool=pool, work=work
                )
            finally:
                for name, process in zip("ab", served, strict=False):
                    process.stop()
                    lines, levels, worst = process.log_problems()
                    print(f"node {name} log: {lines} lines {levels or ''}", *worst, sep="\n  ")
            report(args, store, pg, ssh, spread)
            print(f"audit chain after the run ({store}): {chain_after(b, where)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, b: Bastion, nodes: list[Node], *, db: PgDatabase,
            tickets: Tickets, pool: UserPool, work: Path
            ) -> tuple[dict[str, Figures], dict[str, float], dict[str, int]]:  # fmt: skip
    """HAProxy in front of the two serving nodes; the logins through each path."""
    lb = HAProxy(work / "haproxy", [
        Route("ssh", [n.ssh for n in nodes]), Route("postgres", [n.pg for n in nodes]),
        Route("web", [n.web for n in nodes], check_ports=[n.web for n in nodes]),
    ], inter="2s")  # fmt: skip
    with lb:
        lb.wait_up("web_nodes")
        pg_ports = {"postgres": db.port, "one node": nodes[0].pg,
                    "haproxy, two nodes": lb.port("postgres")}  # fmt: skip
        pg = asyncio.run(bench_pg(pg_ports, db, tickets, args.count, args.concurrency))
        ssh: dict[str, float] = {}
        if args.ssh:
            known = work / "known_hosts"
            public = Path(f"{b.config.paths.ssh_host_key}.pub").read_text().split()
            known.write_text("".join(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n"
                                     for port in (nodes[0].ssh, lb.port("ssh"))))  # fmt: skip
            ssh_ports = {"one node": nodes[0].ssh, "haproxy, two nodes": lb.port("ssh")}
            ssh = asyncio.run(bench_ssh(ssh_ports, pool, known, args.ssh))
        spread = {f"node {n.name}": lb.stat("postgres_nodes", f"node{i}", "stot")
                  + lb.stat("ssh_nodes", f"node{i}", "stot")
                  for i, n in enumerate(nodes)}  # fmt: skip
    return pg, ssh, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="pg logins per path and way")
    parser.add_argument("--concurrency", type=int, default=8, help="pg clients at once")
    parser.add_argument("--ssh", type=int, default=8, help="ssh logins per path (0: none)")
    parser.add_argument("--store", choices=[*STORES, "both"], default="sqlite")
    args = parser.parse_args()
    cluster, sshd = PgCluster(ssl=True), Sshd()
    try:
        cluster.start()
        sshd.start()
        for store in STORES if args.store == "both" else (args.store,):
            run(args, store, cluster, sshd)
    finally:
        sshd.close()
        cluster.close()


if __name__ == "__main__":
    main()
