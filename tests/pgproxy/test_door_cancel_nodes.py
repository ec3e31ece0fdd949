"""Cancels across nodes: two `bastion serve` processes (a and b) share one store, and a cancel
sent to either finds the session wherever it runs, while a wrong, stale or bounced one
cancels nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bastion import pgwire as pw
from bastion.audit import CancelOwner, ChainKey, Store
from bastion.clock import FakeClock
from bastion.errors import Exit
from bastion.pki import TlsFiles, make_tls
from tests.harness import CONFIG, Bastion
from tests.nodes import key_of, running, send_to, until
from tests.pgproxy.conftest import UNMASKED, alice_on
from tests.realhaproxy import HAProxy, Route
from tests.realpg import PgDatabase
from tests.realssh import free_port

SLEEP = "SELECT pg_sleep(60)"
NODE = """
[postgres]
cancel_advertise = "{advertise}"
[cluster]
node = "{name}"
[logging]
format = "json"
"""


class Node:
    """One `bastion serve` of the shared home, with its own config, ports and log."""

    def __init__(
        self, home: Path, name: str, advertise: str = "", pg_port: int = 0, extra: str = ""
    ) -> None:
        self.name, self.home = name, home
        self.ssh_port, self.pg_port = free_port(), pg_port or free_port()
        self.config = home / f"node-{name}.toml"
        self.log = home / f"node-{name}.log"
        text = CONFIG.format(port=self.ssh_port, postgres="true", pg_port=self.pg_port)
        text += UNMASKED + NODE.format(advertise=advertise, name=name) + extra
        self.config.write_text(text, encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, store: Store) -> None:
        """Serve, and return once this process has said in the store that it started."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bastion", "--config", str(self.config), "serve"],
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
        until(lambda: self._started(store), f"node {self.name} to start")

    def _started(self, store: Store) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"node {self.name} exited: {self.log.read_text()[-2000:]}")
        actor = f"serve:{self.proc.pid}"
        return any(e.kind == "bastion.started" and e.actor == actor for e in store.events())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logged(self, event: str) -> list[dict[str, Any]]:
        lines = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [line for line in found if line.get("event") == event]

    def cancel(self, pid: int, secret: int) -> None:
        """The 16 bytes asyncpg (or libpq) sends to cancel, sent to this node."""
        self.send(pw.cancel_request(pid, secret.to_bytes(4, "big", signed=True)))

    def send(self, packet: bytes) -> None:
        send_to(self.pg_port, packet)


class Cluster:
    """alice may read orders-prod (the test database) and holds one-time tickets; nodes a
    and b serve the one store."""

    def __init__(self, home: Path, pg: PgDatabase) -> None:
        b = alice_on(home, pg)
        expires = datetime.now(UTC) + timedelta(minutes=10)
        self.tickets = [f"bt_cancel-nodes-{n}" for n in range(3)]
        for ticket in self.tickets:
            b.core.identity.add_ticket("alice", "orders-prod", ticket, expires, "test")
        b.release()
        self.bastion: Bastion = b
        self.store = Store.open(b.config.paths.store, FakeClock(), ChainKey.of(b.box))
        self.nodes: dict[str, Node] = {}

    def node(self, name: str, advertise: str = "", pg_port: int = 0, extra: str = "") -> Node:
        self.nodes[name] = Node(self.bastion.home, name, advertise, pg_port, extra)
        return self.nodes[name]

    def url(self, node: Node) -> str:
        return PgDatabase("127.0.0.1", node.pg_port, "orders-prod", "alice",
                          self.tickets.pop(0)).url  # fmt: skip

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.store.close()


@pytest.fixture
def cluster(tmp_path: Path, pg: PgDatabase) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "bastion", pg)
    try:
        yield made
    finally:
        made.stop()


async def sleeping(pg: PgDatabase) -> int:
    """How many pg_sleep queries this test's database is running."""
    return await running(pg, SLEEP)


async def wait_until(check: Callable[[], Awaitable[object]], what: str) -> None:
    """Wait for observable state, bounded; fail naming what never happened."""
    deadline = time.monotonic() + 20
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def sleep_through(url: str, pg: PgDatabase) -> tuple[asyncpg.Connection, Any, int, int]:
    """A client running pg_sleep(60) through a node: its connection, the query's future,
    and the (pid, secret) the bastion gave it (what asyncpg itself would send to cancel)."""
    conn = await asyncpg.connect(url, ssl=False)
    query = asyncio.ensure_future(conn.fetchval(SLEEP))
    await wait_until(lambda: sleeping(pg), "the query to run upstream")
    return conn, query, *key_of(conn)


