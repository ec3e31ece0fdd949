"""The session watcher's grace against its presence lease and the wall clock, with the real
watcher on a real store that another connection locks (so no look can commit), and the
injectable clock: the node ends its sessions while every other node still sees its presence;
a step of the wall clock neither ends them nor gives the node more time without its store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from bastion.audit.cluster import node_lease
from bastion.clock import FakeClock, iso, parse_iso
from bastion.core import Core
from bastion.live import Killable
from tests.test_core import START, Session, make_core

GRACE = timedelta(seconds=30)  # the default [cluster] store_grace
CutOff = tuple[Core, FakeClock, Session, sqlite3.Connection]
BOUND = 20.0  # seconds of real time the watcher's ticks (every 0.5 s) may take: a safety net


async def until(predicate: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + BOUND
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def cut_off(
    tmp_path: Path,
) -> AsyncIterator[tuple[Core, FakeClock, Session, sqlite3.Connection]]:
    """A core watching one live session, its store locked by another connection once the
    watcher has renewed its presence, and four ticks later: no look completes from then on."""
    clock = FakeClock(START)
    core = make_core(tmp_path, clock)
    session = Session(broken=False)
    live: dict[str, Killable] = {"s1": session}
    watcher = asyncio.create_task(core.watch_sessions([live]))
    locker = sqlite3.connect(core.config.paths.store, isolation_level=None, timeout=30,
                             check_same_thread=False)  # fmt: skip
    try:
        await until(lambda: presence(locker, core) is not None)
        await asyncio.to_thread(locker.execute, "BEGIN EXCLUSIVE")
        await until(lambda: core.grace.misses >= 4)
        assert not session.ended and not core.grace.lost
        yield core, clock, session, locker
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await asyncio.to_thread(core.shutdown)
        core.store.close()


def presence(locker: sqlite3.Connection, core: Core) -> tuple[str, str] | None:
    """(renewed_at, expires_at) of the node's presence, as every other node reads it."""
    row = locker.execute("SELECT renewed_at, expires_at FROM leases WHERE name = ?",
                         (node_lease(core.node),)).fetchone()  # fmt: skip
    return None if row is None else (str(row[0]), str(row[1]))


async def test_a_node_ends_its_sessions_while_the_others_still_see_it_alive(
    tmp_path: Path,
) -> None:
    async with cut_off(tmp_path) as (core, clock, session, locker):
        found = presence(locker, core)
        assert found is not None
        renewed, expires = found
        clock.set(parse_iso(renewed))  # time passes: the grace since its last renewal, and 1 ms
        clock.advance(GRACE + timedelta(milliseconds=1))
        await until(lambda: bool(session.ended))
        assert session.ended[0][0] == "store_lost" and core.grace.lost
        # The others' view (live_nodes: expires_at > now): the node is still present.
        assert expires > iso(clock.now()), "another node took it for gone while it served"


async def test_a_wall_clock_stepped_ahead_ends_no_session(tmp_path: Path) -> None:
    async with cut_off(tmp_path) as (core, clock, session, _):
        clock.set(START + timedelta(days=1))  # a step: no time passed
        misses = core.grace.misses
        await until(lambda: core.grace.misses >= misses + 4)  # four more ticks
        assert not session.ended and not core.grace.lost


async def test_a_wall_clock_stepped_back_gives_no_more_time_without_the_store(
    tmp_path: Path,
) -> None:
    async with cut_off(tmp_path) as (core, clock, session, _):
        clock.set(START - timedelta(days=1))  # a step back...
        clock.advance(GRACE + timedelta(seconds=1))  # ...then the grace passes
        await until(lambda: bool(session.ended))
        assert session.ended[0][0] == "store_lost" and core.grace.lost
