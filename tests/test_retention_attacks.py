"""Retention attacked: an admin with the store's files who edits the editable tables to have
evidence deleted (or its deletion excused), a node whose clock is behind, and a hold put while
a run is under way. Each must keep what a hold or a period keeps, or make `audit verify` fail.
Run on SQLite and on PostgreSQL, on the month of history of tests/test_retention.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.audit.chain import Event
from bastion.clock import iso
from bastion.errors import StoreError, UsageError
from bastion.retention import LEASE, LowWater, Runner, no_limit
from tests.test_retention import History, _history

pytestmark = pytest.mark.both_stores


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    yield from _history(tmp_path, legacy_days=0)


def _runner(history: History, low_water: LowWater = no_limit) -> Runner:
    bst = history.bst
    return Runner(bst.store, bst.box, bst.config.retention, "node-1", "test",
                  low_water=low_water)  # fmt: skip


def _recording(history: History, sid: str) -> Path:
    return Path(history.bst.store.session(sid).recording_path or "")


def _query_sessions(history: History) -> set[str]:
    rows = history.bst.store._rows("SELECT session_id FROM queries")
    return {str(r["session_id"]) for r in rows}


def test_a_recording_marked_pruned_in_the_table_alone_fails_verify(history: History) -> None:
    """An admin deletes a recent recording and marks its row 'pruned by retention' to have
    `audit verify` excuse it: no chained retention.pruned names the session, so it fails."""
    bst, sid = history.bst, "ssh-alice-50"
    with bst.store._write(chained=False) as conn:
        conn.execute("UPDATE sessions SET recording_pruned_at = ? WHERE id = ?",
                     [iso(history.end), sid])  # fmt: skip
    _recording(history, sid).unlink()
    code, said = history.cli("audit", "verify")
    assert code != 0 and sid in said, said


def test_a_node_whose_clock_is_behind_never_lets_the_cut_pass_what_is_kept(
    history: History,
) -> None:
    """One event written by a node whose clock is two months behind: the chain is never cut
    past an event written after the period's end, nor past the held user's first event."""
    bst = history.bst
    bst.store.add_hold("user", "carol", "litigation 42", "cli:test")
    bst.clock.set(history.start)
    bst.store.append_events([Event("test.skewed", "node-2", "", "info", None, {})])
    bst.clock.set(history.end)
    _runner(history).run()
    kept = bst.store.events()
    assert any(e.session_id == "pg-carol-10" for e in kept)  # the held user's first day
    assert any(e.session_id == "ssh-alice-45" for e in kept)  # within the 40-day period
    assert bst.store.verify_chain().ok


def test_a_hold_put_while_a_run_archives_keeps_what_it_holds(history: History) -> None:
    """Another admin puts a hold on carol after the run planned, before it deleted: her
    recordings and query rows stay, and the store still verifies."""
    bst = history.bst
    calls: list[int] = []

    def hold_meanwhile() -> int | None:
        calls.append(1)
        if len(calls) == 1:
            bst.store.add_hold("user", "carol", "litigation 42", "cli:other")
        return None

    _runner(history, hold_meanwhile).run()
    assert not [s for s in bst.store.recording_pruned_at() if "carol" in s]
    assert _recording(history, "ssh-carol-12").exists()
    assert "pg-carol-12" in _query_sessions(history)
    assert history.cli("audit", "verify")[0] == 0


def test_a_hold_put_just_before_the_cut_keeps_the_events_it_holds(history: History) -> None:
    """The hold lands after the run's last look and before its cut: the cut holds back."""
    bst = history.bst
    calls: list[int] = []

    def hold_meanwhile() -> int | None:
        calls.append(1)
        if len(calls) == 2:
            bst.store.add_hold("user", "carol", "litigation 42", "cli:other")
        return None

    done = _runner(history, hold_meanwhile).run()
    assert any(e.session_id == "pg-carol-10" for e in bst.store.events())
    assert done.warnings
    assert history.cli("audit", "verify")[0] == 0


def test_a_held_session_given_to_someone_else_in_the_table_stays_held(history: History) -> None:
    """An admin with the files moves carol's sessions to alice in the sessions table to have
    them pruned under her hold: the chain says whose they are, and they stay."""
    bst = history.bst
    bst.store.add_hold("user", "carol", "litigation 42", "cli:test")
    alice = bst.store._rows("SELECT id FROM users WHERE name = 'alice'")[0]["id"]
    with bst.store._write(chained=False) as conn:
        conn.execute("UPDATE sessions SET user_id = ? WHERE id IN (?, ?)",
                     [alice, "ssh-carol-12", "pg-carol-12"])  # fmt: skip
    _runner(history).run()
    assert "ssh-carol-12" not in bst.store.recording_pruned_at()
    assert _recording(history, "ssh-carol-12").exists()
    assert "pg-carol-12" in _query_sessions(history)


def test_a_recent_session_dated_back_in_the_table_is_not_pruned(history: History) -> None:
    """An admin with the files dates a recent session back two months so that retention
    deletes its recording (and verify calls it pruned): the chain says when it opened."""
    bst = history.bst
    with bst.store._write(chained=False) as conn:
        conn.execute("UPDATE sessions SET started_at = ? WHERE id = ?",
                     [iso(history.start), "ssh-alice-50"])  # fmt: skip
    _runner(history).run()
    assert "ssh-alice-50" not in bst.store.recording_pruned_at()
    assert _recording(history, "ssh-alice-50").exists()


