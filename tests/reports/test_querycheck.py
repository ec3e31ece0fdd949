"""The week's query log against the chain, on a real store: every field the review reads from
the editable `queries` table, edited by an admin with the files (and not the key), is caught;
the same note written another way is not a false alarm. Each test runs on a week of both forms:
a chained event per statement (stores written before commit events) and one per commit."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bastion.audit import ChainKey, NewGrant, QueryEnd, QueryStart, Store, querylog
from bastion.audit.location import PgLocation
from bastion.clock import FakeClock, iso
from bastion.reports.facts import collect
from bastion.reports.querycheck import query_log_problem
from bastion.reports.tables import build_tables
from bastion.reports.week import parse_week
from tests import storeadmin
from tests.audit.first_form import write_first_form
from tests.storeadmin import Admin

raw = storeadmin.raw
WEEK = parse_week("2026-W47", "UTC")
NOTE = {"masked": ["customers.email"], "unmasked": [{"grant": 3, "rows": 2, "columns": ["e"]}]}


def start(key: str, sql: str, at_hours: float, **kw: object) -> QueryStart:
    at = WEEK.start + timedelta(hours=at_hours)
    return QueryStart(key, "s1", "alice", "db", at, "simple", sql, **kw)  # type: ignore[arg-type]


def end(key: str, rows: int, tag: str, note: object = None, at_hours: float = 1) -> QueryEnd:
    at = WEEK.start + timedelta(hours=at_hours)
    masking = json.dumps(note, sort_keys=True) if note is not None else None
    return QueryEnd(key, "s1", "alice", "db", at, rows, tag, None, 50, masking)


@pytest.fixture(params=["first", "second"])
def form(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def on(*cases: str) -> pytest.MarkDecorator:
    """The engines and forms a test runs on ("sqlite-first", ...): on PostgreSQL, where the
    engines' SQL differs (the first form is compared in SQL, the second digested in C by the
    same code on both, tests/audit/test_qlogbind.py), not every combination."""
    pairs = [tuple(case.split("-")) for case in cases]
    return pytest.mark.parametrize(("store_at", "form"), pairs, indirect=["store_at"], ids=cases)


SQLITE = ("sqlite-first", "sqlite-second")


def write(store: Store, form: str, records: list[QueryStart | QueryEnd]) -> None:
    if form == "first":
        write_first_form(store, records)
    else:
        store.write_batch(records)


@pytest.fixture
def store(store_at: Path | PgLocation, form: str) -> Store:
    clock = FakeClock(WEEK.start)
    made = Store.create(store_at, clock, ChainKey(bytes(32)))
    made.add_user("alice", "engineer", None, bytes(16), "admin")
    made.add_target(name="db", kind="postgres", host="127.0.0.1", port=5432, login="x",
                    database="app", secret_sealed=b"x", actor="admin")  # fmt: skip
    grant = made.add_grant(NewGrant(target="db", mode="write", starts_at=WEEK.start,
                                    ends_at=WEEK.end, reason="INC-1 fix", actor="admin",
                                    user="alice"))  # fmt: skip
    made.open_session(session_id="s1", user="alice", target="db", grant_id=grant.id,
                      protocol="postgres", client_addr="127.0.0.1:5000")  # fmt: skip
    clock.advance(timedelta(hours=1))
    write(made, form, [
        start("q1", "SELECT email FROM customers", 1, kind="SELECT"),
        end("q1", 2, "SELECT 2", NOTE),
        start("q2", "DROP TABLE invoices", 1, kind="DROP"), end("q2", 0, "DROP TABLE"),
        start("q3", "DELETE FROM carts", 1, kind="DELETE"),  # ends in a later batch
        start("q4", "SELECT secret FROM keys", 1, kind="SELECT", refused="masked column"),
    ])  # fmt: skip
    clock.advance(timedelta(minutes=5))
    write(made, form, [end("q3", 40, "DELETE 40", at_hours=1.1)])
    return made


Edit = Callable[..., None]


@pytest.fixture
def edit(raw: Callable[[Store], Admin]) -> Edit:
    """An admin's edit of the store's tables, on its engine: edit(store, sql, *params)."""

    def run(store: Store, sql: str, *params: object) -> None:
        raw(store).execute(sql, params)

    return run


@on(*SQLITE)  # and on PostgreSQL below, before each edit
def test_an_untouched_log_passes(store: Store) -> None:
    assert query_log_problem(store, WEEK) is None


DIFFERS = "in the query log differs"
MOVED: dict[str, str | None] = {"first": "or moved from when it ran", "second": DIFFERS}
GONE: dict[str, str | None] = {
    "first": "q3 is in the chain but was deleted",
    "second": "was deleted",
}


EDITS: list[tuple[str | None, str, str | dict[str, str | None]]] = [
    ("sql = 'SELECT 1'", "q2", DIFFERS),
    ("session_id = 's0'", "q2", DIFFERS),
    ("refused_reason = NULL", "q4", DIFFERS),
    ("refused_reason = 'x'", "q1", DIFFERS),
    ("rows = 4", "q3", DIFFERS),  # its outcome came in a query.done event
    ("command_tag = 'SELECT 0'", "q3", DIFFERS),
    ("rows = 0", "q1", DIFFERS),
    ("masked_columns = '{\"masked\": [\"customers.email\"]}'", "q1", DIFFERS),
    ("masked_columns = NULL", "q1", DIFFERS),
    ("masked_columns = '{not json'", "q1", DIFFERS),
    ("finished_at = at, rows = 9", "q4", DIFFERS),  # an outcome the chain never saw
    ("query_key = 'q9'", "q2", {"first": "q9 is in the query log but in no chained event",
                                "second": f"statement q9 {DIFFERS}"}),
    # renumbered: the first form links a row by key only, the second binds its id
    ("id = id + 100", "q2", {"first": None, "second": "is in no chained commit"}),
    ("refused_reason = ''", "q2", DIFFERS),  # "ran" would read as "tried"
    ("refused_reason = 'other words'", "q4", DIFFERS),
    ("masked_columns = replace(replace(masked_columns, '\"grant\": 3', '\"grant\": 3.0'),"
     " '\"grant\":3', '\"grant\":3.0')", "q1", DIFFERS),
    ("rows = 250000", "q4", DIFFERS),  # no outcome chained: a SELECT made an export
    ("command_tag = 'COPY 9'", "q4", DIFFERS),
    ("statement_kind = 'SELECT'", "q2", DIFFERS),  # a DROP relabelled as a read
    (f"at = '{iso(WEEK.start - timedelta(minutes=40))}'", "q2", MOVED),
    (None, "q3", GONE),
]  # fmt: skip


@on(*SQLITE)
@pytest.mark.parametrize(("change", "key", "said"), EDITS)
def test_each_field_the_review_reads_is_checked(
    store: Store,
    form: str,
    *,
    change: str | None,
    key: str,
    said: str | dict[str, str | None],
    edit: Edit,
) -> None:
    if change is None:
        edit(store, "DELETE FROM queries WHERE query_key = ?", key)
    else:
        edit(store, f"UPDATE queries SET {change} WHERE query_key = ?", key)
    problem = query_log_problem(store, WEEK)
    expected = said if isinstance(said, str) else said[form]
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


@on("postgresql-first", "postgresql-second")
def test_each_field_is_checked_alike_on_a_store_on_postgresql(
    store: Store, form: str, raw: Callable[[Store], Admin]
) -> None:
    """Every edit above, one at a time, on one store kept on PostgreSQL (its rows put back
    after each): the same findings as on SQLite."""
    admin = raw(store)
    admin.execute("CREATE TEMP TABLE kept AS SELECT * FROM queries")
    assert query_log_problem(store, WEEK) is None
    for change, key, said in EDITS:
        if change is None:
            admin.execute("DELETE FROM queries WHERE query_key = ?", (key,))
        else:
            admin.execute(f"UPDATE queries SET {change} WHERE query_key = ?", (key,))
        problem = query_log_problem(store, WEEK)
        expected = said if isinstance(said, str) else said[form]
        if expected is None:
            assert problem is None, change
        else:
            assert problem is not None and expected in problem, change
        admin.execute("DELETE FROM queries")
        admin.execute("INSERT INTO queries SELECT * FROM kept")
    assert query_log_problem(store, WEEK) is None  # put back as it was


@on(*SQLITE, "postgresql-first", "postgresql-second")
def test_a_session_handed_to_someone_else_is_named(store: Store, edit: Edit) -> None:
    """The statements' events say alice ran them: a session row pointed at bob (or alice
    renamed) no longer matches."""
    store.add_user("bob", "engineer", None, bytes(16), "admin")
    edit(store, "UPDATE sessions SET user_id = (SELECT id FROM users WHERE name = 'bob')")
    problem = query_log_problem(store, WEEK)
    assert problem is not None and "session s1 names bob on db" in problem
    assert "chained events alice on db" in problem


@on(*SQLITE, "postgresql-first", "postgresql-second")
def test_a_copied_row_is_named(store: Store, form: str, edit: Edit) -> None:
    """Copies of a row would count its statement (and the unmasked rows it showed) twice."""
    edit(store, "INSERT INTO queries (id, session_id, at, protocol_step, sql, statement_kind,"
         " query_key, finished_at, rows, command_tag, masked_columns) SELECT 99, session_id,"
         " at, protocol_step, sql, statement_kind, query_key, finished_at, rows, command_tag,"
         " masked_columns FROM queries WHERE query_key = 'q1'")  # fmt: skip
    problem = query_log_problem(store, WEEK)
    said = {"first": "q1 is in the query log 2 times",
            "second": "query log row 99 (statement q1) is in no chained commit"}  # fmt: skip
    assert problem is not None and said[form] in problem


@on("sqlite-first", "postgresql-first")
def test_a_row_deleted_and_another_copied_in_its_place_is_named(store: Store, edit: Edit) -> None:
    """The rows still number the week's events, so the count alone would balance: the deleted
    row is named as well as the copy."""
    edit(store, "DELETE FROM queries WHERE query_key = 'q2'")
    edit(store, "INSERT INTO queries (id, session_id, at, protocol_step, sql, statement_kind,"
         " query_key, finished_at, rows, command_tag, masked_columns) SELECT 99, session_id,"
         " at, protocol_step, sql, statement_kind, query_key, finished_at, rows, command_tag,"
         " masked_columns FROM queries WHERE query_key = 'q1'")  # fmt: skip
    found = dict(
        store.query_log_candidates(
            (iso(WEEK.start), iso(WEEK.end)), (iso(WEEK.start), iso(WEEK.end))
        )
    )
    assert [r["key"] for r in found["repeated"]] == ["q1"]
    assert [r["key"] for r in found["deleted"]] == ["q2"]


@on(*SQLITE, "postgresql-first")
def test_the_same_note_written_another_way_is_no_false_alarm(store: Store, edit: Edit) -> None:
    """Other key order, spacing and \\u escapes: the same note, so no finding."""
    edit(store, "UPDATE queries SET masked_columns = ? WHERE query_key = 'q1'",
         '{ "unmasked": [{"rows": 2, "columns": ["\\u0065"], "grant": 3}],'
         ' "masked": ["customers.email"] }')  # fmt: skip
    assert query_log_problem(store, WEEK) is None


@on(*SQLITE, "postgresql-first")
def test_a_problem_after_a_page_of_false_candidates_is_found(
    store: Store, monkeypatch: pytest.MonkeyPatch, edit: Edit
) -> None:
    """Candidates come in pages: a real difference past the first page is still found."""
    monkeypatch.setattr(querylog, "PAGE", 1)
    edit(store, "UPDATE queries SET masked_columns = ? WHERE query_key = 'q1'",
         json.dumps(NOTE, indent=1))  # fmt: skip
    assert query_log_problem(store, WEEK) is None
    edit(store, "UPDATE queries SET sql = 'DROP TABLE x' WHERE query_key = 'q3'")
    problem = query_log_problem(store, WEEK)
    assert problem is not None and "q3" in problem


@on(*SQLITE, "postgresql-first")
def test_rows_outside_the_week_are_not_judged(store: Store, edit: Edit) -> None:
    later = parse_week("2026-W48", "UTC")
    edit(store, "UPDATE queries SET sql = 'SELECT 1' WHERE query_key = 'q2'")
    assert query_log_problem(store, later) is None
    assert query_log_problem(store, WEEK) is not None


@on(*SQLITE, "postgresql-second")
def test_routine_writes_are_one_row_a_text_and_what_matters_one_row_each(store: Store) -> None:
    """The review's statements table: a write run many times is one row (how many, until
    when); a destructive statement, DDL or a refusal is a row each, with its own evidence."""
    store.write_batch([
        *[r for n in range(3) for r in (start(f"u{n}", "UPDATE t SET a = $1 WHERE id = $2", 2,
                                              kind="UPDATE"), end(f"u{n}", 1, "UPDATE 1"))],
        start("d1", "DELETE FROM carts", 3, kind="DELETE"), end("d1", 5, "DELETE 5"),
        start("c1", "CREATE INDEX i ON t (a)", 3, kind="CREATE INDEX"),
        end("c1", 0, "CREATE INDEX"),
    ])  # fmt: skip
    facts = collect(store, WEEK, WEEK.end)
    rows = build_tables(facts)["notable"].rows
    updates = [r for r in rows if r[5] == "UPDATE t SET a = $1 WHERE id = $2"]
    assert len(updates) == 1 and updates[0][4] == "statements"
    assert str(updates[0][6]).startswith("UPDATE, 3 times until ")
    deletes = [r for r in rows if r[5] == "DELETE FROM carts"]
    assert len(deletes) == 2 and all(r[4] == "statement" for r in deletes)  # q3 and d1
    assert [r[4] for r in rows if r[5] == "CREATE INDEX i ON t (a)"] == ["statement"]
    assert [r[6] for r in rows if r[5] == "SELECT secret FROM keys"] == ["refused: masked column"]
    assert {s["sql"] for s in facts.statements} >= {"DELETE FROM carts", "DROP TABLE invoices"}


@on(*SQLITE)  # SQLite's schema, edited (PostgreSQL's indexes: tests/audit/test_store.py)
def test_an_index_rebuilt_to_lie_is_named(store: Store) -> None:
    """An admin rebuilds the index on queries.at so that the DROP's entry says it ran before
    the week, then puts the index's old definition back: every read by time would skip it
    while its row stays untouched. The build checks the indexes against their tables."""
    assert store.index_problem() is None
    conn = sqlite3.connect(store.file, isolation_level=None)
    (row_id,) = conn.execute("SELECT id FROM queries WHERE query_key = 'q2'").fetchone()
    (definition,) = conn.execute(
        "SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = 'queries_at'"
    ).fetchone()
    before = iso(WEEK.start - timedelta(minutes=30))
    conn.execute("DROP INDEX queries_at")
    conn.execute(
        f"CREATE INDEX queries_at ON queries((CASE WHEN id = {row_id} THEN '{before}' ELSE at END))"
    )
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_schema SET sql = ? WHERE name = 'queries_at'", (definition,))
    conn.execute("PRAGMA writable_schema=OFF")
    conn.close()
    problem = store.index_problem()
    assert problem is not None and "queries and its indexes disagree" in problem


@on(*SQLITE, "postgresql-first")
def test_a_row_under_an_id_below_one_is_judged(store: Store, edit: Edit) -> None:
    """Ids are what the writer hands out from 1, but an admin can write 0 or below: such a
    row is compared like any other (the comparison once paged from id 0 and skipped it)."""
    edit(store, "INSERT INTO queries (id, session_id, at, protocol_step, sql, statement_kind,"
         " query_key) SELECT -5, session_id, at, protocol_step, 'DROP TABLE x', statement_kind,"
         " 'q9' FROM queries WHERE query_key = 'q2'")  # fmt: skip
    problem = query_log_problem(store, WEEK)
    assert problem is not None and "q9 is in the query log but in no chained event" in problem
