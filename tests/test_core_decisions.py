"""The session watcher acts on a decision as soon as the decision feed hears of it, not at
its next poll; with no feed (an SQLite store) it polls as before."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bastion import watch as watch_module
from bastion.audit.grants import NewGrant
from bastion.audit.listen import DecisionFeed
from bastion.clock import FakeClock, iso
from bastion.live import Killable
from tests.audit.decisions_pg import append, icu_store, location, store_conn
from tests.realpg import PgCluster, PgDatabase
from tests.test_core import START, Session, make_core

BOUND = 10.0  # seconds: what the test allows; the watcher takes milliseconds


@pytest.fixture(scope="module")
def db(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    with icu_store(pg_cluster) as found:
        yield found


async def test_a_decision_heard_wakes_the_watcher_long_before_its_poll(
    tmp_path: Path, db: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An hour between polls: the kill is acted on because the feed heard the decision."""
    monkeypatch.setattr(watch_module, "WATCH_EVERY", 3600.0)
    clock = FakeClock(START)
    core = make_core(tmp_path, clock)
    store = core.store
    store.add_user("alice", "engineer", None, b"sealed", "cli:root")
    store.add_target(name="orders-prod", kind="ssh", host="127.0.0.1", port=22, login="svc",
                     database=None, secret_sealed=b"x", actor="cli:root")  # fmt: skip
    grant = store.add_grant(NewGrant("orders-prod", "write", START, START + timedelta(minutes=30),
                                     "on call", "cli:root", user="alice"))  # fmt: skip
    store.open_session(session_id="s1", user="alice", target="orders-prod", grant_id=grant.id,
                       protocol="ssh", client_addr="127.0.0.1")  # fmt: skip
    feed = DecisionFeed.on(location(db), clock, heartbeat=3600)
    feed.start()
    core.decisions = feed
    session = Session(broken=False)
    live: dict[str, Killable] = {"s1": session}
    watcher = asyncio.create_task(core.watch_sessions([live]))
    try:
        await asyncio.wait_for(_connected(feed), BOUND)
        assert core.decisions_health() == {"listening": True, "since": iso(START)}
        store.request_kill("s1", "cli:root", "leaving the company")
        with store_conn(db) as other_node:
            append(other_node, ["session.kill_requested"])
        await asyncio.wait_for(session.ended_event.wait(), BOUND)
        assert session.ended[0][0] == "killed"
        await feed.close()
        assert core.decisions_health() == {
            "listening": False,
            "disconnected_since": iso(START),
            "error": "closed",
        }
    finally:
        watcher.cancel()
        await core.stop_decisions()
        core.shutdown()
    assert core.decisions is None and not feed.running


async def _connected(feed: DecisionFeed) -> None:
    while not feed.state().connected:
        await asyncio.sleep(0.01)


async def test_an_sqlite_store_starts_no_feed(tmp_path: Path) -> None:
    core = make_core(tmp_path, FakeClock(START))
    try:
        await core.start_decisions()
        assert core.decisions is None and core.decisions_health() is None
        await core.stop_decisions()  # harmless
    finally:
        core.shutdown()
