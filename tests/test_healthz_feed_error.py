"""/healthz answers anyone who reaches the port: why the decision feed is down is told there as
a kind of failure only, never the store's address, role or database (red team red18c 2)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.audit.listen import DecisionFeed
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from tests.audit.decisions_pg import icu_store
from tests.realpg import PgCluster, PgDatabase
from tests.test_core import START, make_core

BOUND = 10.0


@pytest.fixture(scope="module")
def db(pg_cluster: PgCluster) -> Iterator[PgDatabase]:
    with icu_store(pg_cluster) as found:
        yield found


async def test_the_feeds_error_in_healthz_names_no_role_database_or_address(
    tmp_path: Path, db: PgDatabase
) -> None:
    clock = FakeClock(START)
    core = make_core(tmp_path, clock)
    role = "svc_store_role_x7"  # no such role: the server's refusal names it
    url = f"postgresql://{role}@{db.host}:{db.port}/{db.database}"
    feed = DecisionFeed.on(PgLocation.handed(url, "not-it", schema="store"), clock,
                           backoff=(0.05, 0.05))  # fmt: skip
    feed.start()
    core.decisions = feed
    try:
        await asyncio.wait_for(_failed(feed), BOUND)
        logged = feed.state().error or ""
        assert role in logged  # the operator's log keeps the whole reason
        health = core.decisions_health()
        assert health is not None and health["listening"] is False
        told = json.dumps(health)
        for secret in (role, db.database, str(db.port), db.host):
            assert secret not in told
        assert health["error"]  # still says what kind of failure it is
    finally:
        await core.stop_decisions()
        core.shutdown()


async def _failed(feed: DecisionFeed) -> None:
    while feed.state().error in (None, "not connected yet"):
        await asyncio.sleep(0.01)
