"""A role that may only connect to the store's database (PostgreSQL grants CONNECT to PUBLIC by
default: any login on a shared cluster, a target's own role say) must not stop every node's
writes by taking the store's lock keys itself (red team red18c 1)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from bastion.audit import Store
from bastion.audit.chain import Event
from bastion.audit.dialect import CHAIN_LOCK, MIGRATION_LOCK
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.errors import StoreError
from tests.realpg import PgCluster, PgDatabase, psycopg_connect, random_password, unique_name

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def outsider(pg_cluster: PgCluster, pg_store_at: PgLocation) -> Iterator[PgDatabase]:
    """A login role with no grant of any kind, on the store's database."""
    role, password = unique_name("outsider"), random_password()
    pg_cluster.create_role(role, password)
    database = urlsplit(pg_store_at.url).path.lstrip("/")
    try:
        yield PgDatabase(pg_cluster.host, pg_cluster.port, database, role, password, pg_cluster)
    finally:
        pg_cluster.sql(f'DROP OWNED BY "{role}"', database)
        pg_cluster.drop_role(role)


@pytest.mark.xfail(
    strict=True,
    reason="red18c 1: the chain and migration locks are advisory keys (bastion/audit/dialect.py,"
    " pgconn.py BEGIN_WRITE/BEGIN_MIGRATION) that any role able to connect may hold",
)
def test_a_role_without_grants_cannot_hold_the_stores_writes(
    pg_store_at: PgLocation, outsider: PgDatabase
) -> None:
    """The outsider holds, at session level (no transaction for the server to cut off), the
    keys every write and every start takes; a node then still opens the store and writes (or
    the store refuses to serve where roles not its own can connect at all)."""
    clock = FakeClock(START)
    try:
        first = Store.create(pg_store_at, clock)
    except StoreError:
        return  # refused outright: no role but the store's may connect
    first.close()
    with psycopg_connect(outsider, autocommit=True) as conn:
        for key in (CHAIN_LOCK, MIGRATION_LOCK):
            (held,) = conn.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone() or (0,)
            assert held is True  # it can: nothing of the store's is needed for that
        node = Store.open(pg_store_at, clock)  # a node starting: the migration lock
        try:
            node.append_events([Event("test.written", "test", "", "notice", None, {})])
        finally:
            node.close()
