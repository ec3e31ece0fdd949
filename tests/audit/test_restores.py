"""Restores as the chain records them: which witnesses each explains, and which it cannot."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bastion.audit import ChainKey, Event, Store
from bastion.audit.anchors import Anchor, check
from bastion.audit.location import PgLocation
from bastion.audit.restores import RESTORED_KIND, restore_problems
from bastion.clock import FakeClock, iso

KEY = ChainKey(bytes(range(32)))


def events(store: Store, count: int) -> None:
    store.append_events([Event("test.event", "tester", f"e{n}") for n in range(count)])


def test_a_restore_explains_only_earlier_witnesses_of_events_it_dropped(
    store_at: Path | PgLocation,
) -> None:
    clock = FakeClock()
    store = Store.create(store_at, clock, KEY)
    events(store, 5)
    before = iso(clock.now())  # a witness of event 9 written before the restore (lost epoch)
    clock.advance(timedelta(minutes=1))
    store.record_restore("bob", "nightly.db", "drill", 9, {})
    clock.advance(timedelta(minutes=1))
    events(store, 5)  # events 7..11 of the new epoch
    head = store.chain_head()[0]
    [restore] = store.restores(head)
    assert (restore.kept_seq, restore.seq, restore.lost_seq) == (5, 6, 9)
    assert restore_problems([restore], store.mac_at) == []
    lost = Anchor("a", 9, "0" * 64, before)
    assert check([lost], head, store.mac_at, [restore]) == []
    assert check([lost], head, store.mac_at) != []  # without the restore: a rewrite
    after = iso(clock.now())
    forged = Anchor("a", 9, "0" * 64, after)  # written after the restore: must hold
    assert "rewritten" in check([forged], head, store.mac_at, [restore])[0]
    kept = Anchor("a", 3, "0" * 64, before)  # an event the backup kept: must still match
    assert "rewritten" in check([kept], head, store.mac_at, [restore])[0]
    store.close()


def test_a_restore_event_that_does_not_follow_its_backup_head_is_a_problem(
    store_at: Path | PgLocation,
) -> None:
    store = Store.create(store_at, FakeClock(), KEY)
    events(store, 5)
    detail = {"kept": {"seq": 2, "mac": store.mac_at(2)}, "lost_seq": 40, "source": "x",
              "reason": "hide events 3 to 5"}  # fmt: skip
    store.append_events([Event(RESTORED_KIND, "mallory", "x", "high", None, detail)])
    restores = store.restores(store.chain_head()[0])
    assert "does not follow that event" in restore_problems(restores, store.mac_at)[0]
    store.close()


def test_a_restore_is_described_on_one_clean_line(tmp_path: Path) -> None:
    """The backup's name and the reason are the restorer's: no terminal escape or line break
    of theirs may hide or rewrite the RESTORED line verify prints."""
    store = Store.create(tmp_path / "s.db", FakeClock(), KEY)
    events(store, 2)
    store.record_restore("bob", "b.db\x1b[1A\x1b[2K", "drill\nall intact", 2, {})
    [restore] = store.restores(store.chain_head()[0])
    text = restore.describe()
    assert "\x1b" not in text and "\n" not in text and "b.db [1A [2K" in text
    store.close()
