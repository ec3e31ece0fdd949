"""A login in progress as a drain begins: it starts no session on the draining node, and the
engineer is told so in the usual one line (`stopping`), on either door, rather than given a
session the drain's end cuts off without a word."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import asyncssh
import pytest

from bastion.core import STOPPING_REFUSAL
from bastion.server import Server
from tests.harness import Bastion
from tests.realpg import PgDatabase, asyncpg_connect
from tests.realssh import Sshd
from tests.ssh.test_door_auth import connect
from tests.test_reload_redteam import SlowRelay
from tests.test_reload_stop import PASSWORD, UNMASKED, until_async

REFUSED = f"bastion: {STOPPING_REFUSAL}"


@pytest.fixture
def bastion(tmp_path: Path, shop: PgDatabase, sshd: Sshd) -> Iterator[Bastion]:
    """alice may read the shop (masking off) and use web-1 (a real sshd); drains last an hour
    (a test ends one with the second signal, as an operator would)."""
    b = draining_an_hour(tmp_path, shop)
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def draining_an_hour(tmp_path: Path, shop: PgDatabase) -> Bastion:
    """A bastion (not started) where alice may read the shop, masking off; its drains last an
    hour."""
    b = Bastion(tmp_path / "bastion", UNMASKED, postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.add_pg_target("shop", shop)
    b.grant("alice", "shop")
    policy = b.core.config
    b.core.reconfigure(replace(policy, sessions=replace(policy.sessions, drain=timedelta(hours=1))))
    return b


def running_server(b: Bastion) -> Server:
    assert b.server is not None
    return b.server


def stop_after_drain(b: Bastion) -> None:
    """The second signal ends the hour's drain; then the server stops."""
    server = running_server(b)
    b._loop.call_soon_threadsafe(server.lifecycle.terminate)
    b.call(until_async(server._stopping.is_set, "the drain to end"))
    b.call(server.stop(), 60)
    b.server = None


def stopping_refusals(b: Bastion, door: str) -> float:
    found = b.core.metrics.registry.get_sample_value(
        "bastion_login_refusals_total", {"door": door, "reason": "stopping"}
    )
    return found or 0.0


def test_a_database_login_that_goes_live_during_the_drain_is_refused_as_stopping(
    bastion: Bastion, shop: PgDatabase
) -> None:
    """Its access decision came before the drain; its upstream login was still on its way (a
    slow relay holds it) when the drain began. It must not become a session that the drain's
    end cuts off unwarned: the client gets 57P03 with the stopping line, no AuthenticationOk,
    and its row closes as refused; the session live before the drain is told and goes on."""
    b = bastion
    server = running_server(b)

    async def race() -> tuple[BaseException, list[str], int]:
        relay = SlowRelay(shop)
        await relay.start()
        try:
            return await through(relay)
        finally:
            await relay.close()

    async def through(relay: SlowRelay) -> tuple[BaseException, list[str], int]:
        b.add_pg_target("slowshop", replace(shop, port=relay.port))
        b.grant("alice", "slowshop")
        staying = await asyncpg_connect(b.via_bastion("alice", "shop", PASSWORD))
        told: list[str] = []
        staying.add_log_listener(lambda _conn, message: told.append(message.message))
        connecting = asyncio.ensure_future(
            asyncpg_connect(b.via_bastion("alice", "slowshop", PASSWORD), timeout=60)
        )
        await asyncio.wait_for(relay.arrived.wait(), 20)  # decided, row open, upstream waits
        b._loop.call_soon_threadsafe(server.lifecycle.terminate)
        await until_async(lambda: told, "the live session's warning")
        relay.go.set()
        with pytest.raises(asyncpg.PostgresError) as refused:
            conn = await connecting
            await conn.close()  # (not reached: a session opened during the drain)
        alive = await staying.fetchval("SELECT 1")
        await staying.close()
        return refused.value, told, alive

    refused, told, alive = asyncio.run(race())
    assert isinstance(refused, asyncpg.CannotConnectNowError)  # 57P03, as PostgreSQL says it
    assert str(refused) == STOPPING_REFUSAL
    assert told == ["this node is stopping; your session ends in 3600 s"] and alive == 1
    rows = {s.target: (s.state, s.end_reason) for s in b.store.sessions()}
    assert rows["slowshop"] == ("refused", STOPPING_REFUSAL)
    assert rows["shop"][0] == "closed"  # ended by itself during the drain
    assert stopping_refusals(b, "postgres") == 1
    stop_after_drain(b)


