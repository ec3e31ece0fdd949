"""/healthz says "starting" with a 503 until the node has really started (every door
listening, its `bastion.started` event chained), so a balancer's check keeps a node that is
still starting out; then "ok" with a 200. Checked by hand and by a real HAProxy."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bastion.audit import Store
from bastion.clock import SystemClock
from bastion.config import load_config
from bastion.core import Core
from bastion.identity.sealing import SecretBox
from bastion.pki import make_ssh_host_key, make_tls
from bastion.server import Server
from tests.realhaproxy import BALANCER, HAProxy, Route
from tests.realssh import free_port

BOUND = 30.0  # a safety net for waits, never a timing assertion


class HeldServer(Server):
    """The real server, held after its doors listen and before it chains bastion.started
    (the last start-up step before that event) until the test lets it go on."""

    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self.reached, self.go_on = asyncio.Event(), asyncio.Event()
        self.starting: asyncio.Task[None] | None = None

    async def _warn_weak_targets(self) -> None:
        self.reached.set()
        await self.go_on.wait()
        await super()._warn_weak_targets()


@asynccontextmanager
async def held_node(tmp_path: Path, listeners: str) -> AsyncIterator[HeldServer]:
    """A node with the doors `listeners` turns on (never the database door), its start in a
    task held as above; stopped at the end."""
    tmp_path.mkdir(exist_ok=True)
    config_path = tmp_path / "bastion.toml"
    config_path.write_text(listeners + "[listeners.postgres]\nenabled = false\n")
    config = load_config(config_path)
    SecretBox.create_key_file(config.paths.secrets_key)
    make_tls(config.paths.tls_cert.parent)
    make_ssh_host_key(config.paths.ssh_host_key)
    store = await asyncio.to_thread(Store.create, config.paths.store, SystemClock())
    core = Core(config, store, SecretBox.load(config.paths.secrets_key), SystemClock())
    server = HeldServer(core)
    server.starting = starting = asyncio.create_task(server.start())
    reached = asyncio.create_task(server.reached.wait())
    try:
        await asyncio.wait([starting, reached], timeout=BOUND,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        if starting.done():
            starting.result()  # start-up's own error, if it failed before the hold
        assert reached.done(), "the start-up never reached the hold"
        yield server
    finally:
        server.go_on.set()
        reached.cancel()
        await asyncio.gather(starting, reached, return_exceptions=True)
        await server.stop()
        await asyncio.get_running_loop().run_in_executor(None, core.shutdown)
        store.close()


async def health(port: int, ca: Path) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(ca))
    url = f"https://localhost:{port}/healthz"
    async with aiohttp.ClientSession() as http, http.get(url, ssl=context) as response:
        return response.status, await response.json()


async def test_healthz_says_starting_until_bastion_started_is_chained(tmp_path: Path) -> None:
    ssh, web = free_port(), free_port()
    doors = f"[listeners.ssh]\nport = {ssh}\n[listeners.web]\nport = {web}\n"
    async with held_node(tmp_path, doors) as server:
        ca = server.config.paths.tls_ca
        _, writer = await asyncio.open_connection("127.0.0.1", ssh)  # the SSH door listens
        writer.close()
        status, said = await health(web, ca)
        assert (status, said) == (503, {"status": "starting", "node": server.core.node})
        assert await kinds(server, "bastion.started") == 0
        server.go_on.set()
        assert server.starting is not None
        await asyncio.wait_for(server.starting, BOUND)
        assert await kinds(server, "bastion.started") == 1
        status, said = await health(web, ca)
        assert (status, said["status"], said["node"]) == (200, "ok", server.core.node)
        assert said["audit_head"] > 0


async def kinds(server: Server, kind: str) -> int:
    """How many events of `kind` the store holds (read off the event loop)."""
    found = await asyncio.to_thread(server.store.events)
    return sum(1 for event in found if event.kind == kind)


async def wait_status(lb: HAProxy, want: str) -> None:
    """Until HAProxy's checks put the node in state `want` (a safety net, not a timing)."""
    deadline = time.monotonic() + BOUND
    while (seen := await asyncio.to_thread(lb.statuses)) != {("web_nodes", "node0"): want}:
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.1)


async def test_haproxy_keeps_a_starting_node_out_then_lets_it_in(tmp_path: Path) -> None:
    web = free_port()
    doors = (f'[listeners]\nproxy_from = ["{BALANCER}/32"]\n[listeners.ssh]\nenabled = false\n'
             f"[listeners.web]\nport = {web}\n")  # fmt: skip
    async with held_node(tmp_path / "node", doors) as server:
        lb = HAProxy(tmp_path / "haproxy", [Route("web", [web], check_ports=[web])])
        await asyncio.to_thread(lb.start)
        try:
            await wait_status(lb, "DOWN")  # the web door answers, but 503: kept out
            assert await asyncio.to_thread(lb.stat, "web_nodes", "node0", "check_code") == 503
            server.go_on.set()
            await wait_status(lb, "UP")
        finally:
            await asyncio.to_thread(lb.stop)
