"""The decision feed on a real PostgreSQL: a decision committed by another connection wakes
it, a plain commit does not; a decision made while its connection is down wakes it by resync
when it is back; it reports its state and closes cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime

import pytest
from psycopg import sql as pgsql

from bastion.audit.listen import CHANNEL, DecisionFeed
from bastion.audit.location import PgLocation
from bastion.audit.qlogbind import KIND as QUERIES_COMMITTED
from bastion.clock import FakeClock
from bastion.tasks import running
from tests.audit.decisions_pg import SCHEMA, append, icu_store, location, store_conn
from tests.realpg import PgCluster, PgDatabase

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
BOUND = 10.0  # seconds any awaited state may take to show (it takes milliseconds)
PROBE = "probe"


@pytest.fixture(scope="module")
def db(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    with icu_store(pg_cluster) as found:
        yield found


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait, at most BOUND seconds, for `check` to hold."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {BOUND} s: {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def feed(db: PgDatabase) -> AsyncIterator[DecisionFeed]:
    """A feed on the store, connected; only a resync on (re)connect (no heartbeat soon)."""
    made = DecisionFeed.on(location(db), FakeClock(START), node="node-b", heartbeat=3600,
                           backoff=(0.01, 0.05))  # fmt: skip
    made.start()
    try:
        await until(lambda: made.state().connected, "the feed connects")
        yield made
    finally:
        await made.close()


async def test_a_decision_on_another_connection_wakes_the_feed(
    db: PgDatabase, feed: DecisionFeed
) -> None:
    assert not await feed.wait(0)
    with store_conn(db) as cli:
        (seq,) = append(cli, ["grant.revoked"])
        assert await feed.wait(BOUND)
        assert f"{SCHEMA} {seq}" in feed.heard
        names = cli.execute(
            "SELECT application_name FROM pg_stat_activity WHERE pid = %s", [feed.backend_pid]
        ).fetchall()
    assert names == [("bastion-listen/node-b",)]  # its own connection, named for operators
    assert feed.wakes == 1 and feed.resync_wakes == 0


async def test_a_plain_commit_does_not_wake_the_feed(db: PgDatabase, feed: DecisionFeed) -> None:
    with store_conn(db) as node_a:
        append(node_a, [QUERIES_COMMITTED] * 20)  # a busy commit of statements
        append(node_a, ["session.opened", "auth.failed"])
        node_a.execute("SELECT pg_notify(%s, %s)", [CHANNEL, f"other_schema {10**9}"])
        node_a.execute("SELECT pg_notify(%s, %s)", [CHANNEL, PROBE])
        # notices arrive in commit order: once the probe is heard, nothing else is coming
        await until(lambda: PROBE in feed.heard, "the probe is heard")
    assert list(feed.heard) == [f"other_schema {10**9}", PROBE]
    assert feed.wakes == 0 and not await feed.wait(0)


async def test_a_decision_made_while_disconnected_wakes_it_on_reconnect(
    db: PgDatabase, feed: DecisionFeed, pg_cluster: PgCluster
) -> None:
    """The feed's connection is killed (pg_terminate_backend) and kept from coming back while
    a decision is committed: no notice can reach it; the resync on reconnect finds it."""
    role = pgsql.Identifier(db.user)
    with store_conn(db) as cli:
        pg_cluster.sql(pgsql.SQL("ALTER ROLE {} NOLOGIN").format(role))
        try:
            pid = feed.backend_pid
            assert pid is not None
            pg_cluster.sql("SELECT pg_terminate_backend(%s)", params=[pid])
            await until(lambda: not feed.state().connected, "the feed sees its connection lost")
            await until(lambda: "not permitted to log in" in (feed.state().error or ""),
                        "a reconnect is refused")  # fmt: skip
            (seq,) = append(cli, ["session.kill_requested"])  # the CLI's session lives on
            append(cli, [QUERIES_COMMITTED])
        finally:
            pg_cluster.sql(pgsql.SQL("ALTER ROLE {} LOGIN").format(role))
        assert await feed.wait(BOUND)
    assert feed.state().connected and feed.connects == 2
    assert feed.resync_wakes == 1 and f"{SCHEMA} {seq}" not in feed.heard
    assert feed.state().checked_to == seq + 1


async def test_it_says_since_when_it_is_disconnected_and_never_the_password(
    db: PgDatabase,
) -> None:
    clock = FakeClock(START)
    wrong = PgLocation.handed(location(db).url, "not-the-password", schema=SCHEMA)
    feed = DecisionFeed.on(wrong, clock, backoff=(0.01, 0.05))
    feed.start()
    try:
        await until(lambda: "password authentication failed" in (feed.state().error or ""),
                    "the refusal is reported")  # fmt: skip
        clock.advance(60)
        tried = feed.attempts
        await until(lambda: feed.attempts > tried + 1, "it keeps trying")
        state = feed.state()
        assert not state.connected and state.since == START  # down since it started
        assert feed.connects == 0
        assert "not-the-password" not in repr(state) and db.password not in repr(state)
    finally:
        await feed.close()
    assert not feed.running


async def test_close_ends_the_task_and_the_connection(db: PgDatabase) -> None:
    feed = DecisionFeed.on(location(db), FakeClock(START), node="closing", backoff=(0.01, 0.05))
    feed.start()
    await until(lambda: feed.state().connected, "the feed connects")
    pid = feed.backend_pid
    await feed.close()
    assert not feed.running and feed.backend_pid is None
    assert not [t for t in running() if t.get_name() == "decision-feed"]
    assert feed.state().error == "closed" and not feed.state().connected
    assert await feed.wait(0)  # a consumer waiting is let go at once
    with store_conn(db) as cli:
        await until(
            lambda: (
                not cli.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchall()
            ),
            "the server has no connection of the feed left",
        )
    await feed.close()  # twice is harmless


async def test_the_heartbeat_finds_a_decision_no_notice_told_of(db: PgDatabase) -> None:
    """An event appended with the trigger off (as a restore with session_replication_role =
    replica would) sends no notice; the next heartbeat's resync by seq finds it."""
    feed = DecisionFeed.on(location(db), FakeClock(START), heartbeat=0.05)
    feed.start()
    try:
        await until(lambda: feed.state().connected, "the feed connects")
        with store_conn(db) as cli:
            with cli.transaction():
                cli.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_decided")
                (seq,) = append(cli, ["user.disabled"])
                cli.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_decided")
            assert await feed.wait(BOUND)
        assert feed.resync_wakes == 1 and f"{SCHEMA} {seq}" not in feed.heard
        looked = feed.resyncs
        await until(lambda: feed.resyncs >= looked + 3, "three more heartbeats")
        assert feed.resync_wakes == 1 and not await feed.wait(0)  # found once, not each time
        assert feed.state().checked_to == seq
    finally:
        await feed.close()