async def logged(node: Node, event: str) -> list[dict[str, Any]]:
    return node.logged(event)


def two_nodes(cluster: Cluster, advertise_a: str = "", extra: str = "") -> tuple[Node, Node]:
    a, b = cluster.node("a", advertise_a, extra=extra), cluster.node("b", extra=extra)
    a.start(cluster.store)
    b.start(cluster.store)
    return a, b


# -- the cancel finds its session ------------------------------------------------------------


# Behind load balancers the doors listen through the balancer-aware listener; the nodes reach
# each other directly (from addresses that are no balancer's).
BEHIND_BALANCERS = '[listeners]\nproxy_from = ["127.0.0.3"]\n'


@pytest.mark.parametrize("extra", ["", BEHIND_BALANCERS], ids=["plain", "behind-balancers"])
def test_a_query_through_node_a_is_cancelled_by_a_cancel_sent_to_node_b(
    cluster: Cluster, pg: PgDatabase, extra: str
) -> None:
    a, b = two_nodes(cluster, extra=extra)
    asyncio.run(_cancelled_through_b(cluster, a, b, pg))
    [routed] = b.logged("postgres.cancel_routed")
    assert routed["outcome"] == "forwarded to node a"
    # Node a sends the cancel on, then chains it: the client may hear of it first.
    until(lambda: cancelled(cluster) >= 1, "the cancel's event")
    assert cancelled(cluster) == 1


def cancelled(cluster: Cluster) -> int:
    return [e.kind for e in cluster.store.events()].count("query.cancelled")


async def _cancelled_through_b(cluster: Cluster, a: Node, b: Node, pg: PgDatabase) -> None:
    conn, query, pid, secret = await sleep_through(cluster.url(a), pg)
    try:
        assert cluster.store.cancel_owner(pid) == CancelOwner("a", f"127.0.0.1:{a.pg_port}")
        await asyncio.to_thread(b.cancel, pid, secret)
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(query, 20)
        assert await conn.fetchval("SELECT 1") == 1  # the session itself goes on
    finally:
        await conn.close()
    await wait_until(lambda: _released(cluster, pid), "the ended session's pid to be released")


async def _released(cluster: Cluster, pid: int) -> bool:
    return cluster.store.cancel_owner(pid) is None


# -- and nothing else does -------------------------------------------------------------------


def test_a_wrong_secret_sent_to_node_b_cancels_nothing(cluster: Cluster, pg: PgDatabase) -> None:
    a, b = two_nodes(cluster)
    asyncio.run(_wrong_secret(cluster, a, b, pg))


async def _wrong_secret(cluster: Cluster, a: Node, b: Node, pg: PgDatabase) -> None:
    conn, query, pid, secret = await sleep_through(cluster.url(a), pg)
    try:
        await asyncio.to_thread(b.cancel, pid, secret ^ 1)
        await wait_until(lambda: logged(a, "postgres.cancel_forwarded_here"),
                         "node a to weigh the forwarded cancel")  # fmt: skip
        [weighed] = a.logged("postgres.cancel_forwarded_here")
        assert (weighed["pid"], weighed["outcome"]) == (pid, "no such backend key")
        assert await sleeping(pg) == 1 and not query.done()  # still running
        await asyncio.to_thread(b.cancel, pid, secret)  # the right one still works
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(query, 20)
    finally:
        await conn.close()


def test_the_key_of_a_session_that_ended_cancels_nothing(cluster: Cluster, pg: PgDatabase) -> None:
    a, b = two_nodes(cluster)
    asyncio.run(_ended_key(cluster, a, b, pg))
    outcomes = [r["outcome"] for r in b.logged("postgres.cancel_routed")]
    assert outcomes == ["no such backend key"]  # looked up, and not forwarded anywhere


async def _ended_key(cluster: Cluster, a: Node, b: Node, pg: PgDatabase) -> None:
    ended = await asyncpg.connect(cluster.url(a), ssl=False)
    old_pid, old_secret = key_of(ended)
    assert cluster.store.cancel_owner(old_pid) is not None
    await ended.close()
    await wait_until(lambda: _released(cluster, old_pid), "the ended session's pid to go")
    conn, query, _, _ = await sleep_through(cluster.url(a), pg)
    try:
        await asyncio.to_thread(b.cancel, old_pid, old_secret)
        await asyncio.to_thread(a.cancel, old_pid, old_secret)
        assert await sleeping(pg) == 1 and not query.done()
    finally:
        query.cancel()
        conn.terminate()


