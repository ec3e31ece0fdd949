"""Cancels during a drain: the PostgreSQL listener stays open for CancelRequest packets only,
so psql's Ctrl-C (and asyncpg's cancel) still stops a runaway query on the draining node;
anything else gets 57P03 and is closed; and the window shuts with the drain. Attacked: a
flood of connections during the drain opens no session, does not outlive the drain, and a
cancel stops only the session whose key it carries."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from bastion import pgwire
from bastion.core import STOPPING_REFUSAL
from bastion.pgproxy.door import PgDoor
from bastion.reload import STOPPING
from bastion.server import Server
from tests.harness import Bastion
from tests.nodes import key_of, running
from tests.realpg import PgDatabase, asyncpg_connect, psql_argv, psql_env
from tests.test_drain_logins import draining_an_hour
from tests.test_reload_stop import PASSWORD, until_async

SLEEP = "SELECT pg_sleep(60)"
FLOOD_FROM = "127.0.0.5"  # the flood's own address (the limits count per address)


@pytest.fixture
def bastion(tmp_path: Path, shop: PgDatabase) -> Iterator[Bastion]:
    """alice may read the shop; drains last an hour (ended by the second signal)."""
    b = draining_an_hour(tmp_path, shop)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def pg_door(b: Bastion) -> PgDoor:
    assert b.server is not None
    [door] = [d for d in b.server.doors if isinstance(d, PgDoor)]
    return door


def begin_drain(b: Bastion) -> Server:
    server = b.server
    assert server is not None
    b._loop.call_soon_threadsafe(server.lifecycle.terminate)
    b.call(until_async(lambda: b.core.stopping, "the drain to begin"))
    return server


def end_drain_and_stop(b: Bastion, server: Server) -> None:
    b._loop.call_soon_threadsafe(server.lifecycle.terminate)  # the second signal
    b.call(until_async(server._stopping.is_set, "the drain to end"))
    b.call(server.stop(), 60)
    b.server = None


def wait_running(pg: PgDatabase, count: int) -> None:
    deadline = time.monotonic() + 20
    while asyncio.run(running(pg, SLEEP)) != count:
        assert time.monotonic() < deadline, f"never {count} running"
        time.sleep(0.05)


def test_psql_ctrl_c_cancels_a_query_on_a_draining_node(bastion: Bastion, shop: PgDatabase) -> None:
    """psql's Ctrl-C opens a new connection with a CancelRequest: during the drain it still
    reaches the query; once the node has stopped the listener is gone."""
    b = bastion
    via = b.via_bastion("alice", "shop", PASSWORD)
    proc = subprocess.Popen(psql_argv(via, "-c", SLEEP), env=psql_env(via),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_running(shop, 1)
        server = begin_drain(b)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "canceling statement due to user request" in err
    assert "this node is stopping; your session ends in 3600 s" in err  # told, then cancelled
    assert b.events("query.cancelled")
    end_drain_and_stop(b, server)
    with pytest.raises(OSError):  # the drain is over: no cancel window, no listener
        socket.create_connection(("127.0.0.1", b.pg_port), timeout=5).close()


def test_a_database_login_that_decides_during_the_drain_is_refused_before_any_check(
    bastion: Bastion,
) -> None:
    """A login reaching the door during the drain is refused with 57P03 before its password
    is looked at: nothing is checked, no code is spent, no session row is written."""
    b = bastion
    server = b.server
    assert server is not None

    async def drained() -> BaseException:
        staying = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
        told: list[str] = []
        staying.add_log_listener(lambda _conn, message: told.append(message.message))
        via = b.via_bastion("alice", "shop", PASSWORD)  # a good code, never spent
        b._loop.call_soon_threadsafe(server.lifecycle.terminate)
        await until_async(lambda: told, "the live session's warning")
        with pytest.raises(asyncpg.PostgresError) as refused:
            await asyncpg_connect(via)
        await staying.close()
        found: BaseException = refused.value
        return found

    kinds_before = {e.kind for e in b.events()}
    refused = asyncio.run(drained())
    assert isinstance(refused, asyncpg.CannotConnectNowError) and str(refused) == STOPPING_REFUSAL
    assert len(b.store.sessions()) == 1  # the one live before the drain
    assert not {"auth.failed", "access.denied"} & ({e.kind for e in b.events()} - kinds_before)
    assert [e.kind for e in b.events()].count("auth.totp_ok") == 1  # the live session's only
    refusals = b.core.metrics.registry.get_sample_value(
        "bastion_login_refusals_total", {"door": "postgres", "reason": "stopping"}
    )
    assert refusals == 1
    end_drain_and_stop(b, server)


def startup_refusal(port: int) -> bytes:
    """A start-up packet on a new connection during the drain: what the door answers."""
    startup = struct.pack("!i", 196608) + b"user\x00alice\x00database\x00shop\x00\x00"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack("!i", len(startup) + 4) + startup)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return answer


def idle_connections(port: int, count: int) -> list[socket.socket]:
    """Connections from the flood's address that say nothing (each waits for its grace)."""
    made = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind((FLOOD_FROM, 0))
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port))
        made.append(sock)
    return made


