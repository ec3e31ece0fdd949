"""Writes that chain no event run without the chain lock on PostgreSQL, and stay correct: the
lock-free cancel key claim decides in its unique key, a lock-free write that appends after all
takes the lock before it reads the head, and the single-use writes still wait for the lock.

Each race is forced, not hoped for: the test holds what the writes would wait for (the chain
lock, or an uncommitted row under the same key) until both wait for it, then lets them go."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest

from bastion.audit import Event, Store
from bastion.audit.base import _INSERT_EVENT
from bastion.audit.chain import GENESIS, link
from bastion.audit.location import PgLocation
from bastion.audit.sessions import CommandLine, FileOp
from bastion.clock import FakeClock, iso
from tests.audit.test_pgconn import WAIT, chain_waiters, in_thread, wait_until
from tests.realpg import PgCluster
from tests.storeadmin import hold_write_lock

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def stores(pg_store_at: PgLocation) -> Iterator[tuple[Store, Store]]:
    """Two stores on one PostgreSQL database (two connections, as two nodes hold)."""
    clock = FakeClock(START)
    first = Store.create(pg_store_at, clock)
    second = Store.open(pg_store_at, clock)
    yield first, second
    second.close()
    first.close()


def finished(work: Callable[[], Any]) -> Any:
    """work()'s result, run in a thread; fails if it is still waiting after WAIT seconds."""
    thread, out = in_thread(work)
    thread.join(WAIT)
    assert not thread.is_alive(), "the write waited for the chain lock"
    [result] = out
    if isinstance(result, BaseException):
        raise result
    return result


def row_waiters(cluster: PgCluster) -> int:
    """How many sessions wait for another transaction (a row under a unique key)."""
    rows = cluster.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid'"
                       " AND NOT granted")  # fmt: skip
    return int(rows[0][0])


def chain_waiters_of(cluster: PgCluster, store: Store) -> int:
    """How many sessions wait for `store`'s chain lock."""
    assert store.location is not None
    database = urlsplit(store.location.url).path.lstrip("/")
    return chain_waiters(cluster, database, store.location.schema)


def test_cancel_keys_and_session_activity_do_not_wait_for_the_chain_lock(
    stores: tuple[Store, Store], request: pytest.FixtureRequest
) -> None:
    first, _ = stores
    first.add_user("alice", "engineer", None, b"seed", "test")
    first.add_target(name="web-1", kind="ssh", host="127.0.0.1", port=22, login="x",
                     database=None, secret_sealed=b"s", actor="test")  # fmt: skip
    first.open_session(session_id="s-1", user="alice", target="web-1", grant_id=None,
                       protocol="ssh", client_addr="127.0.0.1")  # fmt: skip
    head = first.chain_head()
    lock = hold_write_lock(first, request)
    try:
        assert finished(lambda: first.claim_cancel_pid(42, "a", "127.0.0.1:6432", "s-1"))
        finished(lambda: first.release_cancel_pid(42, "a", "s-1"))
        finished(lambda: first.log_commands("s-1", [CommandLine(START, 0, "true")]))
        finished(lambda: first.log_file_ops("s-1", [FileOp(START, "read", "/etc/motd")]))
    finally:
        lock.close()
    assert first.cancel_owner(42) is None
    assert [c.text for c in first.commands("s-1")] == ["true"]
    assert [o.path for o in first.file_ops("s-1")] == ["/etc/motd"]
    assert first.chain_head() == head  # nothing chained by them


def test_one_pid_claimed_by_two_nodes_at_once_goes_to_one(
    stores: tuple[Store, Store], request: pytest.FixtureRequest
) -> None:
    """Without the chain lock the unique key decides: both claims wait on the test's own
    uncommitted row for the pid; once it is rolled back, exactly one of them holds it."""
    first, second = stores
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    lock = hold_write_lock(first, request)  # the test's transaction, on the store's schema
    lock.execute("INSERT INTO cancel_keys (pid, node, address, session_id, claimed_at)"
                 " VALUES (?,?,?,?,?)", (7, "x", "127.0.0.1:1", "s-x", iso(START)))  # fmt: skip
    try:
        claims = [
            in_thread(lambda: first.claim_cancel_pid(7, "a", "127.0.0.1:6432", "s-a")),
            in_thread(lambda: second.claim_cancel_pid(7, "b", "127.0.0.1:6433", "s-b")),
        ]
        wait_until(lambda: row_waiters(cluster) == 2, "both claims wait on the pid's row")
    finally:
        lock.close()  # rolled back: the pid is free again, and both go at once
    results = []
    for thread, out in claims:
        thread.join(WAIT)
        [result] = out
        results.append(result)
    assert sorted(results) == [False, True], results
    owner = first.cancel_owner(7)
    assert owner is not None and owner.node == ("a" if results[0] else "b")


def test_a_write_begun_without_the_lock_takes_it_before_reading_the_head(
    stores: tuple[Store, Store], request: pytest.FixtureRequest
) -> None:
    """The test chains an event itself while it holds the lock; a lock-free write that then
    appends waits for the lock and chains after that event, not over it."""
    first, second = stores
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    first.append_events([Event("test.first", "test", "")])
    lock = hold_write_lock(first, request)
    try:

        def late_append() -> None:
            with first._write(chained=False) as conn:
                first._append(conn, [Event("test.late", "test", "")])

        thread, out = in_thread(late_append)
        wait_until(lambda: chain_waiters_of(cluster, first) == 1, "the late append waits")
        seq, prev = second.chain_head()  # first's own lock is the waiting thread's
        assert seq >= 1 and prev != GENESIS
        row = link(Event("test.holder", "test", ""), seq + 1, iso(START), prev, None)
        lock.execute(_INSERT_EVENT, (row.seq, row.at, row.kind, row.severity, row.actor,
                                     row.subject, row.session_id, row.detail, row.prev_hash,
                                     row.row_hash, row.alg))  # fmt: skip
        lock.commit()
    finally:
        lock.close()
    thread.join(WAIT)
    assert out == [None], out
    kinds = [e.kind for e in first.events()]
    assert kinds[-2:] == ["test.holder", "test.late"]
    assert first.verify_chain().ok