async def test_a_store_restored_to_a_shorter_chain_is_looked_at_again(db: PgDatabase) -> None:
    """A restore can put the chain's head below what the feed had looked at; the feed then
    looks from the new head, so decisions appended after the restore are not skipped."""
    feed = DecisionFeed.on(location(db), FakeClock(START), heartbeat=0.05)
    feed.start()
    try:
        with store_conn(db) as cli:
            kept = append(cli, [QUERIES_COMMITTED])[0]
            lost = append(cli, [QUERIES_COMMITTED] * 5)
            await until(lambda: feed.state().checked_to == lost[-1], "the feed looked")
            with cli.transaction():  # the restore (as the owner, append-only triggers off)
                cli.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
                cli.execute("DELETE FROM audit_events WHERE seq > %s", [kept])
                cli.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
            assert await feed.wait(BOUND)
            assert feed.state().checked_to == kept and feed.resync_wakes == 1
            with cli.transaction():  # a decision no notice tells of, below the old head
                cli.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_decided")
                (seq,) = append(cli, ["grant.revoked"])
                cli.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_decided")
            assert seq < lost[-1]
            assert await feed.wait(BOUND)
        assert feed.resync_wakes == 2 and f"{SCHEMA} {seq}" not in feed.heard
    finally:
        await feed.close()
