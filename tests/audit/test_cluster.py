"""Several nodes on one store: leases elect one holder at a time, sessions name their node, and
a node's start-up closes only the sessions it held."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bastion.audit import Store
from bastion.audit.cluster import node_lease
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.errors import Conflict
from tests.realpg import PgDatabase
from tests.storeadmin import hold_write_lock

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
MIGRATIONS = Path(__file__).resolve().parents[2] / "bastion" / "audit" / "migrations"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store(store_at: Path | PgLocation, clock: FakeClock) -> Store:
    made = Store.create(store_at, clock)
    if made.location is not None:  # the database's clock, which this test moves
        made.store_clock = clock  # (SQLite's is the store's own clock already)
    made.add_user("alice", "engineer", None, b"seed", "test")
    made.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="x",
                    database=None, secret_sealed=b"s", actor="test")  # fmt: skip
    return made


def test_a_lease_has_one_holder_until_it_expires(store: Store, clock: FakeClock) -> None:
    first = store.take_lease("uploads", "a", TTL)
    assert first is not None and (first.holder, first.term) == ("a", 1)
    assert store.take_lease("uploads", "b", TTL) is None  # a holds it
    clock.advance(20)
    renewed = store.take_lease("uploads", "a", TTL)  # mine: renewed, the same term
    assert renewed is not None and renewed.term == 1
    assert renewed.expires_at == START + timedelta(seconds=50)
    clock.advance(25)
    assert store.take_lease("uploads", "b", TTL) is None  # 45 s in: still a's
    clock.advance(6)
    taken = store.take_lease("uploads", "b", TTL)  # expired: b takes it, a new term
    assert taken is not None and (taken.holder, taken.term) == ("b", 2)
    assert store.take_lease("uploads", "a", TTL) is None
    found = store.lease("uploads")
    assert found is not None and found.holder == "b"
    events = [e for e in store.events() if e.kind == "cluster.lease_taken"]
    assert [(e.actor, e.subject) for e in events] == [("a", "uploads"), ("b", "uploads")]


def test_a_holder_can_tell_it_lost_its_lease(store: Store, clock: FakeClock) -> None:
    mine = store.take_lease("uploads", "a", TTL)
    assert mine is not None and store.still_holds(mine)
    clock.advance(31)
    assert not store.still_holds(mine)  # expired, even before anyone takes it
    again = store.take_lease("uploads", "a", TTL)  # nobody else held it meanwhile: same term
    assert again is not None and again.term == 1 and store.still_holds(again)
    clock.advance(31)
    theirs = store.take_lease("uploads", "b", TTL)
    assert theirs is not None and theirs.term == 2
    assert not store.still_holds(again) and store.still_holds(theirs)


def test_a_released_lease_is_free_at_once(store: Store) -> None:
    assert store.take_lease("uploads", "a", TTL) is not None
    assert not store.release_lease("uploads", "b")  # not b's to give up
    assert store.release_lease("uploads", "a")
    assert not store.release_lease("uploads", "a")  # released already
    taken = store.take_lease("uploads", "b", TTL)
    assert taken is not None and taken.term == 2


def test_a_lease_is_never_for_no_time(store: Store) -> None:
    with pytest.raises(ValueError, match="positive"):
        store.take_lease("uploads", "a", timedelta(0))


def test_two_stores_racing_for_a_lease_elect_one(store: Store, clock: FakeClock) -> None:
    """Eight connections to one store (as eight nodes), all at once: exactly one holder."""
    stores = [Store.open(store.location or store.file, clock) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    won: list[str] = []

    def race(i: int) -> None:
        barrier.wait()
        if stores[i].take_lease("uploads", f"n{i}", TTL) is not None:
            won.append(f"n{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for other in stores:
        other.close()
    found = store.lease("uploads")
    assert len(won) == 1 and found is not None and found.holder == won[0] and found.term == 1


def test_live_nodes_are_those_whose_presence_has_not_expired(store: Store,
                                                             clock: FakeClock) -> None:  # fmt: skip
    store.take_lease(node_lease("a"), "a", TTL)
    clock.advance(20)
    store.take_lease(node_lease("b"), "b", TTL)
    store.take_lease("uploads", "c", TTL)  # a job's lease is no node
    assert store.live_nodes() == ["a", "b"]
    clock.advance(11)
    assert store.live_nodes() == ["b"]
    store.release_lease(node_lease("b"), "b")
    assert store.live_nodes() == []


def _open(store: Store, session_id: str, node: str | None) -> None:
    store.open_session(session_id=session_id, user="alice", target="web-1", grant_id=None,
                       protocol="ssh", client_addr="10.0.0.7", node=node)  # fmt: skip


def test_sessions_name_their_node(store: Store) -> None:
    _open(store, "s-a", "a")
    row = store._rows("SELECT node FROM sessions WHERE id = 's-a'")[0]
    assert row["node"] == "a"
    [opened] = [e for e in store.events() if e.kind == "session.opened"]
    assert json.loads(opened.detail)["node"] == "a"


def test_a_node_closes_only_its_own_sessions_at_start_up(store: Store) -> None:
    _open(store, "s-a", "a")
    _open(store, "s-b", "b")
    _open(store, "s-old", None)  # opened before sessions named their node
    closed = store.close_interrupted("serve:1", node="a", unowned=False)
    assert closed == ["s-a"]
    assert store.session("s-b").ended_at is None and store.session("s-old").ended_at is None
    assert store.close_interrupted("serve:2", node="a", unowned=True) == ["s-old"]
    assert store.session("s-b").ended_at is None
    assert store.session("s-old").state == "interrupted"
    # Without a node (a tool, or one bastion alone): every open session, as before.
    assert store.close_interrupted("tool") == ["s-b"]


async def test_the_postgresql_twin_of_0021_makes_the_same_columns(pg: PgDatabase) -> None:
    """Applied to a real PostgreSQL 15 (on a stand-in for the sessions table its twins of
    0001-0020 make): the same names, bigint for integers, and byte order for every text."""
    sql = (MIGRATIONS / "postgresql" / "0021_cluster_nodes.sql").read_text(encoding="utf-8")
    assert sorted(p.name for p in MIGRATIONS.glob("0021_*.sql")) == ["0021_cluster_nodes.sql"]
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute("CREATE TABLE sessions (id text COLLATE \"C\" PRIMARY KEY,"
                           " ended_at text COLLATE \"C\")")  # fmt: skip
        async with conn.transaction():
            await conn.execute(sql)
        rows = await conn.fetch(
            "SELECT table_name, column_name, data_type, collation_name"
            " FROM information_schema.columns WHERE table_name = 'leases'"
            " OR (table_name = 'sessions' AND column_name = 'node')"
        )
        found = {(r["table_name"], r["column_name"]): (r["data_type"], r["collation_name"])
                 for r in rows}  # fmt: skip
        text = ("text", "C")
        assert found == {
            ("sessions", "node"): text, ("leases", "name"): text, ("leases", "holder"): text,
            ("leases", "term"): ("bigint", None), ("leases", "taken_at"): text,
            ("leases", "renewed_at"): text, ("leases", "expires_at"): text,
        }  # fmt: skip
        await conn.execute("INSERT INTO leases VALUES ('uploads', 'a', 1, 't', 't', 't')")
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("INSERT INTO leases VALUES ('other', 'a', 0, 't', 't', 't')")
    finally:
        await conn.close()


def closed_first_by_another(
    store: Store, session_id: str, call: Callable[[], object], request: pytest.FixtureRequest
) -> list[object]:
    """Run `call` (node a) while node b holds the write lock: a reads the session as open and
    waits; b closes it and commits; then a goes on. What a returned or raised."""
    other = hold_write_lock(store, request)
    outcome: list[object] = []

    def on_a() -> None:
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=on_a)
    thread.start()
    time.sleep(0.3)  # a has read the row (open) and waits for the lock
    other.execute(
        "UPDATE sessions SET ended_at = '2026-12-07T09:00:01.000000Z', state = 'interrupted',"
        " end_reason = 'b' WHERE id = ?",
        (session_id,),
    )
    other.commit()
    other.close()
    thread.join(30)
    return outcome


def test_a_session_closed_meanwhile_by_another_node_is_not_closed_twice(
    store: Store, request: pytest.FixtureRequest
) -> None:
    _open(store, "s-1", None)
    [raised] = closed_first_by_another(
        store, "s-1", lambda: store.close_session("s-1", "killed", "by an admin"), request
    )
    assert isinstance(raised, Conflict)
    assert store.session("s-1").end_reason == "b"  # b's close stands
    assert not [e for e in store.events() if e.kind == "session.closed"]
    # Two nodes starting at once, both adopting the unowned sessions: no failure, one close.
    _open(store, "s-2", None)
    closed = closed_first_by_another(
        store, "s-2", lambda: store.close_interrupted("a", node="a"), request
    )
    assert closed == [[]] and store.session("s-2").end_reason == "b"
