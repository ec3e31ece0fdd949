"""The query log as pages (each reading chained before a row is returned) and the consent
ledger (each unmask grant with its consent and the rows it showed in clear)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from bastion.errors import Denied, StoreError, UsageError
from bastion.reviewing.logs import QueryFilter, consent_ledger, search_queries
from tests.reviewing.conftest import ALICE, BOB, OPERATOR, RITA
from tests.reviewing.world import World, day


def texts(world: World, viewer=OPERATOR, **wanted: object) -> list[str]:  # type: ignore[no-untyped-def]
    page = search_queries(world.store, viewer, QueryFilter(**wanted), limit=100)  # type: ignore[arg-type]
    return [row["sql"] for row in page.items]


def listings(world: World) -> list[dict[str, object]]:
    return [e.as_dict()["detail"] for e in world.store.events() if e.kind == "queries.listed"]


FILTERS: list[tuple[dict[str, object], list[str]]] = [
        ({}, ["select 1", "DELETE FROM invoices WHERE id = $1", "SELECT * FROM customers"]),
        ({"user": "bob"}, ["select 1"]),
        ({"target": "db-1", "user": "alice"},
         ["DELETE FROM invoices WHERE id = $1", "SELECT * FROM customers"]),
        ({"since": day(3, 0)}, ["select 1", "DELETE FROM invoices WHERE id = $1"]),
        ({"until": day(3, 0)}, ["SELECT * FROM customers"]),
        ({"text": "select"}, ["select 1", "SELECT * FROM customers"]),
        ({"session": "s-b2"}, ["select 1"]),
        ({"user": "alice", "text": "select", "since": day(2, 0), "until": day(3, 0)},
         ["SELECT * FROM customers"]),
]  # fmt: skip


@pytest.mark.parametrize(("wanted", "expected"), FILTERS)
def test_each_filter_and_together(world: World, wanted: dict[str, object],
                                  expected: list[str]) -> None:  # fmt: skip
    assert texts(world, **wanted) == expected


def test_each_page_is_chained_before_it_is_returned_with_its_filters_never_a_text(
    world: World,
) -> None:
    first = search_queries(world.store, RITA, QueryFilter(user="alice"), limit=1)
    assert [r["sql"] for r in first.items] == ["DELETE FROM invoices WHERE id = $1"]
    rest = search_queries(world.store, RITA, QueryFilter(user="alice"), cursor=first.next)
    assert [r["sql"] for r in rest.items] == ["SELECT * FROM customers"] and rest.next is None
    one, two = listings(world)
    assert one == {"filters": {"user": "alice", "limit": 1}, "rows": 1,
                   "ids": [first.items[0]["id"]] * 2}  # fmt: skip
    assert two["filters"] == {"user": "alice", "limit": 200, "before": first.items[0]["id"]}
    events = [e for e in world.store.events() if e.kind == "queries.listed"]
    assert {e.actor for e in events} == {"rita"}
    assert not any("invoices" in json.dumps(e.as_dict()) for e in events)
    json.dumps(first.public())


@pytest.mark.parametrize("how", ["ABORT, 'no trace wanted'", "IGNORE"])
def test_a_reading_that_cannot_be_chained_returns_nothing(world: World, how: str) -> None:
    with sqlite3.connect(world.store.file) as conn:
        conn.execute("CREATE TRIGGER hide BEFORE INSERT ON audit_events WHEN NEW.kind ="
                     f" 'queries.listed' BEGIN SELECT RAISE({how}); END")  # fmt: skip
    with pytest.raises(StoreError, match="the query log is not shown"):
        search_queries(world.store, RITA, QueryFilter())
    assert listings(world) == []


def test_an_engineer_searches_only_their_own_statements(world: World) -> None:
    assert texts(world, BOB) == ["select 1"]
    assert texts(world, ALICE, text="select") == ["SELECT * FROM customers"]
    assert texts(world, BOB, session="s-a2") == []  # alice's session, through bob: nothing
    with pytest.raises(Denied):
        search_queries(world.store, BOB, QueryFilter(user="alice"))
    assert listings(world)[-1]["filters"] == {"user": "bob", "session": "s-a2", "limit": 100}


def test_the_masking_note_is_parsed_for_the_page(world: World) -> None:
    note = '{"masked": ["customers.email"], "detected": {"customers.notes": {"email": 1}}}'
    world.psql("s-m", "bob", day(4, 9), [(1.0, "SELECT email, notes FROM customers")],
               masking=note)  # fmt: skip
    [row] = search_queries(world.store, RITA, QueryFilter(session="s-m")).items
    assert row["masked"] == ["customers.email", "customers.notes"]
    assert row["masking"]["detected"] == {"customers.notes": {"email": 1}}


# --- the consent ledger ----------------------------------------------------------------------


def ledger_world(world: World) -> tuple[int, int, int]:
    world.at(day(4, 9))
    shown = world.unmask("alice", "4711")
    note = json.dumps({"unmasked": [{"grant": shown, "rows": 3, "columns": ["customers.email"]}]})
    world.psql("s-u", "alice", day(4, 9, 10), [(1.0, "SELECT email FROM customers WHERE id ="
                                                      " 4711"), (2.0, "SELECT 1")] ,
               masking=note, minutes=5)  # fmt: skip
    world.at(day(4, 12))
    pending = world.unmask("bob", "42", approve=False)
    later = world.unmask("alice", "99")
    world.at(day(4, 12, 30))
    return shown, pending, later


def test_the_ledger_has_the_consent_and_the_rows_shown_in_clear(world: World) -> None:
    shown, pending, later = ledger_world(world)
    page = consent_ledger(world.store, RITA, world.clock.now())
    rows = {r["id"]: r for r in page.items}
    assert list(rows) == [later, pending, shown]  # newest first
    assert rows[shown]["rows_shown"] == 6  # two statements, three rows each
    assert rows[shown]["state"] == "expired" and rows[later]["state"] == "active"
    assert rows[pending]["state"] == "pending" and rows[pending]["rows_shown"] == 0
    assert rows[shown]["consent_ref"] == "DSR-4711" and rows[shown]["consent_sha256"] == "ab" * 32
    assert rows[shown]["requested_by"] == "rita" and rows[shown]["decided_by"] == "carol"
    json.dumps(page.public())


def test_the_ledger_filters_and_pages(world: World) -> None:
    shown, pending, later = ledger_world(world)
    now = world.clock.now()

    def ledger(**wanted: object) -> list[int]:
        return [r["id"] for r in consent_ledger(world.store, RITA, now, **wanted).items]  # type: ignore[arg-type]

    assert ledger(state="active") == [later]
    assert ledger(state="expired") == [shown]
    assert ledger(state="pending") == [pending]
    assert ledger(user="alice") == [later, shown]
    assert ledger(user="alice", state="expired") == [shown]
    first = consent_ledger(world.store, RITA, now, limit=2)
    rest = consent_ledger(world.store, RITA, now, limit=2, cursor=first.next)
    assert [r["id"] for r in first.items + rest.items] == [later, pending, shown]
    assert rest.next is None
    with pytest.raises(UsageError, match="state is one of"):
        consent_ledger(world.store, RITA, now, state="gone")


def test_an_engineer_reads_only_their_own_unmask_grants(world: World) -> None:
    _, pending, _ = ledger_world(world)
    now = world.clock.now()
    assert [r["id"] for r in consent_ledger(world.store, BOB, now).items] == [pending]
    with pytest.raises(Denied):
        consent_ledger(world.store, BOB, now, user="alice")


def test_the_same_reads_on_a_store_on_postgresql(pg_world: World) -> None:
    """The reads above on one world whose store is on PostgreSQL: the same answers (the
    paging first, while its listings are the only ones)."""
    test_each_page_is_chained_before_it_is_returned_with_its_filters_never_a_text(pg_world)
    for wanted, expected in FILTERS:
        assert texts(pg_world, **wanted) == expected, wanted
    test_an_engineer_searches_only_their_own_statements(pg_world)
    test_the_masking_note_is_parsed_for_the_page(pg_world)
    test_the_ledger_filters_and_pages(pg_world)
