"""The audit log's search on a real store: newest first below a seq, filters matched exactly
(a kind prefix as a prefix, never a LIKE pattern), a page bound, and a bounded look-up that
says where it stopped, so paging on reaches every match."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.audit import Event, EventFilter, Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock


@pytest.fixture
def store(store_at: Path | PgLocation) -> Store:
    made = Store.create(store_at, FakeClock())
    made.append_events([Event("test.filler", "bot", "", "info")] * 95)
    made.append_events([Event("session_x", "eve", "web-1", "high")])  # seq 96: "_" as itself
    made.append_events([Event("session.closed", "alice", "web-1", "notice", "s-1")])  # 97
    made.append_events([Event("sessions.listed", "rita", "", "notice")])  # 98: not session.
    made.append_events([Event("test.filler", "bot", "", "info")] * 2)  # 99, 100
    return made


def seqs(store: Store, wanted: EventFilter, **paging: int | None) -> list[int]:
    page = store.search_events(wanted, before=paging.get("before"),
                               limit=paging.get("limit") or 50)  # fmt: skip
    return [e.seq for e in page.events]


def test_filters_match_exactly_and_a_prefix_only_its_own_kinds(store: Store) -> None:
    assert seqs(store, EventFilter(kind="session.")) == [97]
    assert seqs(store, EventFilter(kind="session.closed")) == [97]
    assert seqs(store, EventFilter(kind="session_x")) == [96]
    assert seqs(store, EventFilter(kind="session")) == []
    assert seqs(store, EventFilter(actor="%")) == [] and seqs(store, EventFilter(actor="_")) == []
    assert seqs(store, EventFilter(subject="web-1")) == [97, 96]
    assert seqs(store, EventFilter(session_id="s-1")) == [97]
    assert seqs(store, EventFilter(severities=("warning", "high"))) == [96]
    assert seqs(store, EventFilter(), limit=3) == [100, 99, 98]
    assert seqs(store, EventFilter(), before=4) == [3, 2, 1]


def test_a_search_looks_at_a_bounded_number_of_events_and_says_where_it_stopped(
    store: Store,
) -> None:
    wanted = EventFilter(actor="eve")
    page = store.search_events(wanted, before=None, limit=10, budget=3, window=2)
    assert page.events == [] and (page.next, page.looked_from, page.looked_to) == (98, 98, 100)
    found, following = [], page.next
    while following is not None:
        page = store.search_events(wanted, before=following, limit=10, budget=7, window=2)
        found += [e.seq for e in page.events]
        following = page.next
    assert found == [96]
    everything = store.search_events(EventFilter(), before=None, limit=100, window=7)
    assert [e.seq for e in everything.events] == list(range(100, 0, -1))
    assert everything.next is None
    full = store.search_events(EventFilter(kind="test."), before=None, limit=4)
    assert [e.seq for e in full.events] == [100, 99, 95, 94] and full.next == 94
