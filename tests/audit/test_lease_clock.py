"""Leases and the lost-node decision on PostgreSQL are judged on the database's clock: two nodes
on one store whose own clocks disagree (one five minutes fast, one five minutes slow) still
agree on who holds what and on who is lost, so a fast node neither takes a live node's lease
nor closes its sessions, and a slow one keeps nothing past its expiry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bastion.access.storegrace import presence_ttl
from bastion.audit import Store
from bastion.audit.cluster import node_lease
from bastion.audit.location import PgLocation
from bastion.audit.lostnodes import LostClose
from bastion.clock import FakeClock
from bastion.config import load_config
from bastion.core import Core
from bastion.identity.sealing import SecretBox
from bastion.recording.completer import LEASE, Completer
from bastion.server import ServeError, Server
from tests.storeadmin import admin_of

SKEW = timedelta(minutes=5)  # far past what NTP lets two hosts drift apart
GRACE = timedelta(seconds=30)
LOST_AFTER = timedelta(seconds=30)  # the least [cluster] lost_after there is


def skewed(by: timedelta) -> FakeClock:
    """A node's own clock, `by` off the real time (the database's clock is the real one)."""
    return FakeClock(datetime.now(UTC) + by)


def direct(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@pytest.fixture
def honest(pg_store_at: PgLocation) -> Iterator[Store]:
    """Node a's store; a's clock is right."""
    made = Store.create(pg_store_at, skewed(timedelta(0)))
    made.add_user("alice", "engineer", None, b"seed", "test")
    made.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="x",
                    database=None, secret_sealed=b"s", actor="test")  # fmt: skip
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def fast(honest: Store, pg_store_at: PgLocation) -> Iterator[Store]:
    """Node b's store on the same database; b's clock runs five minutes fast."""
    made = Store.open(pg_store_at, skewed(SKEW))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def slow(honest: Store, pg_store_at: PgLocation) -> Iterator[Store]:
    """Node c's store on the same database; c's clock runs five minutes slow."""
    made = Store.open(pg_store_at, skewed(-SKEW))
    try:
        yield made
    finally:
        made.close()


def test_a_fast_node_never_takes_a_live_nodes_lease(honest: Store, fast: Store) -> None:
    held = honest.take_lease(LEASE, "a", LOST_AFTER, quiet=True)
    assert held is not None
    assert fast.take_lease(LEASE, "b", LOST_AFTER, quiet=True) is None
    assert honest.still_holds(held)
    found = fast.lease(LEASE)
    assert found is not None and (found.holder, found.term) == ("a", 1)
    # b's own lease runs on the database's clock too, not five minutes ahead of it
    mine = fast.take_lease(node_lease("b"), "b", presence_ttl(GRACE), quiet=True)
    assert mine is not None and mine.expires_at < fast.clock.now()
    assert honest.live_nodes() == ["b"] and fast.live_nodes() == ["b"]


def test_a_fast_node_sees_a_live_node_alive_and_never_lost(honest: Store, fast: Store) -> None:
    assert honest.take_lease(node_lease("a"), "a", presence_ttl(GRACE), quiet=True)
    assert fast.live_nodes() == ["a"]
    assert fast.lost_since("a", LOST_AFTER) is None


def test_a_fast_nodes_completer_closes_nothing_of_a_live_node(honest: Store, fast: Store) -> None:
    assert honest.take_lease(node_lease("a"), "a", presence_ttl(GRACE), quiet=True)
    honest.open_session(session_id="s-a", user="alice", target="web-1", grant_id=None,
                        protocol="postgres", client_addr="10.0.0.7", node="a")  # fmt: skip
    assert honest.claim_cancel_pid(77, "a", "10.0.0.1:6432", "s-a")
    done = Completer(fast, direct, None, "b", LOST_AFTER, left=lambda path: None).round()
    assert done.held and done.closed == []
    # and the store's own re-check, even when asked straight
    since = datetime.now(UTC) - timedelta(hours=1)
    assert not fast.close_lost_session("s-a", LostClose("a", "b", LOST_AFTER), since)
    assert fast.forget_lost_node("a", LOST_AFTER, "b", 0) == 0
    assert honest.session("s-a").state == "open"
    assert honest.cancel_owner(77) is not None
    assert not [e for e in honest.events() if e.kind == "cluster.node_lost"]


def test_a_slow_node_sees_a_released_lease_free_and_a_long_gone_node_lost(
    honest: Store, slow: Store, pg_store_at: PgLocation
) -> None:
    assert honest.take_lease(LEASE, "a", LOST_AFTER, quiet=True)
    assert honest.release_lease(LEASE, "a")
    taken = slow.take_lease(LEASE, "c", LOST_AFTER, quiet=True)  # free now, by every clock
    assert taken is not None and (taken.holder, taken.term) == ("c", 2)
    # node d's presence ran out two minutes ago by the database's clock: a test stands a
    # clock in for the database's, on the one store it writes d's presence through
    writer = Store.open(pg_store_at, skewed(timedelta(0)))
    try:
        writer.store_clock = skewed(-timedelta(minutes=2) - presence_ttl(GRACE))
        assert writer.take_lease(node_lease("d"), "d", presence_ttl(GRACE), quiet=True)
    finally:
        writer.close()
    since = slow.lost_since("d", LOST_AFTER)
    assert since is not None and since < datetime.now(UTC) - timedelta(minutes=1)
    assert "d" not in slow.live_nodes()


def test_a_fast_node_never_starts_as_a_live_nodes_namesake(
    honest: Store, pg_store_at: PgLocation, tmp_path: Path
) -> None:
    """Node a is alive (it renews its presence); a second process configured as node a,
    on a host whose clock runs fast, refuses to start rather than closing a's sessions."""
    honest.open_session(session_id="s-a", user="alice", target="web-1", grant_id=None,
                        protocol="ssh", client_addr="10.0.0.7", node="a")  # fmt: skip
    stop = threading.Event()

    def renew() -> None:
        while not stop.is_set():
            honest.take_lease(node_lease("a"), "a", presence_ttl(GRACE), quiet=True)
            stop.wait(0.2)

    renewing = threading.Thread(target=renew)
    renewing.start()
    config_path = tmp_path / "bastion.toml"
    config_path.write_text('[cluster]\nnode = "a"\n')
    config = load_config(config_path)
    SecretBox.create_key_file(config.paths.secrets_key)
    clock = skewed(SKEW)
    store = Store.open(pg_store_at, clock)
    server = Server(Core(config, store, SecretBox.load(config.paths.secrets_key), clock))
    try:
        with pytest.raises(ServeError, match="another bastion is serving as node 'a'"):
            server.recover()
    finally:
        stop.set()
        renewing.join(10)
        server.core.shutdown()
        store.close()
    assert honest.session("s-a").state == "open"


def test_the_databases_time_is_read_in_utc_whatever_its_time_zone(
    honest: Store, pg_store_at: PgLocation, request: pytest.FixtureRequest
) -> None:
    """The lease columns hold iso() text in UTC: a node whose sessions run in UTC+14 (a
    database's or a role's TimeZone) writes and compares the same instants as one in UTC."""
    admin = admin_of(honest, request)
    database = urlsplit(pg_store_at.url).path.lstrip("/")
    try:
        admin.execute(f"ALTER DATABASE \"{database}\" SET timezone = 'Pacific/Kiritimati'")
    finally:
        admin.close()
    far_east = Store.open(pg_store_at, skewed(timedelta(0)))
    try:
        assert far_east._rows("SELECT current_setting('TimeZone') AS tz")[0]["tz"] == (
            "Pacific/Kiritimati"
        )
        held = far_east.take_lease(LEASE, "e", LOST_AFTER, quiet=True)
        assert held is not None
        assert abs(held.taken_at - datetime.now(UTC)) < timedelta(minutes=1)
        assert honest.take_lease(LEASE, "a", LOST_AFTER, quiet=True) is None
        assert honest.still_holds(held) and far_east.still_holds(held)
    finally:
        far_east.close()
