"""The export's cursors into the chain: made per configured sink, moved only forward, only
from where they stand and only by the sink's lease holder; the low water retention keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bastion.audit import ChainKey, Event, Store
from bastion.audit.exporting import events_after, export_lease, export_low_water
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store(store_at: Path | PgLocation, clock: FakeClock) -> Store:
    made = Store.create(store_at, clock)
    if made.location is not None:
        made.store_clock = clock
    made.append_events([Event("test.event", "t", str(n)) for n in range(10)])
    return made


def test_each_configured_sink_gets_a_cursor_before_the_first_event(store: Store) -> None:
    store.export_sinks_configured([("siem", "syslog"), ("trail", "file")])
    assert [(c.sink, c.kind, c.delivered_seq, c.enabled) for c in store.export_cursors()] == [
        ("siem", "syslog", 0, True), ("trail", "file", 0, True)]  # fmt: skip
    assert store.export_low_water() == 0


def test_the_low_water_is_the_lowest_enabled_cursor(store: Store) -> None:
    assert store.export_low_water() is None  # no sink: retention is not held back
    store.export_sinks_configured([("siem", "syslog"), ("trail", "file")])
    assert store.advance_export("siem", 0, 7, None)
    assert store.advance_export("trail", 0, 4, None)
    assert store.export_low_water() == 4
    store.export_sinks_configured([("siem", "syslog")])  # trail taken out of the config
    assert store.export_low_water() == 7
    with store._reading() as conn:
        assert export_low_water(conn) == 7
    store.export_sinks_configured([("siem", "syslog"), ("trail", "file")])  # back: where it was
    assert store.export_low_water() == 4
    store.export_sinks_configured([])
    assert store.export_low_water() is None


def test_a_cursor_moves_only_forward_and_only_from_where_it_stands(store: Store) -> None:
    store.export_sinks_configured([("siem", "syslog")])
    assert store.advance_export("siem", 0, 5, None)
    assert not store.advance_export("siem", 0, 9, None)  # someone moved it: not from 0
    assert store.export_cursor("siem") == 5
    with pytest.raises(ValueError, match="forward"):
        store.advance_export("siem", 5, 3, None)
    head = store.chain_head()[0]
    assert store.advance_export("siem", 5, 9, None)
    assert store.chain_head()[0] == head  # moving a cursor chains nothing


def test_only_the_sinks_lease_holder_moves_its_cursor(store: Store, clock: FakeClock) -> None:
    store.export_sinks_configured([("siem", "syslog")])
    mine = store.take_lease(export_lease("siem"), "node-a", TTL)
    assert mine is not None
    assert store.take_lease(export_lease("siem"), "node-b", TTL) is None
    assert store.advance_export("siem", 0, 3, mine)
    clock.advance(31)  # expired: node-a may have been cut off; it no longer moves it
    assert not store.advance_export("siem", 3, 6, mine)
    theirs = store.take_lease(export_lease("siem"), "node-b", TTL)
    assert theirs is not None
    assert not store.advance_export("siem", 3, 6, mine)
    assert store.advance_export("siem", 3, 6, theirs)
    assert store.export_cursor("siem") == 6


def test_events_after_a_cursor_come_in_seq_order_on_a_reader(store: Store) -> None:
    conn = store.reader()
    try:
        got = events_after(conn, 3, 4)
    finally:
        conn.close()
    assert [e.seq for e in got] == [4, 5, 6, 7]
    assert got == store.events(3, 4)


def test_retention_does_not_trust_a_cursor_moved_by_hand(
    store_at: Path | PgLocation, clock: FakeClock
) -> None:
    """A cursor edited forward in the database would let retention cut events the sink never
    had (and the sink could not get them back): a cursor whose MAC does not hold counts as 0."""
    keyed = Store.create(store_at, clock, ChainKey(bytes(range(32))))
    try:
        keyed.append_events([Event("test.event", "t", str(n)) for n in range(10)])
        keyed.export_sinks_configured([("siem", "syslog"), ("trail", "file")])
        assert keyed.advance_export("siem", 0, 7, None)
        assert keyed.advance_export("trail", 0, 8, None)
        assert keyed.export_low_water() == 7
        with keyed._write(chained=False) as conn:  # the DBA, without the chain key
            conn.execute("UPDATE export_cursors SET delivered_seq = 9 WHERE sink = 'siem'")
        assert keyed.export_low_water() == 0
        assert [c.intact for c in keyed.export_cursors()] == [False, True]
    finally:
        keyed.close()


def test_cursors_from_before_their_macs_are_signed_by_the_upgrade(
    store_at: Path | PgLocation, clock: FakeClock
) -> None:
    """Migration 0029 adds the cursors' MACs; the bastion that applies it signs the cursors
    as they stand (a sink is not sent the whole chain again, nor a tampering chained)."""
    key = ChainKey(bytes(range(32)))
    store = Store.create(store_at, clock, key)
    store.export_sinks_configured([("siem", "syslog")])
    assert store.advance_export("siem", 0, 0, None)
    with store._write(chained=False) as conn:  # the store as 0028 left it
        conn.execute("ALTER TABLE export_cursors DROP COLUMN mac")
        conn.execute("ALTER TABLE export_cursors DROP COLUMN selection")
        conn.execute("UPDATE export_cursors SET delivered_seq = 5")
        conn.execute("DELETE FROM schema_migrations WHERE number = 29")
    store.close()
    upgraded = Store.open(store_at, clock, key)
    try:
        assert [(c.delivered_seq, c.intact) for c in upgraded.export_cursors()] == [(5, True)]
    finally:
        upgraded.close()
