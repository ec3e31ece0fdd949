"""The week's query log of the first form (a chained event per statement, as stores were
written before commit events; bastion/audit/qlogbind.py checks the rest) compared with the
chain in the database: the rows that may differ.

The review reads the editable `queries` table, so each of its rows must match its statement's
chained event. A million statements can't be compared in Python in time, so the database does
it: each event's fields are read out of its JSON once into a temporary table on a read-only
connection of its own (safe to run in a thread beside the build), and one join names every
row whose text, session, refusal or outcome is not what the chain says, and every event
whose row is gone. The comparison is strict; what it names are candidates, which
bastion/reports/querycheck.py confirms field by field (a masking note written with other
spacing or escapes is the same note). JSON is read through the dialect's fragments
(json_extract on SQLite, jsonb on PostgreSQL), the rest is standard SQL on both. Every
function here reads through the store's `reader()` connection, which its caller opens and
closes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bastion.audit import dialect
from bastion.audit.dialect import fragment
from bastion.audit.sqlconn import Conn, DbError, Dialect, Duplicate, one
from bastion.errors import StoreError

Rows = list[dict[str, Any]]
KINDS = "('query', 'query.refused', 'query.done')"
PAGE = 1000  # candidate rows read at a time


def _events_sql(engine: Dialect) -> str:
    """The week's statement events, each field read out of its JSON once (a temporary table)."""

    def field(name: str, path: str, how: str = "json_scalar") -> str:
        return f"{fragment(engine, how, col='detail', path=path)} AS {name}"

    def outcome(name: str, how: str) -> str:
        ended = fragment(engine, how, col="detail", path=name)
        within = fragment(engine, how, col="detail", path=f"done.{name}")
        return f"CASE kind WHEN 'query.done' THEN {ended} ELSE {within} END AS {name}"

    done = fragment(engine, "json_type", col="detail", path="done")
    return (
        f"CREATE TEMP TABLE ev AS SELECT seq, {field('k', 'key')}, kind, at, session_id,"
        f" actor, subject, {field('sql', 'sql')}, {field('refused', 'refused')},"
        f" {field('ran_at', 'at')}, {field('tag_kind', 'kind')},"
        f" CASE kind WHEN 'query.done' THEN 'object' ELSE {done} END AS done,"
        f" {outcome('rows', 'json_scalar_number')}, {outcome('tag', 'json_scalar')},"
        f" {outcome('masking', 'json_part')}"
        f" FROM audit_events WHERE at >= ? AND at < ? AND kind IN {KINDS}"
    )


