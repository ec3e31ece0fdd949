"""One TOTP code and one one-time ticket, offered at the same moment through two stores on one
PostgreSQL database (two connections, as two nodes hold): each is accepted once. The race is
forced, not hoped for: the test holds the store's writer lock until both offers wait for it
(seen in pg_locks), then lets them go together."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from bastion.audit import Store, TotpResult
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.config import LockoutPolicy, TotpPolicy
from bastion.errors import Denied
from bastion.identity import totp
from bastion.identity.sealing import SecretBox
from bastion.identity.service import Identity
from tests.audit.test_pgconn import WAIT, chain_waiters, in_thread, wait_until
from tests.realpg import PgCluster
from tests.storeadmin import hold_write_lock

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def two_nodes(where: PgLocation) -> tuple[Identity, Identity, str]:
    """Two identity services, each on a store connection of its own, and alice's seed."""
    clock, box = FakeClock(START), SecretBox(os.urandom(32))
    lockout = LockoutPolicy(max_failures=5, lock_for=timedelta(minutes=15))
    first = Identity(Store.create(where, clock), box, clock, TotpPolicy(), lockout)
    enrolment = first.enrol("alice", "engineer", None, "test")
    first.store.add_target(name="orders-prod", kind="postgres", host="127.0.0.1", port=5432,
                           login="svc", database="orders", secret_sealed=b"s",
                           actor="test")  # fmt: skip
    second = Identity(Store.open(where, clock), box, clock, TotpPolicy(), lockout)
    return first, second, enrolment.uri.split("secret=")[1].split("&")[0]


def at_once(
    offers: list[Callable[[], Any]], request: pytest.FixtureRequest, store: Store
) -> list[Any]:
    """Run the offers in threads while the writer lock is held; release it once every offer
    waits for it. Their results (or exceptions), in order."""
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    assert store.location is not None
    where = (urlsplit(store.location.url).path.lstrip("/"), store.location.schema)
    lock = hold_write_lock(store, request)
    try:
        started = [in_thread(offer) for offer in offers]
        wait_until(lambda: chain_waiters(cluster, *where) == len(offers),
                   "every offer to wait for the writer lock")  # fmt: skip
    finally:
        lock.close()
    results = []
    for thread, out in started:
        thread.join(WAIT)
        [result] = out
        results.append(result)
    return results


def test_one_code_offered_through_two_stores_at_once_is_accepted_once(
    pg_store_at: PgLocation, request: pytest.FixtureRequest
) -> None:
    first, second, seed = two_nodes(pg_store_at)
    code = totp.code_for_step(seed, totp.step_at(START))
    results = at_once([lambda: first.check_totp("alice", code, "ssh"),
                       lambda: second.check_totp("alice", code, "postgres")],
                      request, first.store)  # fmt: skip
    assert sorted(r.result.value for r in results) == ["accepted", "replayed"], results
    kinds = [e.kind for e in first.store.events() if e.subject == "alice"]
    assert kinds.count("auth.totp_ok") == 1
    assert first.check_totp("alice", code, "ssh").result is TotpResult.REPLAYED


def test_one_ticket_offered_through_two_stores_at_once_opens_once(
    pg_store_at: PgLocation, request: pytest.FixtureRequest
) -> None:
    first, second, _ = two_nodes(pg_store_at)
    first.add_ticket("alice", "orders-prod", "bt_raced", START + timedelta(minutes=10), "test")
    results = at_once([lambda: first.use_ticket("alice", "orders-prod", "bt_raced", "postgres"),
                       lambda: second.use_ticket("alice", "orders-prod", "bt_raced", "postgres")],
                      request, first.store)  # fmt: skip
    used = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, Denied)]
    assert len(used) == 1 and len(refused) == 1, results
    kinds = [e.kind for e in first.store.events() if e.kind.startswith("auth.ticket_")]
    assert sorted(kinds) == ["auth.ticket_ok", "auth.ticket_refused"]
