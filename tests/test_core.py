"""The core's session watcher: one session that fails to end must not keep any other from
ending on time, nor stop the watcher."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bastion.audit import Store
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.core import Core
from bastion.identity.sealing import SecretBox
from bastion.live import Killable

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Session:
    """A live session as a door keeps it; `broken` ones fail when told to end."""

    def __init__(self, *, broken: bool) -> None:
        self.broken = broken
        self.target_name = "orders-prod"
        self.opened_at = START
        self.last_input = START
        self.ended: list[tuple[str, str]] = []
        self.ended_event = asyncio.Event()

    async def terminate(self, state: str, message: str) -> None:
        self.ended.append((state, message))
        self.ended_event.set()
        if self.broken:
            raise RuntimeError("the client's transport is in a bad state")


def make_core(tmp_path: Path, clock: FakeClock) -> Core:
    config_path = tmp_path / "bastion.toml"
    config_path.write_text('[sessions]\nmax_length = "1h"\n')
    config = load_config(config_path)
    SecretBox.create_key_file(config.paths.secrets_key)
    store = Store.create(config.paths.store, clock)
    return Core(config, store, SecretBox.load(config.paths.secrets_key), clock)


async def test_one_session_failing_to_end_does_not_stop_the_others(tmp_path: Path) -> None:
    clock = FakeClock(START)
    core = make_core(tmp_path, clock)
    broken, good, later = Session(broken=True), Session(broken=False), Session(broken=False)
    live: dict[str, Killable] = {"a-broken": broken, "b-good": good}
    clock.advance(timedelta(hours=2))  # past max_length: every session must end now
    watcher = asyncio.create_task(core.watch_sessions([live]))
    try:
        await asyncio.wait_for(good.ended_event.wait(), 10)
        assert broken.ended and good.ended[0][0] == "session_cap"
        live["c-later"] = later  # the watcher is still looking, a round later
        await asyncio.wait_for(later.ended_event.wait(), 10)
        assert not watcher.done()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, core.shutdown)
        core.store.close()
