"""The week's sessions table against the chain, on a real store: an admin with the files (and
not the key) who moves a session out of the week, gives it to someone else, changes how it
ended or its recording's hash, reopens it, forges one or deletes one is caught; an untouched
table, with a session begun the week before, passes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.audit import ChainKey, RecordingInfo, Store
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock, iso
from bastion.reports.daily import verify_day
from bastion.reports.sessioncheck import session_log_problem
from bastion.reports.week import parse_week
from tests import storeadmin
from tests.storeadmin import Admin

raw = storeadmin.raw

WEEK = parse_week("2026-W47", "UTC")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path / "bastion.db")


def make_store(where: Path | PgLocation) -> Store:
    clock = FakeClock(WEEK.start - timedelta(days=2))
    made = Store.create(where, clock, ChainKey(bytes(32)))
    for name in ("alice", "bob"):
        made.add_user(name, "engineer", None, bytes(16), "admin")
    made.add_target(name="db", kind="postgres", host="127.0.0.1", port=5432, login="x",
                    database="app", secret_sealed=b"x", actor="admin")  # fmt: skip
    made.add_target(name="web1", kind="ssh", host="127.0.0.1", port=22, login="x",
                    database=None, secret_sealed=b"x", actor="admin")  # fmt: skip
    # begun two days before the week, still open across its start: looked up by its time
    made.open_session(session_id="s-long", user="bob", target="web1", grant_id=None,
                      protocol="ssh", client_addr="127.0.0.1:4000")  # fmt: skip
    clock.set(WEEK.start + timedelta(days=1))
    made.open_session(session_id="s1", user="alice", target="db", grant_id=None,
                      protocol="postgres", client_addr="127.0.0.1:5000")  # fmt: skip
    clock.advance(timedelta(hours=1))
    made.close_session("s1", "closed", "client ended the session")
    made.close_session("s-long", "closed", "done",
                       RecordingInfo("rec/s-long.cast", "ab" * 32, 10))  # fmt: skip
    clock.advance(timedelta(hours=1))
    made.open_session(session_id="s-open", user="alice", target="web1", grant_id=None,
                      protocol="ssh", client_addr="127.0.0.1:5001")  # fmt: skip
    return made


def edit(store: Store, sql: str, *params: object) -> None:
    conn = sqlite3.connect(store.file, isolation_level=None)
    conn.execute(sql, params)
    conn.close()


def test_an_untouched_table_passes(store: Store) -> None:
    assert session_log_problem(store, WEEK) is None


BEFORE = iso(WEEK.start - timedelta(days=3))


EDITS = [
    ("user_id = (SELECT id FROM users WHERE name = 'bob')", "s1", "names bob on db"),
    ("target_id = (SELECT id FROM targets WHERE name = 'web1')", "s1", "names alice on web1"),
    ("client_addr = '10.9.9.9:1'", "s1", "from 10.9.9.9:1"),
    ("protocol = 'ssh'", "s1", "(ssh,"),
    ("started_at = '2026-11-17T00:30:00.000000Z'", "s1", "no chained session.opened"),
    ("ended_at = '2026-11-17T01:30:00.000000Z'", "s1", "no chained session.closed"),
    ("state = 'killed'", "s1", "ended killed"),
    ("end_reason = 'done'", "s1", "'done'"),
    ("recording_sha256 = 'cd'", "s-long", "recording cd"),
    ("ended_at = NULL, state = 'open'", "s1", "is open in the sessions table"),
    (f"started_at = '{BEFORE}', ended_at = '{BEFORE}'", "s1", "not in the sessions table"),
    ("started_at = '2026-11-13T00:00:00.000000Z'", "s-long", "no chained session.opened"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "session", "said"), EDITS)
def test_each_edit_an_admin_could_make_is_caught(
    store: Store, change: str, session: str, said: str
) -> None:
    edit(store, f"UPDATE sessions SET {change} WHERE id = ?", session)
    problem = session_log_problem(store, WEEK)
    assert problem is not None and said in problem and session in problem


def test_a_deleted_session_is_caught(store: Store) -> None:
    edit(store, "DELETE FROM sessions WHERE id = 's1'")
    problem = session_log_problem(store, WEEK)
    assert problem == "session s1 is in the chain (session.opened) but not in the sessions table"


def test_a_forged_session_is_caught(store: Store) -> None:
    edit(store, "INSERT INTO sessions (id, user_id, target_id, protocol, client_addr, started_at)"
                " SELECT 's-forged', user_id, target_id, protocol, client_addr, started_at"
                " FROM sessions WHERE id = 's1'")  # fmt: skip
    problem = session_log_problem(store, WEEK)
    assert problem is not None and "s-forged" in problem and "session.opened" in problem


def test_the_daily_check_reads_the_sessions_too(store: Store, tmp_path: Path) -> None:
    day = parse_week("2026-W47", "UTC")  # the day check takes any span; the week will do
    edit(store, "UPDATE sessions SET state = 'killed' WHERE id = 's1'")
    from bastion.identity.sealing import SecretBox  # noqa: PLC0415

    verdict = verify_day(store, SecretBox(bytes(32)), day)
    assert "ended killed" in verdict.chain


def test_every_edit_is_caught_alike_on_a_store_on_postgresql(
    pg_store_at: PgLocation, raw: Callable[[Store], Admin]
) -> None:
    """The edits above, one at a time, on one store kept on PostgreSQL (its sessions put back
    after each), then a deletion and a forgery: the same findings as on SQLite."""
    store = make_store(pg_store_at)
    admin = raw(store)
    admin.execute("CREATE TEMP TABLE kept AS SELECT * FROM sessions")
    assert session_log_problem(store, WEEK) is None
    for change, session, said in EDITS:
        admin.execute(f"UPDATE sessions SET {change} WHERE id = ?", (session,))
        problem = session_log_problem(store, WEEK)
        assert problem is not None and said in problem and session in problem, change
        admin.execute("DELETE FROM sessions")
        admin.execute("INSERT INTO sessions SELECT * FROM kept")
    assert session_log_problem(store, WEEK) is None
    admin.execute("INSERT INTO sessions (id, user_id, target_id, protocol, client_addr,"
                  " started_at) SELECT 's-forged', user_id, target_id, protocol, client_addr,"
                  " started_at FROM sessions WHERE id = 's1'")  # fmt: skip
    problem = session_log_problem(store, WEEK)
    assert problem is not None and "s-forged" in problem and "session.opened" in problem
    admin.execute("DELETE FROM sessions WHERE id IN ('s1', 's-forged')")
    problem = session_log_problem(store, WEEK)
    assert problem == "session s1 is in the chain (session.opened) but not in the sessions table"
