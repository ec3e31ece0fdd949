"""Which roles besides the store's own may connect to a PostgreSQL store's database (each can
hold the store's write lock; red team red18c 1): by default every login role may, through
PUBLIC; once CONNECT is revoked from PUBLIC, none is named."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bastion.audit import Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from tests.realpg import PgCluster, random_password, unique_name

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture
def outsider(pg_cluster: PgCluster) -> Iterator[str]:
    role = unique_name("outsider")
    pg_cluster.create_role(role, random_password())
    try:
        yield role
    finally:
        pg_cluster.drop_role(role)


def test_every_login_role_may_connect_until_public_loses_connect(
    pg_store_at: PgLocation, pg_cluster: PgCluster, outsider: str
) -> None:
    store = Store.create(pg_store_at, FakeClock(START))
    try:
        owner = urlsplit(pg_store_at.url).username
        database = urlsplit(pg_store_at.url).path.lstrip("/")
        named = store.roles_that_may_connect()
        assert outsider in named and owner not in named
        pg_cluster.sql(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC')
        assert outsider not in store.roles_that_may_connect()
        pg_cluster.sql(f'GRANT CONNECT ON DATABASE "{database}" TO "{outsider}"')
        try:
            assert outsider in store.roles_that_may_connect()
        finally:
            pg_cluster.sql(f'REVOKE CONNECT ON DATABASE "{database}" FROM "{outsider}"')
    finally:
        store.close()


def test_an_sqlite_store_names_none(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "bastion.db", FakeClock(START))
    try:
        assert store.roles_that_may_connect() == []
    finally:
        store.close()
