"""Fixtures for the PostgreSQL door: a bastion in front of a fresh database on the test cluster."""

from __future__ import annotations

import time
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


def wait_for_tags(b: Bastion, count: int) -> list[str | None]:
    """Statement outcomes are written just after the reply (batched): poll for them."""
    deadline = time.monotonic() + 10
    while True:
        tags = [q.tag for q in b.store.queries()]
        if sum(t is not None for t in tags) >= count or time.monotonic() > deadline:
            return tags
        time.sleep(0.02)
