"""Fixtures for the PostgreSQL door: a bastion in front of a fresh database on the test cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Bastion
from tests.realpg import PgDatabase

PASSWORD = "correct horse battery"


@pytest.fixture
def bastion(tmp_path: Path, pg: PgDatabase) -> Iterator[Bastion]:
    """alice (password + TOTP) has a read grant on orders-prod, the test database."""
    b = Bastion(tmp_path / "bastion", postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.add_pg_target("orders-prod", pg)
    b.grant("alice", "orders-prod")
    b.start()
    try:
        yield b
    finally:
        b.stop()
