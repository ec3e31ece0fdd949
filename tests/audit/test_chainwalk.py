"""The compiled chain walk against the Python one: the same verdict, in the same words, for
any rows and any single edit an attacker with the files could make."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.audit import ChainedEvent, ChainKey, Event, Store, _fastchain, chain, chainwalk
from bastion.audit.chain import Verdict
from bastion.clock import FakeClock

KEY = ChainKey(bytes(range(32)))
# Every character class JSON escapes differently: quotes, backslashes, control characters,
# DEL, non-ASCII, astral-plane characters.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from('"\\\n\r\t\b\f\x00\x01\x1f\x7f/é€😀 '),
        st.characters(codec="utf-8", exclude_categories=["Cs"]),
    ),
    max_size=12,
)
EVENTS = st.lists(
    st.builds(
        Event,
        kind=TEXT.filter(bool),
        actor=TEXT.filter(bool),
        subject=TEXT,
        severity=st.sampled_from(["info", "notice", "warning", "high"]),
        session_id=st.none() | TEXT,
        detail=st.dictionaries(TEXT, st.none() | TEXT | st.integers() | st.lists(TEXT), max_size=3),
    ),
    min_size=1,
    max_size=8,
)
COLUMNS = ("at", "kind", "severity", "actor", "subject", "session_id", "detail", "prev_hash",
           "row_hash", "alg")  # fmt: skip


SCHEMA = (
    "CREATE TABLE audit_events (seq INTEGER PRIMARY KEY, at, kind, severity, actor, subject,"
    " session_id, detail, prev_hash, row_hash, alg)"
)


def write_chain(path: Path, events: list[Event], key: bytes) -> str:
    """Rows linked as the store links them, in a bare table (no migrations: fast); the head."""
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(SCHEMA)
    prev = chain.GENESIS
    for seq, event in enumerate(events, 1):
        row = chain.link(event, seq, f"2026-11-{seq:02d}T00:00:00Z", prev, key)
        conn.execute(
            "INSERT INTO audit_events VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (row.seq, row.at, row.kind, row.severity, row.actor, row.subject, row.session_id,
             row.detail, row.prev_hash, row.row_hash, row.alg),
        )  # fmt: skip
        prev = row.row_hash
    conn.commit()
    conn.close()
    return prev


def reader(path: Path) -> chainwalk.Events:
    def events(after: int, limit: int) -> list[ChainedEvent]:
        conn = sqlite3.connect(path)
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
        ).fetchall()
        conn.close()
        return [ChainedEvent(**dict(row)) for row in rows]

    return events


def both(path: Path, key: bytes = KEY.secret) -> tuple[Verdict, Verdict]:
    """The verdict with the compiled walk, and with Python alone."""
    return (chainwalk.walk_store(reader(path), path, key),
            chainwalk.walk_store(reader(path), None, key))  # fmt: skip


ANY = settings(max_examples=100, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@ANY
@given(events=EVENTS)
def test_any_rows_get_the_same_verdict_from_both_walks(tmp_path: Path, events: list[Event]) -> None:
    write_chain(tmp_path / "walk.db", events, KEY.secret)
    fast, slow = both(tmp_path / "walk.db")
    assert fast == slow
    assert fast.ok and fast.checked == len(events)


@ANY
@given(
    events=EVENTS,
    where=st.integers(min_value=0, max_value=100),
    column=st.sampled_from(COLUMNS),
    value=st.one_of(TEXT, st.none(), st.integers(-(2**63), 2**63 - 1), st.floats(),
                    st.binary(max_size=4)),
)  # fmt: skip
def test_any_single_edit_gets_the_same_verdict_from_both_walks(
    tmp_path: Path, events: list[Event], where: int, column: str, value: object
) -> None:
    path = tmp_path / "edit.db"
    write_chain(path, events, KEY.secret)
    conn = sqlite3.connect(path, isolation_level=None)
    seq = 1 + where % len(events)
    conn.execute(f"UPDATE audit_events SET {column} = ? WHERE seq = ?", (value, seq))
    conn.close()
    fast, slow = both(path)
    assert fast == slow


def test_a_deleted_or_reordered_row_gets_the_same_verdict(tmp_path: Path) -> None:
    path = tmp_path / "gap.db"
    write_chain(path, [Event("test.n", "tester", detail={"n": n}) for n in range(20)], KEY.secret)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM audit_events WHERE seq = 7")
    fast, slow = both(path)
    assert fast == slow and fast.bad_seq == 7 and "missing" in fast.problem
    conn.execute("UPDATE audit_events SET seq = 7 WHERE seq = 12")
    fast, slow = both(path)
    assert fast == slow and not fast.ok
    conn.close()


def test_the_walk_goes_on_in_chunks_and_tells_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.create(tmp_path / "chunks.db", FakeClock(), KEY)
    store.append_events([Event("test.n", "tester", detail={"n": n}) for n in range(50)])
    monkeypatch.setattr(chainwalk, "CHUNK", 7)
    told: list[int] = []
    verdict = chainwalk.walk_store(store.events, store.file, KEY.secret, told.append)
    assert verdict.ok and verdict.checked == store.chain_head()[0]
    assert told == list(range(7, verdict.checked + 1, 7))  # each multiple of CHUNK, once
    assert verdict == store.verify_chain()
    store.close()


def test_a_long_key_is_hashed_first_as_hmac_does(tmp_path: Path) -> None:
    """Keys longer than SHA-256's block go through the digest first (RFC 2104), in C too."""
    key = bytes(range(100))
    path = tmp_path / "long.db"
    prev = write_chain(path, [Event("test.long", "tester", detail={"n": n}) for n in range(5)], key)
    assert _fastchain.walk(str(path), key, 0, chain.GENESIS, 100) == (5, prev, 5, 0)
    assert _fastchain.walk(str(path), key[:-1], 0, chain.GENESIS, 100) == (0, chain.GENESIS, 0, 1)
    assert _fastchain.walk(str(path), key, 2, "f" * 64, 100)[2:] == (0, 1)


