"""A role that may only connect to the store's database (PostgreSQL grants CONNECT to PUBLIC by
default: any login on a shared cluster, a target's own role say) must not stop every node's
writes by taking the store's locks itself (red team red18c 1)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql as pgsql

from bastion.audit import Store
from bastion.audit.base import migrations
from bastion.audit.chain import Event
from bastion.audit.dialect import MIGRATION_LOCK
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from tests.realpg import PgCluster, PgDatabase, psycopg_connect, random_password, unique_name
from tests.test_cli_pgstore_restore import UNDO_LAST_MIGRATION

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


def test_a_role_without_grants_cannot_hold_the_stores_writes(
    pg_store_at: PgLocation, outsider: PgDatabase, pg_cluster: PgCluster
) -> None:
    """The outsider holds, at session level (no transaction for the server to cut off), the
    only advisory key the store still names, and cannot lock the chain's table; a node then
    still opens the store, migrates (a migration locks the migrations table, not the key)
    and writes."""
    clock = FakeClock(START)
    first = Store.create(pg_store_at, clock)
    latest = max(number for number, _, _ in migrations("postgresql"))
    for statement in UNDO_LAST_MIGRATION[latest].split(";"):  # one left to apply
        first.conn.execute(statement)
    first.close()
    with psycopg_connect(outsider, autocommit=True) as conn:
        held = conn.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK]).fetchone()
        assert held == (True,)  # it can: nothing of the store's is needed for that
        node = Store.open(pg_store_at, clock)  # a node starting: it applies 0024
        try:
            node.append_events([Event("test.written", "test", "", "notice", None, {})])
            assert node.verify_chain().ok
        finally:
            node.close()

    # Even a role an admin let read the store cannot take the chain's lock.
    schema, table = (
        pgsql.Identifier(pg_store_at.schema),
        pgsql.Identifier(pg_store_at.schema, "chain_lock"),
    )
    role = pgsql.Identifier(outsider.user)
    pg_cluster.sql(pgsql.SQL("GRANT USAGE ON SCHEMA {} TO {}; GRANT SELECT ON {} TO {}")
                         .format(schema, role, table, role), outsider.database)  # fmt: skip
    refused = pytest.raises(psycopg.errors.InsufficientPrivilege, match="chain_lock")
    with psycopg_connect(outsider) as conn, refused, conn.transaction():
        conn.execute(pgsql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
