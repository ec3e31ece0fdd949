"""The web listener's health check answers from the store without touching it on the event
loop: every store call it makes runs on the store's own thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiohttp

from bastion.audit import Store
from bastion.audit.chain import ChainedEvent
from bastion.clock import SystemClock
from bastion.config import load_config
from bastion.core import Core
from bastion.identity.sealing import SecretBox
from bastion.server import Server
from tests.realssh import free_port


class WatchedStore(Store):
    """The real store, noting which thread asks it for the latest events."""

    callers: list[str]

    def last_events(self, count: int) -> list[ChainedEvent]:
        self.callers.append(threading.current_thread().name)
        return super().last_events(count)


async def test_healthz_reads_the_store_off_the_event_loop(tmp_path: Path) -> None:
    port = free_port()
    config_path = tmp_path / "bastion.toml"
    config_path.write_text("[listeners.ssh]\nenabled = false\n[listeners.postgres]\n"
                           f"enabled = false\n[listeners.web]\nport = {port}\n")  # fmt: skip
    config = load_config(config_path)
    SecretBox.create_key_file(config.paths.secrets_key)
    store = WatchedStore.create(config.paths.store, SystemClock())
    assert isinstance(store, WatchedStore)
    store.callers = []
    core = Core(config, store, SecretBox.load(config.paths.secrets_key), SystemClock())
    server = Server(core)
    await server.start()
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            body = await response.json()
        assert response.status == 200 and body["status"] == "ok" and body["audit_head"] > 0
        assert store.callers, "the health check did not ask the store"
        loop_thread = threading.current_thread().name
        assert loop_thread not in store.callers
        assert all(name.startswith("bastion-store") for name in store.callers)
    finally:
        await server.stop()
        await asyncio.get_running_loop().run_in_executor(None, core.shutdown)
        store.close()