_LOG = (
    "CREATE TEMP TABLE ql AS SELECT query_key AS k, at FROM queries WHERE at >= ? AND at < ?"
    " AND id < ?"
)
# A row's outcome against an event's: {note} is the row's masking note as canonical JSON.
_DIFFERS = (
    "q.rows IS DISTINCT FROM o.rows OR q.command_tag IS DISTINCT FROM o.tag OR"
    " {note} IS DISTINCT FROM o.masking"
)
_JOINED = (
    " FROM queries q LEFT JOIN ev st ON st.k = q.query_key AND st.kind <> 'query.done'{done_join}"
)
_DIFFERS_FROM_EVENT = (
    "(st.k IS NULL OR q.session_id IS DISTINCT FROM st.session_id"
    " OR q.sql IS DISTINCT FROM st.sql OR q.refused_reason IS DISTINCT FROM st.refused"
    " OR (st.ran_at IS NOT NULL AND (q.at IS DISTINCT FROM st.ran_at"
    " OR q.statement_kind IS DISTINCT FROM st.tag_kind))"
    " OR (st.done IS NULL AND {no_done} AND (q.finished_at IS NOT NULL OR q.rows IS NOT NULL"
    " OR q.command_tag IS NOT NULL OR q.masked_columns IS NOT NULL))"
    " OR (st.done = 'object' AND EXISTS (SELECT 1 FROM (SELECT st.rows AS rows, st.tag AS tag,"
    " st.masking AS masking) o WHERE {differs})){done_differs})"
)
_ROWS = (
    "SELECT q.id, q.query_key AS key, q.at, q.statement_kind AS kind, q.session_id, q.sql,"
    " q.refused_reason, q.rows, q.command_tag, q.masked_columns, q.finished_at,"
    " st.seq AS started_seq, {done_seq} AS done_seq"
    + _JOINED
    + " WHERE q.at >= ? AND q.at < ? AND q.id > ? AND q.id < ? AND "
    + _DIFFERS_FROM_EVENT
    + " ORDER BY q.id LIMIT ?"
)
# One pass over the log rows of the wide span that says whether anything needs naming: how
# many rows of the week differ from their events (`differ`), and how many of the week's
# statement events a row stands for (`kept`: an event's row is where the event says the
# statement ran, or anywhere in the span for events that don't say). With every key held by
# one row at most, `kept` short of the week's events (`events`) means a row is gone.
_TALLY = (
    "SELECT (SELECT COUNT(*) FROM ev WHERE kind <> 'query.done' AND at >= ? AND at < ?)"
    " AS events, COALESCE(SUM(CASE WHEN q.at >= ? AND q.at < ? AND "
    + _DIFFERS_FROM_EVENT
    + " THEN 1 ELSE 0 END), 0) AS differ, COALESCE(SUM(CASE WHEN st.at >= ? AND st.at < ?"
    " AND (st.ran_at IS NULL OR q.at = st.ran_at) THEN 1 ELSE 0 END), 0) AS kept"
    + _JOINED
    + " WHERE q.at >= ? AND q.at < ? AND q.id < ?"
)
# Events of the first form end a statement with an event of its own (query.done); a week
# without any is compared without looking for them (a million lookups saved).
_WITH_DONE = {
    "done_seq": "dn.seq",
    "done_join": " LEFT JOIN ev dn ON dn.k = q.query_key AND dn.kind = 'query.done'",
    "no_done": "dn.k IS NULL",
    "done_differs": " OR (dn.k IS NOT NULL AND EXISTS (SELECT 1 FROM (SELECT dn.rows AS rows,"
    " dn.tag AS tag, dn.masking AS masking) o WHERE {differs}))",
}
_WITHOUT_DONE = {"done_seq": "NULL", "done_join": "", "no_done": "1 = 1", "done_differs": ""}


def _form(engine: Dialect, with_done: bool) -> dict[str, str]:
    """What fills _ROWS and _TALLY: with or without query.done events, in this dialect."""
    differs = _DIFFERS.format(note=fragment(engine, "json_canonical", x="q.masked_columns"))
    form = dict(_WITH_DONE if with_done else _WITHOUT_DONE, differs=differs)
    form["done_differs"] = form["done_differs"].format(differs=differs)
    return form


_ANY_DONE = "SELECT 1 FROM ev WHERE kind = 'query.done' LIMIT 1"
# An event's row is gone when no row has its key (and, once events say when their statement
# ran, that time: a row moved across the week's edge is gone from where it ran).
_DELETED = (
    "SELECT ev.seq, ev.k AS key FROM ev LEFT JOIN ql ON ql.k = ev.k"
    " AND (ev.ran_at IS NULL OR ql.at = ev.ran_at)"
    " WHERE ev.kind <> 'query.done' AND ev.at >= ? AND ev.at < ? AND ql.k IS NULL"
    " ORDER BY ev.seq LIMIT 1"
)
# Each session's person and target, as the sessions table names them, against the person and
# target of its statements' events (once a session: the rows already name their session).
_PEOPLE = (
    "SELECT e.session_id, e.actor, e.subject, u.name AS person, t.name AS target FROM ("
    "SELECT DISTINCT session_id, actor, subject FROM ev WHERE kind <> 'query.done'"
    " AND at >= ? AND at < ?) e"
    " LEFT JOIN sessions s ON s.id = e.session_id LEFT JOIN users u ON u.id = s.user_id"
    " LEFT JOIN targets t ON t.id = s.target_id"
    " WHERE u.name IS DISTINCT FROM e.actor OR t.name IS DISTINCT FROM e.subject LIMIT 1"
)
_REPEATED = (
    "SELECT k AS key, COUNT(*) AS n FROM ql WHERE k IS NOT NULL GROUP BY k"
    " HAVING COUNT(*) > 1 LIMIT 1"
)


