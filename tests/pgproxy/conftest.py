"""Fixtures for the PostgreSQL door: a bastion in front of a fresh database on the test cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Bastion
from tests.realpg import PgDatabase

PASSWORD = "correct horse battery"


# The relay's own tests see the database as it is; masking has its own (tests/masking).
UNMASKED = "\n[targets.orders-prod.masking]\nenabled = false\n"


def alice_on(
    home: Path, db: PgDatabase, extra_config: str = "", *, masked: bool = False
) -> Bastion:
    """A bastion (not started) where alice (password + TOTP) may read orders-prod, i.e. db."""
    b = Bastion(home, extra_config + ("" if masked else UNMASKED), postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.add_pg_target("orders-prod", db)
    b.grant("alice", "orders-prod")
    return b


@pytest.fixture
def bastion(tmp_path: Path, pg: PgDatabase) -> Iterator[Bastion]:
    """alice (password + TOTP) has a read grant on orders-prod, the test database."""
    b = alice_on(tmp_path / "bastion", pg)
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


def wait_for_outcomes(b: Bastion, count: int) -> None:
    """Poll until `count` statements have their outcome (tag, error or skip) in the log."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sum(q.duration_us is not None for q in b.store.queries()) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} statement outcomes were logged")