def test_a_node_clears_its_stale_rows_when_it_starts(cluster: Cluster) -> None:
    """Rows a crashed node left name sessions that are gone: cleared when it starts again,
    and only its own."""
    cluster.store.claim_cancel_pid(1234567, "a", "127.0.0.1:1", "crashed-session")
    cluster.store.claim_cancel_pid(7654321, "c", "127.0.0.1:2", "another-nodes-session")
    a = cluster.node("a")
    a.start(cluster.store)
    assert cluster.store.cancel_owner(1234567) is None
    assert cluster.store.cancel_owner(7654321) == CancelOwner("c", "127.0.0.1:2")
    [cleared] = a.logged("postgres.cancel_keys_cleared")
    assert (cleared["node"], cleared["count"]) == ("a", 1)


def test_a_forwarded_cancel_is_never_forwarded_again(cluster: Cluster, pg: PgDatabase) -> None:
    """Node a advertises an address that reaches node b (a mistake an operator can make, as
    with the load balancer's address): b forwards the cancel once, to itself, and drops it
    there, rather than passing it round for ever."""
    b_port = free_port()
    a = cluster.node("a", f"localhost:{b_port}")
    b = cluster.node("b", pg_port=b_port)
    a.start(cluster.store)
    b.start(cluster.store)
    asyncio.run(_bounced(cluster, a, b, pg))
    b.stop()  # every handler done: the log is whole
    assert [r["outcome"] for r in b.logged("postgres.cancel_routed")] == ["forwarded to node a"]
    bounced = [(r["pid"], r["outcome"]) for r in b.logged("postgres.cancel_forwarded_here")]
    assert len(bounced) == 1 and bounced[0][1] == "no such backend key"


async def _bounced(cluster: Cluster, a: Node, b: Node, pg: PgDatabase) -> None:
    conn, query, pid, secret = await sleep_through(cluster.url(a), pg)
    try:
        await asyncio.to_thread(b.cancel, pid, secret)
        await wait_until(lambda: logged(b, "postgres.cancel_forwarded_here"),
                         "node b to drop the cancel it forwarded to itself")  # fmt: skip
        assert await sleeping(pg) == 1 and not query.done()
    finally:
        query.cancel()
        conn.terminate()


# -- what the lookup and the forward cost, and where they may go ------------------------------


def test_a_cancel_flood_looks_the_store_up_only_within_the_addresss_budget(
    cluster: Cluster,
) -> None:
    """Made-up pids from one address: the first 100 a minute are looked up, the rest are
    counted and dropped without touching the store."""
    b = cluster.node("b")
    b.start(cluster.store)
    for n in range(150):
        b.cancel(1_000_000 + n, 1)
    b.stop()  # every handler done, the summary written
    assert len(b.logged("postgres.cancel_routed")) == 100
    [summary] = [e for e in cluster.store.events() if e.kind == "query.cancel_request"]
    assert json.loads(summary.detail)["count"] == 150