# Rows of the first form, or statement events of the first form, near the week: a week
# written wholly in the second form (bastion/audit/qlogbind.py) skips everything below.
_FIRST_FORM = (
    "SELECT 1 WHERE EXISTS (SELECT 1 FROM queries WHERE at >= ? AND at < ? AND id < ?)"
    f" OR EXISTS (SELECT 1 FROM audit_events WHERE kind IN {KINDS} AND at >= ? AND at < ?)"
)
NO_BOUND = 1 << 62  # `below` for a store with no commit event: every row is of the first form


def query_log_candidates(
    conn: Conn, week: tuple[str, str], wide: tuple[str, str], below: int = NO_BOUND
) -> Iterator[tuple[str, Rows]]:
    """Pages of ("row", query rows that may differ from their events, with the events' seqs),
    then ("people", a session whose person or target is not its statements', if any), then
    ("repeated", a key held by more than one row, if any), then ("deleted", the first
    statement event of the week whose row is gone, if any).
    `week` is [start, end); `wide` adds a margin either side (an event is written a little
    after its statement ran, and may be read for a row near the week's edge). Only rows with
    ids below `below` are of this form and compared here."""
    try:
        conn.begin_read()  # one snapshot for every read below
        try:
            first_form = below == NO_BOUND or _any(conn, _FIRST_FORM, (*wide, below, *wide))
            if not first_form:
                return
            conn.execute(_events_sql(conn.dialect), wide)
            conn.execute("CREATE INDEX ev_k ON ev (k, kind)")  # with its temporary table
            conn.execute(_LOG, (*wide, below))
            repeated = _index_log(conn)
            form = _form(conn.dialect, _any(conn, _ANY_DONE))
            compare = _ROWS.format(**form)
            tally = one(conn.execute(_TALLY.format(**form), (*week, *week, *week, *wide, below)))
            after, page = -(1 << 63), PAGE  # ids below 1 are rows too (an admin can write them)
            while tally["differ"]:
                rows = [dict(r) for r in conn.execute(compare, (*week, after, below, page))]
                if rows:
                    yield "row", rows
                if len(rows) < page:
                    break
                after = int(rows[-1]["id"])
            yield "people", [dict(r) for r in conn.execute(_PEOPLE, week)]
            yield "repeated", [dict(r) for r in conn.execute(_REPEATED)] if repeated else []
            gone = repeated or tally["kept"] != tally["events"]
            yield "deleted", [dict(r) for r in conn.execute(_DELETED, week)] if gone else []
        finally:
            if conn.in_transaction:
                conn.rollback()  # nothing was written but TEMP tables, which go with it
    except DbError as exc:
        raise StoreError(f"cannot compare the query log: {exc}") from exc


def _index_log(conn: Conn) -> bool:
    """Index the week's log rows by key; True when a key is held by more than one row (the
    unique index can't be made: _REPEATED names the key)."""
    conn.execute("SAVEPOINT ql_k")  # on PostgreSQL a refused statement fails its transaction
    try:
        conn.execute("CREATE UNIQUE INDEX ql_k ON ql (k)")
    except Duplicate:
        conn.execute("ROLLBACK TO SAVEPOINT ql_k")
        conn.execute("CREATE INDEX ql_k ON ql (k)")
        return True
    return False


def _any(conn: Conn, sql: str, params: tuple[Any, ...] = ()) -> bool:
    return conn.execute(sql, params).fetchone() is not None


CHECKED_TABLES = ("audit_events", "queries", "sessions", "users", "targets", "grants")


def index_problem(conn: Conn) -> str | None:
    """None when every index of the tables the review reads agrees with its table; else the
    first disagreement. An admin with the files can rebuild an index to leave a row out of
    every read by time (and put its old definition back), which nothing else would see."""
    return dialect.index_problem(conn, CHECKED_TABLES)
