"""The chain's head at a moment (a weekly review's provenance): the highest seq written
before it, read from the events after the moment only, and right when the clock stepped back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.audit import Event, Store
from bastion.audit.chain import GENESIS
from bastion.clock import FakeClock, iso

START = datetime(2026, 11, 16, tzinfo=UTC)


def naive(store: Store, moment: str) -> tuple[int, str]:
    """The definition, read the slow way: every event, in Python."""
    before = [e for e in store.last_events(10_000) if e.at < moment]
    best = max(before, key=lambda e: e.seq, default=None)
    return (best.seq, best.row_hash) if best else (0, GENESIS)


def written(tmp_path: Path, minutes: list[int]) -> Store:
    """A store with one event written at each of these minutes after START, in this order
    (a minute lower than the one before is a clock that stepped back)."""
    path = tmp_path / "bastion.db"
    path.unlink(missing_ok=True)
    for extra in (path.with_name("bastion.db.head"),):
        extra.unlink(missing_ok=True)
    clock = FakeClock(START)
    store = Store.create(path, clock)
    for i, minute in enumerate(minutes):
        clock.set(START + timedelta(minutes=minute))
        store.append_events([Event("test.event", "alice", f"e{i}", "info", None, {})])
    return store


def test_an_empty_chain_and_a_moment_before_every_event_give_genesis(tmp_path: Path) -> None:
    store = written(tmp_path, [])
    assert store.chain_head_before(iso(START)) == (0, GENESIS)
    store = written(tmp_path, [5, 6])
    assert store.chain_head_before(iso(START)) == naive(store, iso(START))


def test_an_event_written_later_under_an_earlier_time_is_the_head(tmp_path: Path) -> None:
    store = written(tmp_path, [1, 10, 20, 3])  # the fourth event's clock had stepped back
    moment = iso(START + timedelta(minutes=5))
    seq, _ = store.chain_head_before(moment)
    assert (seq, store.chain_head_before(moment)[1]) == naive(store, moment)
    assert seq == max(e.seq for e in store.last_events(10) if e.subject == "e3")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    minutes=st.lists(st.integers(min_value=0, max_value=30), max_size=12),
    probe=st.integers(min_value=-1, max_value=32),
)
def test_the_head_agrees_with_the_definition(
    tmp_path: Path, minutes: list[int], probe: int
) -> None:
    store = written(tmp_path, minutes)
    for at in {probe, *minutes, *(m + 1 for m in minutes)}:
        moment = iso(START + timedelta(minutes=at))
        assert store.chain_head_before(moment) == naive(store, moment)
    store.close()
