"""The store on both engines: migrations, durable chained writes, tamper detection (SQLite's
file and PostgreSQL's database edited around the store)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.audit import ChainedEvent, Event, Store, TotpResult
from bastion.audit.base import migrations
from bastion.audit.location import PgLocation
from bastion.audit.sqlconn import DbError, one
from bastion.clock import FakeClock
from bastion.errors import Conflict, NotFound, StoreError
from tests import storeadmin
from tests.storeadmin import Admin


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_at: Path | PgLocation, clock: FakeClock) -> Iterator[Store]:
    made = Store.create(store_at, clock)
    yield made
    made.close()


@pytest.fixture
def sqlite_store(tmp_path: Path, clock: FakeClock) -> Store:
    return Store.create(tmp_path / "bastion.db", clock)


raw = storeadmin.raw


TABLES = ("users", "ssh_keys", "targets", "grants", "sessions", "commands", "queries",
          "file_transfers", "audit_events")  # fmt: skip


def test_create_migrates_and_refuses_to_overwrite(
    store_at: Path | PgLocation, clock: FakeClock
) -> None:
    store = Store.create(store_at, clock)
    assert store.schema_version() == migrations(store.conn.dialect)[-1][0]
    if isinstance(store_at, Path):
        assert stat.S_IMODE(store_at.stat().st_mode) == 0o600
    assert all(store.conn.table_exists(t) for t in TABLES)
    store.close()
    with pytest.raises(StoreError, match="exists already"):
        Store.create(store_at, clock)


def test_opening_a_missing_sqlite_store_says_to_run_init(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(StoreError, match="does not exist; run `bastion init`"):
        Store.open(tmp_path / "nope.db", clock)


def test_opening_an_empty_postgresql_store_says_how_to_create_it(
    pg_store_at: PgLocation, clock: FakeClock
) -> None:
    with pytest.raises(StoreError, match=r"no tables.*`bastion store create`"):
        Store.open(pg_store_at, clock)
    Store.create(pg_store_at, clock).close()
    Store.open(pg_store_at, clock).close()


def test_migrations_are_numbered_without_gaps() -> None:
    numbers = [number for number, _, _ in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


def test_reopening_applies_nothing_twice(store_at: Path | PgLocation, clock: FakeClock) -> None:
    Store.create(store_at, clock).close()
    again = Store.open(store_at, clock)
    assert again.migrate() == []
    again.close()


def test_the_store_uses_wal_and_full_sync(sqlite_store: Store) -> None:
    assert one(sqlite_store.conn.execute("PRAGMA journal_mode"))[0] == "wal"
    assert one(sqlite_store.conn.execute("PRAGMA synchronous"))[0] == 2  # FULL


def test_a_postgresql_store_commits_synchronously_and_writes_read_committed(
    pg_store_at: PgLocation, clock: FakeClock
) -> None:
    store = Store.create(pg_store_at, clock)
    assert one(store.conn.execute("SHOW synchronous_commit"))[0] == "on"
    with store._write() as conn:  # the database's default is REPEATABLE READ (storeat.py)
        assert one(conn.execute("SHOW transaction_isolation"))[0] == "read committed"
    store.close()


def test_audit_rows_refuse_update_and_delete(store: Store) -> None:
    store.append_events([Event("test.one", "tester")])
    with pytest.raises(DbError, match="append-only"):
        store.conn.execute("UPDATE audit_events SET actor = 'x'")
    with pytest.raises(DbError, match="append-only"):
        store.conn.execute("DELETE FROM audit_events")
    if store.conn.dialect == "postgresql":
        with pytest.raises(DbError, match="append-only"):
            store.conn.execute("TRUNCATE audit_events")
    assert len(store.events()) == 1


def test_actions_and_their_events_commit_together(store: Store) -> None:
    store.add_user("alice", "engineer", None, b"sealed", "cli:root")
    with pytest.raises(Conflict):
        store.add_user("alice", "admin", None, b"sealed", "cli:root")
    kinds = [e.kind for e in store.events()]
    assert kinds == ["user.added"]  # the refused duplicate left no event behind


def test_a_failed_write_keeps_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store._write() as conn:
        store._append(conn, [Event("test.lost", "tester")])
        raise RuntimeError("the action failed after its event was written")
    assert store.events() == []
    assert store.verify_chain().ok


def test_readonly_store_fails_closed(store: Store) -> None:
    sqlite = store.conn.dialect == "sqlite"  # the store refuses writes, as a full disk would
    store.conn.execute(
        "PRAGMA query_only=ON" if sqlite else "SET default_transaction_read_only = on"
    )
    with pytest.raises(StoreError, match="write"):
        store.add_user("bob", "engineer", None, b"x", "cli:root")
    store.conn.execute("PRAGMA query_only=OFF" if sqlite else "RESET default_transaction_read_only")
    assert store.find_user("bob") is None


def test_verify_names_an_edited_row(store: Store, raw: Callable[[Store], Admin]) -> None:
    store.append_events([Event("test.n", "tester", detail={"n": n}) for n in range(10)])
    raw(store).execute("UPDATE audit_events SET detail = '{\"n\":42}' WHERE seq = 4")
    verdict = store.verify_chain()
    assert not verdict.ok
    assert verdict.bad_seq == 4
    assert "event 4 was edited" in verdict.problem


def test_verify_names_an_edited_row_via_the_sqlite3_tool(sqlite_store: Store) -> None:
    store = sqlite_store
    store.append_events([Event("test.n", "tester", detail={"n": n}) for n in range(10)])
    script = (
        "DROP TRIGGER audit_events_no_update;"
        " UPDATE audit_events SET detail = '{\"n\":42}' WHERE seq = 4;"
    )
    subprocess.run(["sqlite3", str(store.file), script], check=True)
    verdict = store.verify_chain()
    assert not verdict.ok
    assert verdict.bad_seq == 4
    assert "event 4 was edited" in verdict.problem


def test_verify_names_a_deleted_row(store: Store, raw: Callable[[Store], Admin]) -> None:
    store.append_events([Event("test.n", "tester", detail={"n": n}) for n in range(10)])
    raw(store).execute("DELETE FROM audit_events WHERE seq = 7")
    verdict = store.verify_chain()
    assert not verdict.ok and verdict.bad_seq == 7
    assert "event 7 is missing" in verdict.problem


def test_verify_names_a_reordered_row(store: Store, raw: Callable[[Store], Admin]) -> None:
    store.append_events([Event("test.n", "tester", detail={"n": n}) for n in range(10)])
    conn = raw(store)
    conn.execute("UPDATE audit_events SET seq = -5 WHERE seq = 5")
    conn.execute("UPDATE audit_events SET seq = 5 WHERE seq = 6")
    conn.execute("UPDATE audit_events SET seq = 6 WHERE seq = -5")
    verdict = store.verify_chain()
    assert not verdict.ok and verdict.bad_seq == 5
    assert "does not follow event 4" in verdict.problem


def test_verify_catches_a_row_inserted_at_the_end(
    store: Store, raw: Callable[[Store], Admin]
) -> None:
    store.append_events([Event("test.n", "tester") for _ in range(3)])
    raw(store).execute(
        "INSERT INTO audit_events VALUES"
        " (4, 'x', 'forged', 'info', 'evil', '', NULL, '{}', ?, ?, 'sha256')",
        ("0" * 64, "1" * 64),
    )
    verdict = store.verify_chain()
    assert not verdict.ok and verdict.bad_seq == 4


def test_verify_catches_deleting_the_last_rows(store: Store, raw: Callable[[Store], Admin]) -> None:
    store.append_events([Event("test.n", "tester") for _ in range(5)])
    raw(store).execute("DELETE FROM audit_events WHERE seq >= 4")
    verdict = store.verify_chain()
    assert not verdict.ok
    assert "deleted from the end" in verdict.problem


def test_verify_passes_on_100000_untouched_events(store: Store) -> None:
    batch = [Event("test.bulk", "tester", subject="alice", detail={"i": i}) for i in range(10_000)]
    for _ in range(10):
        store.append_events(batch)
    verdict = store.verify_chain()
    assert verdict.ok, verdict.problem
    assert verdict.checked == 100_000
    assert store.read_anchor() == (100_000, verdict.head_hash)


def test_two_connections_keep_one_chain(store_at: Path | PgLocation, clock: FakeClock) -> None:
    first = Store.create(store_at, clock)
    second = Store.open(store_at, clock)
    for n in range(20):
        (first if n % 2 else second).append_events([Event("test.n", f"writer{n % 2}")])
    assert first.verify_chain().ok
    assert [e.seq for e in second.events()] == list(range(1, 21))
    first.close()
    second.close()


# -- TOTP state in the store ---------------------------------------------------------------


def test_totp_steps_are_single_use_and_failures_lock(store: Store, clock: FakeClock) -> None:
    store.add_user("alice", "engineer", None, b"s", "cli:root")
    lock = timedelta(minutes=15)
    assert store.record_totp_attempt("alice", 100, "ssh", 3, lock).result is TotpResult.ACCEPTED
    assert (
        store.record_totp_attempt("alice", 100, "postgres", 3, lock).result is TotpResult.REPLAYED
    )
    assert store.record_totp_attempt("alice", None, "ssh", 3, lock).result is TotpResult.WRONG
    outcome = store.record_totp_attempt("alice", 99, "ssh", 3, lock)
    assert outcome.result is TotpResult.REPLAYED and outcome.just_locked
    assert outcome.locked_until == clock.now() + lock
    assert store.record_totp_attempt("alice", 101, "ssh", 3, lock).result is TotpResult.LOCKED
    clock.advance(lock)
    assert store.record_totp_attempt("alice", 101, "ssh", 3, lock).result is TotpResult.ACCEPTED
    kinds = [e.kind for e in store.events()]
    assert kinds.count("user.locked") == 1
    locked = next(e for e in store.events() if e.kind == "user.locked")
    assert locked.severity == "high"


def test_unknown_user_totp_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.record_totp_attempt("ghost", 1, "ssh", 5, timedelta(minutes=1))


def test_store_file_never_holds_what_it_was_not_given(sqlite_store: Store) -> None:
    store = sqlite_store
    store.add_user("alice", "engineer", None, b"\x00sealed-blob", "cli:root")
    data = store.file.read_bytes() + (
        Path(f"{store.file}-wal").read_bytes() if os.path.exists(f"{store.file}-wal") else b""
    )
    assert b"alice" in data  # sanity: we are reading the right file


def test_grants_rebuilt_for_groups_keep_their_sessions(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0006 rebuilds grants; sessions must still point at the same grants."""
    from bastion.audit import base  # noqa: PLC0415 - patched for this test only

    every = migrations()
    monkeypatch.setattr(
        base, "migrations", lambda dialect="sqlite": [m for m in every if m[0] <= 5]
    )
    path = tmp_path / "old.db"
    old = Store.create(path, clock)
    for sql in (
        "INSERT INTO users (name, role, totp_sealed, created_at)"
        " VALUES ('alice', 'engineer', x'00', '2026-01-01T00:00:00.000000Z')",
        "INSERT INTO targets (name, kind, host, port, login, secret_sealed, created_at)"
        " VALUES ('web-1', 'ssh', '127.0.0.1', 22, 'deploy', x'00', '2026-01-01T00:00:00.000000Z')",
        "INSERT INTO grants (user_id, target_id, mode, starts_at, ends_at, reason, granted_by,"
        " created_at, ticket_ref) VALUES (1, 1, 'read', '2026-01-01T00:00:00.000000Z',"
        " '2026-01-01T01:00:00.000000Z', 'on call', 'ad', '2026-01-01T00:00:00.000000Z', 'INC-1')",
        "INSERT INTO sessions (id, user_id, target_id, grant_id, protocol, client_addr,"
        " started_at) VALUES ('s1', 1, 1, 1, 'ssh', '127.0.0.1', '2026-01-01T00:00:00.000000Z')",
    ):
        old.conn.execute(sql)
    old.close()
    monkeypatch.setattr(base, "migrations", lambda dialect="sqlite": every)
    new = Store.open(path, clock)
    assert new.schema_version() == every[-1][0]
    assert new.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    grant = new.grant(1)
    assert (grant.user, grant.target, grant.ticket_ref, grant.group) == (
        "alice", "web-1", "INC-1", None,
    )  # fmt: skip
    row = one(new.conn.execute("SELECT grant_id FROM sessions WHERE id = 's1'"))
    assert row[0] == 1
    assert new.verify_chain().ok


