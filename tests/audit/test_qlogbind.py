"""The commit event that binds a group commit's statement rows: the compiled digest agrees
with the reference encoding, the event holds what the rows can't (the server's scrubbed
message, an outcome without its row), and a batch without statements has no commit event."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bastion.audit import Event, QueryEnd, QueryStart, Store, _fastqlog, qlogbind
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock
from tests import storeadmin
from tests.audit.test_writer import store_with_a_session
from tests.storeadmin import Admin

raw = storeadmin.raw


def test_the_compiled_digest_is_the_reference_encoding() -> None:
    rng = random.Random(17)
    pool: list[str | int | None] = [None, 0, -1, 2**63 - 1, -(2**63), "", "n", "i1;", "s1:x",
                                    "é\u2028\U0001f600", "a\x00b", "'; DROP", "1"]  # fmt: skip
    for _ in range(2000):
        fields = tuple(rng.choice(pool) for _ in range(rng.randint(0, 12)))
        assert _fastqlog.digest(fields) == qlogbind.reference_digest(fields)


def test_the_encoding_is_unambiguous_by_type_and_length() -> None:
    assert qlogbind.encode([None]) != qlogbind.encode([""])
    assert qlogbind.encode([1]) != qlogbind.encode(["1"])
    assert qlogbind.encode(["ab", "c"]) != qlogbind.encode(["a", "bc"])


def _start(key: str, clock: FakeClock) -> QueryStart:
    return QueryStart(key, "s1", "alice", "db", clock.now(), "simple", "SELECT $1")


def _end(key: str, clock: FakeClock, message: str | None = None) -> QueryEnd:
    return QueryEnd(key, "s1", "alice", "db", clock.now(), None, None, "22012", 9,
                    server_message=message)  # fmt: skip


def test_a_batch_without_statements_has_no_commit_event(store_at: Path | PgLocation) -> None:
    store = store_with_a_session(store_at, FakeClock())
    written = store.write_batch([Event("ticket.issued", "admin", "alice")])
    assert [e.kind for e in written] == ["ticket.issued"]
    assert store.events()[-1].kind == "ticket.issued"


def test_the_commit_holds_the_server_message_and_an_outcome_without_its_row(
    store_at: Path | PgLocation,
) -> None:
    """The scrubbed error text is not a column of the row: the commit event keeps it. An end
    whose start another writer held has no row here: its outcome is kept whole."""
    clock = FakeClock()
    store = store_with_a_session(store_at, clock)
    ticket = Event("ticket.issued", "admin", "alice")
    written = store.write_batch([_start("k1", clock), _end("k1", clock, "division by zero"),
                                 _end("gone", clock), ticket])  # fmt: skip
    assert [e.kind for e in written] == ["queries.committed"] * 3 + ["ticket.issued"]
    assert written[0].seq == written[3].seq + 1  # the commit's event comes last
    detail = json.loads(written[0].detail)
    assert detail["messages"] == {"k1": "division by zero"}
    assert [o["key"] for o in detail["orphans"]] == ["gone"]
    assert store.verify_chain().ok


def test_each_row_s_digests_are_the_ones_its_commit_binds(
    store_at: Path | PgLocation, raw: Callable[[Store], Admin]
) -> None:
    """On both engines: the rows are checked against their commits (on PostgreSQL the rows
    are read on the store's connection and digested by the same C code; it once refused)."""
    clock = FakeClock()
    store = store_with_a_session(store_at, clock)
    store.write_batch([_start("a", clock), _start("b", clock), _end("a", clock)])
    store.write_batch([_end("b", clock)])
    assert check(store) == []
    raw(store).execute("UPDATE queries SET sqlstate = '00000' WHERE query_key = 'b'")
    found = check(store)
    assert [(f.id, f.code, f.key) for f in found] == [(2, 4, "b")]
    assert f"event {store.events()[-1].seq}" in str(found[0])  # the later commit binds it


def check(store: Store) -> list[qlogbind.Finding]:
    return qlogbind.check(store.reader, store.path, ("0", "9"), ("0", "9"))


def test_every_kind_of_edit_is_found_alike_on_both_engines(
    store_at: Path | PgLocation, raw: Callable[[Store], Admin]
) -> None:
    """Each code the check gives, from edits an admin with the database makes: a start edited
    (1), a row added (2), a bound row deleted (3), an outcome edited (4), an outcome where the
    chain has none (5); a row written under an id far off is read too."""
    clock = FakeClock()
    store = store_with_a_session(store_at, clock)
    store.write_batch([_start(k, clock) for k in "abcdef"] + [_end("d", clock)])
    admin = raw(store)
    admin.execute("UPDATE queries SET sql = 'DROP TABLE t' WHERE query_key = 'a'")
    admin.execute("DELETE FROM queries WHERE query_key = 'b'")
    admin.execute("UPDATE queries SET duration_us = 1 WHERE query_key = 'd'")
    admin.execute("UPDATE queries SET finished_at = at, rows = 7 WHERE query_key = 'e'")
    for row_id in (1 << 40,):
        admin.execute("INSERT INTO queries (id, session_id, at, protocol_step, sql,"
                      " statement_kind, query_key) SELECT ?, session_id, at, protocol_step,"
                      f" sql, statement_kind, 'x{row_id}' FROM queries WHERE query_key = 'c'",
                      (row_id,))  # fmt: skip
    found = [(f.id, f.code, f.key) for f in check(store)]
    assert found == [(1, 1, "a"), (4, 4, "d"), (5, 5, "e"), (1 << 40, 2, f"x{1 << 40}"),
                     (2, 3, None)]  # fmt: skip


def test_rows_beyond_a_page_are_all_read(
    store_at: Path | PgLocation, raw: Callable[[Store], Admin], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the rows come a page at a time: an edit past the first page is found."""
    monkeypatch.setattr(qlogbind, "PAGE", 3)
    clock = FakeClock()
    store = store_with_a_session(store_at, clock)
    store.write_batch([_start(f"k{i}", clock) for i in range(8)])
    assert check(store) == []
    raw(store).execute("UPDATE queries SET sql = 'SELECT 3' WHERE query_key = 'k6'")
    assert [(f.id, f.code) for f in check(store)] == [(7, 1)]


def test_on_postgresql_the_events_and_rows_are_read_in_one_snapshot(
    pg_store_at: PgLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the events and the rows are read in one snapshot: a commit that lands
    between the two reads is seen by neither, so it is no finding even in one pass."""
    clock = FakeClock()
    store = store_with_a_session(pg_store_at, clock)
    assert check(store) == []  # no commit yet
    store.write_batch([_start("a", clock)])
    real = _fastqlog.check_rows
    landed: list[object] = []

    def commit_lands_first(*args: Any) -> list[tuple[int, int]]:
        landed.append(store.write_batch([_end("a", clock), _start("b", clock)]))
        return real(*args)

    monkeypatch.setattr(_fastqlog, "check_rows", commit_lands_first)
    with closing(store.reader()) as conn:
        assert qlogbind.boundary(conn) == 1
        assert qlogbind.people_problem(conn, ("0", "9")) is None
    assert qlogbind._check_once(store.reader, None, ("0", "9"), ("0", "9")) == []
    assert len(landed) == 1
    store.close()


def test_a_store_without_commit_events_has_nothing_to_check(tmp_path: Path) -> None:
    store = Store.create(tmp_path / "b.db", FakeClock())
    assert qlogbind.check(store.reader, store.file, ("0", "9"), ("0", "9")) == []


def test_a_commit_landing_during_the_check_is_no_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a live store a statement's end can commit between the read of the events and the
    read of the rows: its row then shows an outcome the events read don't bind yet. The
    second pass sees that commit; an edit stays a finding on both."""
    clock = FakeClock()
    store = store_with_a_session(tmp_path / "b.db", clock)
    store.write_batch([_start("a", clock)])
    real = _fastqlog.check
    landed: list[object] = []

    def commit_lands_first(*args: Any) -> list[tuple[int, int]]:
        if not landed:
            landed.append(store.write_batch([_end("a", clock)]))
        return real(*args)

    monkeypatch.setattr(_fastqlog, "check", commit_lands_first)
    assert qlogbind.check(store.reader, store.file, ("0", "9"), ("0", "9")) == []
    assert landed
    store.conn.execute("UPDATE queries SET sql = 'SELECT 2' WHERE query_key = 'a'")
    assert [f.code for f in qlogbind.check(store.reader, store.file, ("0", "9"), ("0", "9"))] == [1]
