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
from bastion.errors import StoreError
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


def _restreamed(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[bytes], list[bytes]]
) -> list[int]:
    """The rows' COPY stream, on PostgreSQL, handed to the check as `change` makes it of the
    whole; the sizes of the pieces the server sent."""
    real = _fastqlog.check_rows
    sizes: list[int] = []

    def check_rows(fetch: Any, *rest: Any) -> list[tuple[int, int]]:
        def changed(lo: int, hi: int, feed: Callable[[bytes], None]) -> None:
            whole: list[bytes] = []
            fetch(lo, hi, whole.append)
            sizes.extend(len(piece) for piece in whole)
            for piece in change(b"".join(whole)):
                feed(piece)

        return real(changed, *rest)

    monkeypatch.setattr(_fastqlog, "check_rows", check_rows)
    return sizes


@pytest.mark.parametrize("size", [1, 7, 100, 1 << 20])
def test_on_postgresql_the_rows_stream_is_read_in_pieces_of_any_size(
    pg_store_at: PgLocation,
    raw: Callable[[Store], Admin],
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    """The rows come as one binary COPY stream, in pieces cut anywhere (inside a row's
    length, its text, the head, the trailer): each edit is found as when read whole."""
    clock = FakeClock()
    store = store_with_a_session(pg_store_at, clock)
    store.write_batch([_start(f"k{i}", clock) for i in range(8)] + [_end("k2", clock)])
    admin = raw(store)
    admin.execute("UPDATE queries SET sql = 'SELECT 3' WHERE query_key = 'k6'")
    admin.execute("UPDATE queries SET parameters = 'é\u2028' WHERE query_key = 'k1'")
    admin.execute("UPDATE queries SET rows = -5 WHERE query_key = 'k2'")
    sizes = _restreamed(
        monkeypatch, lambda whole: [whole[i : i + size] for i in range(0, len(whole), size)]
    )
    assert [(f.id, f.code) for f in check(store)] == [(2, 1), (3, 4), (7, 1)]
    assert sizes
    store.close()


@pytest.mark.parametrize(
    "change",
    [
        lambda whole: [whole[:-1]],  # the trailer cut short
        lambda whole: [whole[:-2]],  # no trailer
        lambda whole: [whole[: len(whole) // 2]],  # cut mid-row
        lambda whole: [whole, b"\x00"],  # a byte after the trailer
        lambda whole: [b"PGCOPY\n\xff\r\n\x00" + b"\x00\x01\x00\x00" + whole[15:]],  # OIDs
        lambda whole: [whole[:19] + b"\x00\x0f" + whole[21:]],  # 15 columns
        lambda whole: [b"not a COPY stream at all"],
    ],
)
def test_on_postgresql_a_rows_stream_not_whole_fails_closed(
    pg_store_at: PgLocation, monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    """A stream cut short or not of its shape is no pass (nor a crash): the check refuses in
    one line, on both passes."""
    clock = FakeClock()
    store = store_with_a_session(pg_store_at, clock)
    store.write_batch([_start(f"k{i}", clock) for i in range(3)])
    _restreamed(monkeypatch, change)
    with pytest.raises(StoreError, match="cannot check the query log in the store: the query"
                       " log's row stream is not as expected"):  # fmt: skip
        check(store)
    store.close()


def test_on_postgresql_a_stream_refused_mid_copy_fails_closed(
    pg_store_at: PgLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parser refusing a piece while the server is still sending (inside the driver's
    COPY) stops the check in one line; the store reads on afterwards."""
    clock = FakeClock()
    store = store_with_a_session(pg_store_at, clock)
    store.write_batch([_start(f"k{i}", clock) for i in range(3)])
    real = _fastqlog.check_rows

    def spoiled(fetch: Any, *rest: Any) -> list[tuple[int, int]]:
        def fetch_spoiled(lo: int, hi: int, feed: Callable[[bytes], None]) -> None:
            fetch(lo, hi, lambda piece: feed(b"X" + piece))

        return real(fetch_spoiled, *rest)

    monkeypatch.setattr(_fastqlog, "check_rows", spoiled)
    with pytest.raises(StoreError, match="not as expected: no binary COPY signature"):
        check(store)
    monkeypatch.setattr(_fastqlog, "check_rows", real)
    assert check(store) == []
    store.close()


def test_on_postgresql_a_column_retyped_by_an_admin_never_matches(
    pg_store_at: PgLocation, raw: Callable[[Store], Admin]
) -> None:
    """An admin's ALTER of a column to a type the writer never uses is read as "x": each row
    with a value there is named, none passes. One to an integer of another width reads the
    same values and still matches."""
    clock = FakeClock()
    store = store_with_a_session(pg_store_at, clock)
    store.write_batch([_start("a", clock), _start("b", clock), _end("b", clock)])
    admin = raw(store)
    admin.execute("ALTER TABLE queries ALTER COLUMN duration_us TYPE integer")
    assert check(store) == []
    admin.execute("ALTER TABLE queries ALTER COLUMN duration_us TYPE numeric")
    assert [(f.id, f.code) for f in check(store)] == [(2, 4)]
    store.close()


def test_on_postgresql_the_feed_works_only_while_its_check_runs(
    pg_store_at: PgLocation, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    store = store_with_a_session(pg_store_at, clock)
    store.write_batch([_start("a", clock)])
    real = _fastqlog.check_rows
    kept: list[Callable[[bytes], None]] = []

    def keeping(fetch: Any, *rest: Any) -> list[tuple[int, int]]:
        def fetch_keeping(lo: int, hi: int, feed: Callable[[bytes], None]) -> None:
            kept.append(feed)
            fetch(lo, hi, feed)

        return real(fetch_keeping, *rest)

    monkeypatch.setattr(_fastqlog, "check_rows", keeping)
    assert check(store) == []
    with pytest.raises(RuntimeError, match="the check this feed was for is over"):
        kept[0](b"PGCOPY")
    store.close()


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
