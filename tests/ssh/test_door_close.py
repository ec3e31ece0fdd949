"""No socket outlives the SSH door: stopping it ends accepted connections and their upstream
ones, and a client that leaves while its target is being reached leaves no upstream behind."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh
import pytest

from bastion.ssh import upstream
from bastion.ssh.door import SSHDoor
from tests.harness import Bastion
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
