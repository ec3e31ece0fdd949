"""A batch of events in one commit, on both engines: every row as written (on PostgreSQL one
INSERT over arrays), and an event the database silently drops is never acknowledged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.audit import Event, Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from bastion.errors import StoreError
from tests.storeadmin import admin_of

DROPS_GRANTS = """
CREATE FUNCTION hide_grants() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'grant.added' THEN RETURN NULL; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER hide_grants BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION hide_grants();
"""


@pytest.fixture
def store(store_at: Path | PgLocation) -> Iterator[Store]:
    made = Store.create(store_at, FakeClock())
    yield made
    made.close()


def mixed(count: int) -> list[Event]:
    """Events with every column's awkward values: no session, a NUL, non-ASCII, quotes."""
    return [
        Event(
            f"kind.{n % 7}",
            "mallory\x00root" if n % 5 == 0 else f"user-{n}",
            subject="" if n % 3 == 0 else "orders-prod ' \" \\ é 漢",
            severity=("info", "notice", "warning", "high")[n % 4],
            session_id=None if n % 2 else f"s-{n}",
            detail={"n": n, "sql": "SELECT '{a,b}' AS \"x\"", "nested": {"list": [n, None]}},
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("count", [1, 2, 700])
def test_a_batch_of_events_reads_back_as_chained_and_verifies(store: Store, count: int) -> None:
    store.append_events(mixed(3))
    written = store.append_events(mixed(count))
    assert [e.seq for e in written] == list(range(4, 4 + count))
    assert store.events(after=3) == written
    verdict = store.verify_chain()
    assert verdict.ok, verdict.problem
    assert verdict.checked == 3 + count


def test_a_database_that_drops_an_audit_row_fails_the_write_and_keeps_nothing(
    pg_store_at: PgLocation, request: pytest.FixtureRequest
) -> None:
    """An admin of the database hides grants from the trail with a trigger: the bastion must
    not acknowledge an event the store did not take (on main it was acknowledged, and lost)."""
    store = Store.create(pg_store_at, FakeClock())
    store.append_events([Event("bastion.started", "bastion")])
    admin = admin_of(store, request)
    try:
        admin.execute(DROPS_GRANTS)
    finally:
        admin.close()
    for batch in ([Event("grant.added", "mallory")],
                  [Event("session.opened", "alice"), Event("grant.added", "mallory")]):  # fmt: skip
        with pytest.raises(StoreError, match=r"took (0 of a batch of 1|1 of a batch of 2)"):
            store.append_events(batch)
    assert [e.kind for e in store.events()] == ["bastion.started"]  # nothing half kept
    store.append_events([Event("session.opened", "alice")])  # the store still writes
    verdict = store.verify_chain()
    assert verdict.ok and verdict.checked == 2, verdict.problem
    store.close()
