"""Fixtures for the masking tests: the shop database, and a started bastion in front of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Bastion
from tests.masking.door import shop_bastion
from tests.masking.shop import make_shop
from tests.realpg import PgCluster, PgDatabase


@pytest.fixture
def shop(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    db = make_shop(pg_cluster)
    yield db
    pg_cluster.sql(f'DROP DATABASE IF EXISTS "{db.database}" WITH (FORCE)')
    for role in ("bastion_shop_masked", "bastion_shop_unmasked"):
        pg_cluster.sql(f'DROP ROLE IF EXISTS "{role}"')
    pg_cluster.drop_role(db.user)


@pytest.fixture
def bastion(tmp_path: Path, shop: PgDatabase) -> Iterator[Bastion]:
    b = shop_bastion(tmp_path / "bastion", shop).start()
    try:
        yield b
    finally:
        b.stop()