def test_a_manual_run_beside_serve_on_the_same_node_waits_for_its_lease(
    history: History,
) -> None:
    """`bastion serve` holds the retention lease on this node: `bastion retention run` on the
    same node does not share it (two runs at once), it is refused."""
    bst = history.bst
    node = bst.config.cluster.node_name()
    assert bst.store.take_lease(LEASE, node, timedelta(hours=1)) is not None  # serve's run
    with pytest.raises(UsageError, match="running retention now"):
        history.cli("retention", "run")
    assert bst.store.recording_pruned_at() == {} and not history.archive_dir.exists()


def test_a_cut_made_meanwhile_never_leaves_an_archive_that_does_not_verify(
    history: History,
) -> None:
    """Another run cuts the chain while this one plans: whatever this one then does, every
    archive it leaves proves itself, and the store still verifies."""
    calls: list[int] = []

    def other_run_meanwhile() -> int | None:
        calls.append(1)
        if len(calls) == 1:
            _runner(history, lambda: 12).run()
        return None

    try:
        _runner(history, other_run_meanwhile).run()
    except StoreError as exc:
        assert "nothing was deleted" in exc.message
    for archive in history.archive_dir.iterdir():
        code, said = history.cli("audit", "verify", "--archive", str(archive))
        assert code == 0, said
    assert history.cli("audit", "verify")[0] == 0


def test_a_row_pointing_at_another_file_never_has_retention_delete_it(history: History) -> None:
    """Someone who can write the sessions table (a store on PostgreSQL: no file access needed)
    points a due session's recording_path at a held recording, or any file the bastion may
    delete: retention deletes only the file the chain says the session recorded to."""
    bst = history.bst
    bst.store.add_hold("user", "carol", "litigation 42", "cli:test")
    held, other = _recording(history, "ssh-carol-12"), history.bst.home / "bastion.toml"
    with bst.store._write(chained=False) as conn:
        conn.execute("UPDATE sessions SET recording_path = ? WHERE id = ?",
                     [str(held), "ssh-alice-01"])  # fmt: skip
        conn.execute("UPDATE sessions SET recording_path = ? WHERE id = ?",
                     [str(other), "ssh-alice-02"])  # fmt: skip
    done = _runner(history).run()
    assert held.exists() and other.exists()
    assert any("ssh-alice-01" in w for w in done.warnings)


def test_a_second_run_cuts_past_the_first_and_everything_still_verifies(
    history: History,
) -> None:
    """Retention's own events (the first run's retention.pruned) are cut by a later run: the
    recordings they named stay excused, both archives prove themselves, verify passes."""
    bst = history.bst
    bst.store.store_clock = bst.clock  # PostgreSQL's clock, 45 days on (storetime.py)
    first = _runner(history).run()
    history.end += timedelta(days=45)
    bst.clock.set(history.end)
    second = _runner(history).run()
    assert first.events_deleted and second.events_deleted and not second.warnings
    point = bst.store.checkpoint()
    assert point is not None and point.cut_at >= first.plan.now  # the first run's events: cut
    assert len(list(history.archive_dir.iterdir())) == 2
    for archive in history.archive_dir.iterdir():
        assert history.cli("audit", "verify", "--archive", str(archive))[0] == 0
    code, said = history.cli("audit", "verify")
    assert code == 0, said


def test_a_recent_query_row_dated_back_is_not_pruned(history: History) -> None:
    """An admin with the files dates a recent query-log row back two months so that retention
    deletes it (and the chained runs excuse its absence): the row no longer matches its
    commit event, so the run refuses and deletes nothing."""
    bst = history.bst
    with bst.store._write(chained=False) as conn:
        conn.execute("UPDATE queries SET at = ? WHERE session_id = ?",
                     [iso(history.start), "pg-alice-50"])  # fmt: skip
    with pytest.raises(StoreError, match="query log"):
        _runner(history).run()
    assert "pg-alice-50" in _query_sessions(history)
    assert bst.store.recording_pruned_at() == {}


def test_a_run_that_died_between_marking_and_deleting_is_finished_by_the_next(
    history: History,
) -> None:
    """A run marked a recording pruned (chained) and died before deleting its file: the next
    run deletes it, so nothing outlives its period for good."""
    sid = "ssh-alice-01"
    history.bst.store.prune_recordings([sid], {"archive": None}, "node:node-1")  # then died
    assert _recording(history, sid).exists()
    done = _runner(history).run()
    assert not _recording(history, sid).exists() and not done.warnings
    assert history.cli("audit", "verify")[0] == 0


def test_a_session_whose_recording_was_missing_at_close_is_pruned_without_a_warning(
    history: History,
) -> None:
    """A session closed after a crash with its recording gone (the chain says so, and names
    no file): retention marks it pruned, deletes nothing, and the chain is still cut."""
    bst = history.bst
    bst.clock.set(history.start + timedelta(days=1, hours=12))
    bst.store.open_session(session_id="ssh-lost-01", user="alice", target="web-1",
                           grant_id=None, protocol="ssh", client_addr="127.0.0.1:5000",
                           recording_path=str(bst.home / "gone.cast"))  # fmt: skip
    bst.store.close_session("ssh-lost-01", "interrupted", "node crashed", missing="gone")
    bst.clock.set(history.end)
    done = _runner(history).run()
    assert done.warnings == [] and done.events_deleted
    assert "ssh-lost-01" in bst.store.recording_pruned_at()