def test_an_unreadable_store_is_an_error_not_a_pass(tmp_path: Path) -> None:
    path = tmp_path / "not-a-store.db"
    path.write_bytes(b"this is not a SQLite file" * 100)
    with pytest.raises(OSError, match="cannot walk the audit chain"):
        _fastchain.walk(str(path), KEY.secret, 0, chain.GENESIS, 10)


@pytest.mark.parametrize("forged_seq", [4, None])
def test_a_rebuilt_table_cannot_hide_a_row_beside_the_walk(
    tmp_path: Path, forged_seq: int | None
) -> None:
    """An admin rebuilds audit_events without its primary key and adds a row that repeats a
    seq (or has none): the walk would never read it, so verify says the table was rebuilt."""
    store = Store.create(tmp_path / "b.db", FakeClock(), KEY)
    store.append_events([Event("test.n", "tester", detail={"n": n}) for n in range(6)])
    conn = sqlite3.connect(store.file, isolation_level=None)
    names = ", ".join(r[1] for r in conn.execute("PRAGMA table_info(audit_events)"))
    conn.executescript(
        "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;"
        " ALTER TABLE audit_events RENAME TO old;"
        " CREATE TABLE audit_events (seq INTEGER, at, kind, severity, actor, subject,"
        f" session_id, detail, prev_hash, row_hash, alg); INSERT INTO audit_events SELECT {names}"
        " FROM old ORDER BY seq; DROP TABLE old;"
    )
    assert store.verify_chain().problem.endswith("seq is no longer its INTEGER PRIMARY KEY")
    conn.execute(
        "INSERT INTO audit_events SELECT ?, at, 'breakglass.acknowledged', severity, 'ciso',"
        " subject, session_id, detail, prev_hash, row_hash, alg FROM audit_events WHERE seq = 4",
        (forged_seq,),
    )
    conn.close()
    assert not store.verify_chain().ok
    store.close()