class NotABastion:
    """A listener the store's row points at that is no bastion node: it answers the
    SSLRequest with 'N', or with TLS under a certificate of its own, and keeps every byte."""

    def __init__(self, tls: TlsFiles | None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.context: ssl.SSLContext | None = None
        if tls is not None:
            self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.context.load_cert_chain(tls.server_cert, tls.server_key)
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.settimeout(20)
        self.received.append(conn.recv(8))
        conn.sendall(b"N" if self.context is None else b"S")
        stream = conn
        try:
            if self.context is not None:
                stream = self.context.wrap_socket(conn, server_side=True)
            while chunk := stream.recv(64):
                self.received.append(chunk)
        except (OSError, ssl.SSLError):
            pass
        finally:
            stream.close()
            conn.close()
            self.sock.close()


@pytest.mark.parametrize("tls", [False, True], ids=["refuses-tls", "another-certificate"])
def test_a_row_pointing_at_something_else_gets_no_key(
    cluster: Cluster, tmp_path: Path, tls: bool
) -> None:
    """An admin with the store writes a row sending some pid's cancels to a service of their
    choosing: the node sends it an SSLRequest, sees it is not a bastion node, and stops."""
    peer = NotABastion(make_tls(tmp_path / "other") if tls else None)
    cluster.store.claim_cancel_pid(4242, "x", f"127.0.0.1:{peer.port}", "someones-session")
    b = cluster.node("b")
    b.start(cluster.store)
    b.cancel(4242, 0x5EC2E7)
    peer.thread.join(20)
    assert b"".join(peer.received) == pw.ssl_request()  # 8 fixed bytes; never the key
    [refused] = b.logged("postgres.cancel_peer_refused")
    assert refused["why"] == ("it showed another certificate than this node's" if tls
                              else "it refused TLS")  # fmt: skip


def test_a_client_cannot_pose_as_a_node(cluster: Cluster, pg: PgDatabase) -> None:
    """bastion's forwarded-cancel code, sent by a client (even with its own right key), is
    dropped: only a node can make the MAC a forwarded cancel carries."""
    a, _ = two_nodes(cluster)
    asyncio.run(_posing(cluster, a, pg))
    a.stop()  # the summary is written
    [summary] = [e for e in cluster.store.events() if e.kind == "query.cancel_request"]
    why = json.loads(summary.detail)["why"]
    assert why == {"forwarded cancel not from a node": 2, "cancelled": 1}
    assert [e.kind for e in cluster.store.events()].count("query.cancelled") == 1
    assert not a.logged("postgres.cancel_forwarded_here")


async def _posing(cluster: Cluster, a: Node, pg: PgDatabase) -> None:
    conn, query, pid, secret = await sleep_through(cluster.url(a), pg)
    key = secret.to_bytes(4, "big", signed=True)
    try:
        for forged in (key, key + bytes(32)):  # bare, and with a made-up MAC
            packet = pw.cancel_request(pid, forged, forwarded=True)
            await asyncio.to_thread(a.send, packet)
        assert await sleeping(pg) == 1 and not query.done()
        await asyncio.to_thread(a.cancel, pid, secret)
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(query, 20)
    finally:
        await conn.close()


def test_a_node_that_is_down_is_not_tried_again_at_once(cluster: Cluster) -> None:
    """The rows of a node that is down stay until it starts again: cancels quoting them try
    it once, then are dropped for a while, so they cannot hold every forwarding slot."""
    gone = socket.create_server(("127.0.0.1", 0))
    port = int(gone.getsockname()[1])
    gone.close()  # nothing listens there now: the node is down
    cluster.store.claim_cancel_pid(4343, "c", f"127.0.0.1:{port}", "a-session-on-c")
    b = cluster.node("b")
    b.start(cluster.store)
    b.cancel(4343, 1)
    b.cancel(4343, 2)
    outcomes = [r["outcome"] for r in b.logged("postgres.cancel_routed")]
    assert outcomes == ["node c could not be reached", "node c was unreachable a moment ago"]


def test_behind_haproxy_a_cancel_sent_to_node_b_cancels_the_query_on_node_a(
    cluster: Cluster, pg: PgDatabase, tmp_path: Path
) -> None:
    """The issue's check behind a real HAProxy (send-proxy-v2). The nodes sit on the
    balancers' own network (proxy_from covers the loopback addresses, theirs too), so each
    connection must open with a PROXY header: node b's forward to a opens with a LOCAL one."""
    a, b = two_nodes(cluster, extra='[listeners]\nproxy_from = ["127.0.0.0/16"]\n')
    with HAProxy(tmp_path / "haproxy", [Route("to_a", [a.pg_port]),
                                        Route("to_b", [b.pg_port])]) as lb:  # fmt: skip
        asyncio.run(_through_haproxy(cluster, lb, pg))
    assert [r["outcome"] for r in b.logged("postgres.cancel_routed")] == ["forwarded to node a"]


async def _through_haproxy(cluster: Cluster, lb: HAProxy, pg: PgDatabase) -> None:
    url = PgDatabase("127.0.0.1", lb.port("to_a"), "orders-prod", "alice",
                     cluster.tickets.pop(0)).url  # fmt: skip
    conn = await asyncpg.connect(url, ssl="require")  # TLS: the balancer's hop is a network's
    try:
        query = asyncio.ensure_future(conn.fetchval(SLEEP))
        await wait_until(lambda: sleeping(pg), "the query to run upstream")
        pid, secret = key_of(conn)
        cancel = pw.cancel_request(pid, secret.to_bytes(4, "big", signed=True))
        await asyncio.to_thread(send_to, lb.port("to_b"), cancel)
        with pytest.raises(asyncpg.QueryCanceledError):
            await asyncio.wait_for(query, 20)
    finally:
        await conn.close()


def test_a_node_whose_cancel_address_cannot_work_refuses_to_serve(cluster: Cluster) -> None:
    """An advertised address peers could not use is refused in one line when the door
    starts, not found out at the first cancel."""
    a = cluster.node("a", "bastion-1")  # no port
    done = subprocess.run([sys.executable, "-m", "bastion", "--config", str(a.config), "serve"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == Exit.CONFIG, done.stderr
    assert "postgres.cancel_advertise: 'bastion-1' is not host:port" in done.stderr
