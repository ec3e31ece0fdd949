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
from tests.hostiles3 import HostileS3
from tests.reals3 import MotoS3
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


async def test_healthz_says_whether_the_object_store_takes_uploads(tmp_path: Path) -> None:
    """With [recordings] url: "failing" while the bucket is away and a spool file waits,
    "ok" with nothing waiting once it is back; no bucket or object name in the answer."""
    port = free_port()
    with MotoS3(tmp_path) as moto:
        moto.start()
        moto.write_credentials(tmp_path / "s3.credentials")
        config_path = tmp_path / "bastion.toml"
        config_path.write_text("[listeners.ssh]\nenabled = false\n[listeners.postgres]\n"
                               f"enabled = false\n[listeners.web]\nport = {port}\n"
                               + moto.config())  # fmt: skip
        config = load_config(config_path)
        left = config.paths.recordings / "2026" / "12" / "06" / "waiting.cast"
        left.parent.mkdir(parents=True)
        left.write_bytes(b"a recording in the spool")
        SecretBox.create_key_file(config.paths.secrets_key)
        store = Store.create(config.paths.store, SystemClock())
        core = Core(config, store, SecretBox.load(config.paths.secrets_key), SystemClock())
        await asyncio.to_thread(moto.stop)
        server = Server(core)
        await server.start()
        url = f"http://127.0.0.1:{port}/healthz"

        async def health_becomes(want: dict[str, object]) -> dict[str, object]:
            deadline = asyncio.get_running_loop().time() + 60  # a safety net, not a timing
            while True:
                async with aiohttp.ClientSession() as http, http.get(url) as response:
                    assert response.status == 200
                    body: dict[str, object] = await response.json()
                if body["recordings"] == want:
                    return body
                assert asyncio.get_running_loop().time() < deadline, body
                await asyncio.sleep(0.05)

        try:
            await health_becomes({"object_store": "failing", "uploads_waiting": 1})
            await asyncio.to_thread(moto.start)
            answer = await health_becomes({"object_store": "ok", "uploads_waiting": 0})
            assert "bastion-recordings" not in str(answer) and "waiting.cast" not in str(answer)
        finally:
            await server.stop()
            await asyncio.get_running_loop().run_in_executor(None, core.shutdown)
            store.close()


async def test_healthz_says_failing_while_a_broken_store_answers_writes_with_nothing(
    tmp_path: Path,
) -> None:
    """A store (or a proxy before it) that answers every write 200 with an empty document:
    nothing uploads, and /healthz must say so, not 'ok' (red-team finding 10)."""
    port = free_port()
    with HostileS3(head_size=None, empty_answers=True) as hostile:
        credentials = hostile.write_credentials(tmp_path / "s3.credentials")
        config_path = tmp_path / "bastion.toml"
        config_path.write_text("[listeners.ssh]\nenabled = false\n[listeners.postgres]\n"
                               f"enabled = false\n[listeners.web]\nport = {port}\n"
                               + hostile.config(str(credentials)))  # fmt: skip
        config = load_config(config_path)
        left = config.paths.recordings / "2026" / "12" / "06" / "stuck.cast"
        left.parent.mkdir(parents=True)
        left.write_bytes(b"a recording in the spool")
        SecretBox.create_key_file(config.paths.secrets_key)
        store = Store.create(config.paths.store, SystemClock())
        core = Core(config, store, SecretBox.load(config.paths.secrets_key), SystemClock())
        server = Server(core)
        await server.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60  # a safety net, not a timing
            while hostile.writes < 2:  # the first try and its retry both failed
                assert loop.time() < deadline, "the uploader never tried"
                await asyncio.sleep(0.05)
            url = f"http://127.0.0.1:{port}/healthz"
            async with aiohttp.ClientSession() as http, http.get(url) as response:
                body = await response.json()
        finally:
            await server.stop()
            await asyncio.get_running_loop().run_in_executor(None, core.shutdown)
            store.close()
    assert left.exists()
    assert body["recordings"] == {"object_store": "failing", "uploads_waiting": 1}, body