def test_verify_is_not_fooled_by_a_write_during_the_walk(
    store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running bastion writes while an auditor verifies: no false alarm."""
    store.append_events([Event("test.one", "tester")])
    writer = Store.open(store.location or store.file, clock)
    read = store.events
    wrote: list[bool] = []

    def read_while_writing(after: int = 0, limit: int | None = None) -> list[ChainedEvent]:
        rows = read(after, limit)
        if not wrote:  # commits, then moves the anchor
            writer.append_events([Event("test.two", "tester")])
            wrote.append(True)
        return rows

    monkeypatch.setattr(store, "events", read_while_writing)
    assert store.verify_chain().ok
    assert wrote
    writer.close()


@pytest.mark.parametrize("forged_seq", [4, None])
def test_a_postgresql_table_without_its_key_cannot_hide_a_row_beside_the_walk(
    pg_store_at: PgLocation,
    clock: FakeClock,
    raw: Callable[[Store], Admin],
    forged_seq: int | None,
) -> None:
    """The database's admin drops audit_events' primary key and adds a row that repeats a seq
    (or has none): the walk would never read it, so verify says the table was rebuilt."""
    store = Store.create(pg_store_at, clock)
    store.append_events([Event("test.n", "tester", detail={"n": n}) for n in range(6)])
    admin = raw(store)
    admin.execute("ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey")
    admin.execute("ALTER TABLE audit_events ALTER COLUMN seq DROP NOT NULL")
    assert store.verify_chain().problem.endswith("seq is no longer its INTEGER PRIMARY KEY")
    admin.execute(
        "INSERT INTO audit_events SELECT ?, at, 'breakglass.acknowledged', severity, 'ciso',"
        " subject, session_id, detail, prev_hash, row_hash, alg FROM audit_events WHERE seq = 4",
        (forged_seq,),
    )
    assert not store.verify_chain().ok
    store.close()


def test_a_postgresql_row_repeating_a_seq_in_the_middle_is_caught(
    pg_store_at: PgLocation, clock: FakeClock, raw: Callable[[Store], Admin]
) -> None:
    """The key dropped and a forged copy of event 2 added beside it: verify fails."""
    store = Store.create(pg_store_at, clock)
    store.append_events([Event("test.n", "tester") for _ in range(3)])
    admin = raw(store)
    admin.execute("ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey")
    admin.execute(
        "INSERT INTO audit_events SELECT seq, at, 'forged', severity, actor, subject,"
        " session_id, detail, prev_hash, row_hash, alg FROM audit_events WHERE seq = 2"
    )
    verdict = store.verify_chain()
    assert not verdict.ok
    store.close()
