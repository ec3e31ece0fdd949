"""No socket outlives the SSH door: stopping it ends accepted connections and their upstream
ones, and a client that leaves while its target is being reached leaves no upstream behind."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from bastion.ssh import upstream
from bastion.ssh.door import SSHDoor
from tests.harness import Bastion
from tests.realssh import Sshd
from tests.ssh.test_door_admin import wait_until
from tests.ssh.test_door_auth import connect


def ssh_door(b: Bastion) -> SSHDoor:
    assert b.server is not None
    [door] = [d for d in b.server.doors if isinstance(d, SSHDoor)]
    return door


def test_stopping_the_door_closes_connected_clients(bastion: Bastion) -> None:
    async def open_session() -> tuple[Any, asyncssh.SSHClientProcess[Any]]:
        key = asyncssh.read_private_key(bastion.keys["alice"])
        conn, _ = await connect(bastion, "alice+web-1", [key], [bastion.code("alice")])
        process = await conn.create_process("sleep 30")
        return conn, process

    conn, _ = bastion.call(open_session())
    door = ssh_door(bastion)
    assert len(door.connections) == 1
    bastion.call(door.stop())
    assert door.connections == set()
    bastion.call(asyncio.wait_for(conn.wait_closed(), 10))  # the client saw it end


def test_a_client_leaving_while_its_target_is_reached_leaves_no_upstream(
    bastion: Bastion, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached: list[asyncssh.SSHClientConnection] = []
    real_connect = upstream.connect

    async def client_leaves_meanwhile(*args: Any, **kwargs: Any) -> asyncssh.SSHClientConnection:
        found = await real_connect(*args, **kwargs)
        reached.append(found)
        server.connection_lost(None)  # the engineer's connection drops at this moment
        return found

    async def log_in() -> Any:
        key = asyncssh.read_private_key(bastion.keys["alice"])
        conn, _ = await connect(bastion, "alice", [key], [bastion.code("alice")])
        return conn

    conn = bastion.call(log_in())
    [server] = ssh_door(bastion).connections
    monkeypatch.setattr(upstream, "connect", client_leaves_meanwhile)
    target = bastion.store.target("web-1")
    with pytest.raises(upstream.UpstreamError, match="closed while reaching the target"):
        bastion.call(server.upstream_for(target))
    [made] = reached
    bastion.call(asyncio.wait_for(made.wait_closed(), 10))
    assert server._upstreams == {}
    conn.close()


def test_a_session_killed_while_its_target_is_reached_ends_once_and_runs_nothing(
    tmp_path: Path, sshd: Sshd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill lands after the session row is open and before the target answers: the
    session ends once, as killed; no channel opens on the target afterwards, and nothing is
    left failing on the loop."""
    b = Bastion.with_alice(tmp_path / "bastion", sshd)
    b.start()
    errors: list[dict[str, Any]] = []
    b._loop.call_soon_threadsafe(b._loop.set_exception_handler,
                                 lambda loop, context: errors.append(context))  # fmt: skip
    real_connect = upstream.connect

    async def killed_meanwhile(*args: Any, **kwargs: Any) -> asyncssh.SSHClientConnection:
        [session] = b.store.sessions(open_only=True)
        b.store.request_kill(session.id, "admin", "stop now")
        while b.store.sessions(open_only=True):  # the watcher ends it
            await asyncio.sleep(0.05)
        return await real_connect(*args, **kwargs)

    monkeypatch.setattr(upstream, "connect", killed_meanwhile)

    async def run() -> tuple[Any, asyncssh.SSHCompletedProcess]:
        """The channel is ended; the client's connection stays open (it may open others)."""
        key = asyncssh.read_private_key(b.keys["alice"])
        conn, _ = await connect(b, "alice+web-1", [key], [b.code("alice")])
        done: asyncssh.SSHCompletedProcess = await conn.run("echo ran", check=False)
        return conn, done

    async def starting() -> bool:
        return any(getattr(t.get_coro(), "__name__", "") in ("_begin", "_open")
                   for t in asyncio.all_tasks())  # fmt: skip

    conn = None
    try:
        conn, done = b.call(run())
        assert "stop now" in str(done.stderr) and "ran" not in str(done.stdout)
        wait_until(lambda: not b.call(starting()))
        gc.collect()
        b.call(asyncio.sleep(0))
        [session] = b.store.sessions()
        assert (session.state, session.end_reason) == ("killed", "session ended by admin: stop now")
        assert len(b.events("session.closed")) == 1
        assert "Starting session" not in sshd.log_text()
        assert errors == []
    finally:
        if conn is not None:
            conn.close()
        b.stop()