def test_a_flood_during_the_drain_opens_nothing_and_ends_with_it_and_a_cancel_is_its_keys(
    bastion: Bastion, shop: PgDatabase
) -> None:
    b = bastion
    door = pg_door(b)

    async def two_sleeping() -> None:
        first = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
        second = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
        pid, secret = key_of(first)
        other_pid, _ = key_of(second)
        sleeping = [asyncio.ensure_future(c.fetchval(SLEEP)) for c in (first, second)]
        await until_async(lambda: len(door.live) == 2, "both sessions")
        await until_running(shop, 2)
        await asyncio.to_thread(begin_drain, b)
        flood = await asyncio.to_thread(idle_connections, b.pg_port, 8)
        answers = [await asyncio.to_thread(startup_refusal, b.pg_port) for _ in range(5)]
        for answer in answers:  # each start-up: one ErrorResponse, 57P03, then closed
            frames = pgwire.FrameReader(8192)
            frames.feed(answer)
            frame = frames.next_frame()
            assert frame is not None and frame.type == b"E" and frames.next_frame() is None
            assert b"C57P03\x00" in bytes(frame.body)
            assert STOPPING_REFUSAL.encode() in bytes(frame.body)
        wrong = pgwire.cancel_request(pid, (secret ^ 1).to_bytes(4, "big", signed=True))
        await asyncio.to_thread(send_packet, b.pg_port, wrong)
        crossed = pgwire.cancel_request(other_pid, secret.to_bytes(4, "big", signed=True))
        await asyncio.to_thread(send_packet, b.pg_port, crossed)
        assert await running(shop, SLEEP) == 2  # each was weighed before its door closed
        sleeping[0].cancel()  # asyncpg's own cancel: a CancelRequest on a new connection
        with pytest.raises(asyncio.CancelledError):
            await sleeping[0]
        await until_running(shop, 1)
        assert not sleeping[1].done()  # the other session's query runs on
        assert len(b.store.sessions()) == 2  # the flood opened nothing
        server = b.server
        assert server is not None
        await asyncio.to_thread(end_drain_and_stop, b, server)
        for sock in flood:  # the drain's end ended them: none waits out its login grace
            assert sock.recv(1) == b""
            sock.close()
        assert not door._handlers
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            await sleeping[1]
        for conn in (first, second):
            conn.terminate()

    asyncio.run(two_sleeping())
    rows = [(s.state, s.end_reason) for s in b.store.sessions()]
    assert rows == [("interrupted", STOPPING)] * 2
    whys = [json.loads(e.detail)["why"] for e in b.events("query.cancelled")]
    assert whys.count("the client sent a cancel request") == 1  # asyncpg's, and only it


async def until_running(pg: PgDatabase, count: int) -> None:
    deadline = time.monotonic() + 20
    while await running(pg, SLEEP) != count:
        assert time.monotonic() < deadline, f"never {count} running"
        await asyncio.sleep(0.05)


def send_packet(port: int, packet: bytes) -> None:
    """One start-up packet on a connection of its own; returns once the door has closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(packet)
        assert sock.recv(1) == b""