def test_an_ssh_login_whose_code_is_typed_during_the_drain_is_refused_in_one_line(
    bastion: Bastion, tmp_path: Path
) -> None:
    """OpenSSH asks for the code; the engineer types it after the drain began: the bastion
    says the node is stopping, in the usual one line, and starts no session (the login is
    refused before the code is checked: ssh exits 255, as for any refused login)."""
    b = bastion
    server = running_server(b)
    asked, drained = threading.Event(), threading.Event()

    def answer(prompt: str) -> str | None:
        if "Verification code" not in prompt:
            return None
        asked.set()
        drained.wait(30)  # the engineer is typing while the drain begins
        return b.code("alice")

    ssh = b.openssh("alice", tmp_path / "client")
    outcome: list[object] = []

    def run() -> None:
        outcome.append(ssh.run_ssh("echo hello", login="alice+web-1", answers=answer))

    client = threading.Thread(target=run)
    client.start()
    try:
        assert asked.wait(30), "the bastion never asked for the code"
        b._loop.call_soon_threadsafe(server.lifecycle.terminate)
        b.call(until_async(lambda: b.core.stopping, "the drain to begin"))
    finally:
        drained.set()
        client.join(60)
    [result] = outcome
    assert result.returncode == 255 and result.out == ""  # type: ignore[attr-defined]
    assert REFUSED in result.err  # type: ignore[attr-defined]
    assert not b.store.sessions()
    assert stopping_refusals(b, "ssh") == 1
    stop_after_drain(b)


def test_an_ssh_session_that_goes_live_during_the_drain_is_refused_in_one_line(
    bastion: Bastion,
) -> None:
    """Its access decision was on its way (the store's thread busy) when the drain began: once
    decided, it must not go live unwarned; it is refused in the same line, its row closed."""
    b = bastion
    server = running_server(b)
    busy = threading.Event()

    async def race() -> tuple[int | None, str]:
        key = asyncssh.read_private_key(b.keys["alice"])
        conn, _ = await connect(b, "alice+web-1", [key], [b.code("alice")])
        async with conn:
            parked = b.core._executor.submit(busy.wait, 30)  # the store's one thread, held
            process = await conn.create_process("echo hello", encoding=None)
            await until_async(lambda: b.call(awaiting("ssh-begin", "decide"), 5),
                              "the channel's decision to wait for the store")  # fmt: skip
            b._loop.call_soon_threadsafe(server.lifecycle.terminate)
            await until_async(lambda: b.core.stopping, "the drain to begin")
            busy.set()
            await asyncio.wrap_future(parked)
            done = await asyncio.wait_for(process.wait(), 30)
            return done.exit_status, (done.stderr or b"").decode()

    status, err = asyncio.run(race())
    assert status == 1 and REFUSED in err
    asyncio.run(until_async(lambda: b.store.sessions()[0].state != "open", "the row to close"))
    [row] = b.store.sessions()
    assert (row.target, row.state, row.end_reason) == ("web-1", "refused", STOPPING_REFUSAL)
    assert stopping_refusals(b, "ssh") == 1
    stop_after_drain(b)


async def awaiting(task_name: str, function: str) -> bool:
    """Whether a task of that name is suspended inside `function` (read on the bastion's own
    loop: which await each coroutine of the task is at)."""
    for task in asyncio.all_tasks():
        if task.get_name() != task_name:
            continue
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None)
            if frame is not None and frame.f_code.co_name == function:
                return True
            coro = getattr(coro, "cr_await", None)
    return False
