"""Store queries for the weekly review: one week's rows, read only, in standard SQL.

Every query takes the week as [start, end) in the store's own timestamp form (clock.iso) and
returns plain rows; bastion/reports/gather.py turns them into the report. The SQL sticks to
what SQLite and PostgreSQL both run (no json_extract, no date functions): whatever needs
JSON or dates is done in Python over rows already narrowed by the week, and the big table
(queries) is only ever aggregated or read for the statements that can matter. The one
exception is the query log's comparison with the chain (bastion/audit/querylog.py and
bastion/audit/qlogbind.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from typing import Any

from bastion.audit import qlogbind, querylog
from bastion.audit.base import StoreBase, contains
from bastion.audit.chain import GENESIS, ChainedEvent, keyed_row_holds
from bastion.audit.retention import pruned_query_runs
from bastion.audit.sqlconn import DbError
from bastion.errors import StoreError

Rows = list[dict[str, Any]]

_SESSIONS = (
    "SELECT s.id, u.name AS person, t.name AS target, s.protocol AS door,"
    " s.client_addr, s.started_at, s.ended_at, s.state, s.end_reason, s.recording_path,"
    " s.recording_sha256, s.grant_id"
    " FROM sessions s LEFT JOIN users u ON u.id = s.user_id"
    " LEFT JOIN targets t ON t.id = s.target_id"
    " WHERE s.started_at < ? AND (s.ended_at IS NULL OR s.ended_at >= ?)"
    " ORDER BY s.started_at, s.id"
)
_LAST_EVENT = "SELECT seq, row_hash FROM audit_events ORDER BY seq DESC LIMIT 1"
_EVENT_BEFORE = "SELECT seq, row_hash FROM audit_events WHERE seq < ? ORDER BY seq DESC LIMIT 1"
_BY_SESSION = (
    " FROM {table} x JOIN sessions s ON s.id = x.session_id"
    " LEFT JOIN users u ON u.id = s.user_id LEFT JOIN targets t ON t.id = s.target_id"
)
# Statements that can matter: anything not a plain read, refused, or exporting; and a "read"
# whose text may hold more (a second statement, a data-modifying CTE, EXPLAIN ANALYZE of a
# DELETE): the first statement's tag does not speak for the rest. The review reads these
# again with PostgreSQL's grammar (bastion/reports/sqlcheck.py). Each text is lowered once
# (`low`, in its own CTE) and matched with base.CONTAINS, ASCII case ignored on both engines
# (SQLite's LIKE would ignore it anyway, PostgreSQL's does not).
_MAY_HIDE = (";", "delete", "update", "drop", "truncate", "grant", "revoke", "alter", "merge",
             "insert", "create", "do ", "$$", "prepare", "execute")  # fmt: skip
_MAY_HIDE_PATTERNS = tuple(contains(word) for word in _MAY_HIDE)
_NOTABLE_TEXT = (
    "(" + " OR ".join("low LIKE ? ESCAPE '\\'" for _ in _MAY_HIDE) + " OR kind IS NULL"
    " OR kind NOT IN ('SELECT', 'SHOW', 'EXPLAIN', 'BEGIN', 'COMMIT', 'ROLLBACK',"
    " 'SET', 'RESET', 'DISCARD ALL', 'DEALLOCATE', 'START TRANSACTION', 'EMPTY', 'FETCH',"
    " 'DECLARE CURSOR', 'CLOSE CURSOR', 'SAVEPOINT', 'RELEASE'))"
)
_REFUSED = "CASE WHEN refused_reason IS NULL THEN 0 ELSE 1 END"
_BIG = "CASE WHEN rows >= ? THEN 1 ELSE 0 END"
_SMALL = "rows > 0 AND rows < ?"
# One scan of the week's statements into groups (g), read three ways, told apart by `part`.
_STATEMENT_GROUPS = (
    "WITH g AS MATERIALIZED (SELECT session_id, statement_kind AS kind, sql,"
    f" masked_columns AS note, {_REFUSED} AS refused, {_BIG} AS big, COUNT(*) AS n,"
    f" SUM(CASE WHEN {_SMALL} THEN 1 ELSE 0 END) AS small_n,"
    f" SUM(CASE WHEN {_SMALL} THEN rows ELSE 0 END) AS small_rows,"
    " MIN(at) AS first_at, MAX(at) AS last_at FROM queries WHERE at >= ? AND at < ?"
    " GROUP BY 1, 2, 3, 4, 5, 6),"  # by position: PostgreSQL can't match `?` expressions
    " w AS MATERIALIZED (SELECT session_id, kind, sql, n, first_at, last_at, lower(sql) AS low"
    " FROM g WHERE refused = 0 AND big = 0)"
    " SELECT 'sessions' AS part, x.session_id, x.kind, NULL AS sql, x.n, x.refused,"
    " x.small_n, x.small_rows, NULL AS first_at, NULL AS last_at, u.name AS person,"
    " NULL AS target, CASE WHEN s.id IS NULL THEN 0 ELSE 1 END AS known FROM ("
    "SELECT session_id, kind, SUM(n) AS n, SUM(refused * n) AS refused,"
    " SUM((1 - refused) * small_n) AS small_n, SUM((1 - refused) * small_rows) AS small_rows"
    " FROM g GROUP BY session_id, kind) x"
    " LEFT JOIN sessions s ON s.id = x.session_id LEFT JOIN users u ON u.id = s.user_id"
    " UNION ALL SELECT 'notes', NULL, NULL, note, SUM(n), NULL, NULL, NULL, NULL, NULL, NULL,"
    " NULL, NULL FROM g WHERE note IS NOT NULL GROUP BY note"
    " UNION ALL SELECT 'texts', MIN(x.session_id), x.kind, x.sql, SUM(x.n), NULL, NULL, NULL,"
    " MIN(x.first_at), MAX(x.last_at), u.name, t.name, NULL FROM ("
    "SELECT session_id, kind, sql, SUM(n) AS n, MIN(first_at) AS first_at,"
    " MAX(last_at) AS last_at"
    f" FROM w WHERE {_NOTABLE_TEXT} GROUP BY session_id, sql, kind) x"
    " JOIN sessions s ON s.id = x.session_id LEFT JOIN users u ON u.id = s.user_id"
    " LEFT JOIN targets t ON t.id = s.target_id GROUP BY u.name, t.name, x.sql, x.kind"
)
_IN_CHUNK = 10_000  # texts per IN list (SQLite takes 32,766 parameters)
_GRANTS = (
    "SELECT g.id, u.name AS person, gr.name AS grp, t.name AS target, g.mode, g.starts_at,"
    " g.ends_at, g.reason, g.granted_by, g.created_at, g.revoked_at, g.revoked_by,"
    " g.ticket_ref, g.break_glass, g.acknowledged_at, g.acknowledged_by, g.request_id"
    " FROM grants g LEFT JOIN users u ON u.id = g.user_id"
    " LEFT JOIN groups gr ON gr.id = g.group_id JOIN targets t ON t.id = g.target_id"
)


_GROUP_SUMS = ("n", "refused", "small_n", "small_rows")


def _sums_as_int(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The row with its SUM() columns as int (PostgreSQL sums integers as numeric)."""
    for name in names:
        if row.get(name) is not None:
            row[name] = int(row[name])
    return row


class ReportQueries(StoreBase):
    """The weekly review's reads."""

    def week_sessions(self, start: str, end: str) -> Rows:
        """Sessions open at any moment of the week, on every door."""
        return self._rows(_SESSIONS, (end, start))

    def week_statement_groups(self, start: str, end: str, big: int) -> dict[str, Rows]:
        """The week's statements in one scan, grouped by session, tag, text, masking note,
        refused or not and exporting `big` rows or more, then folded three ways:
        "sessions": per session and tag, n, refused, and `small_n`/`small_rows` (the unrefused
        of 1 to `big` - 1 rows, and their rows), with the session's person and whether the
        session is known (`known`); "notes": each distinct masking note (JSON text, `sql`)
        with how many statements had it; "texts": the unrefused, non-exporting statements that
        may not be plain reads, one row per person, target, text and tag, with how many, the
        first and last time and one of their sessions (a write run 5,000 times is one row).
        The text test runs once per group, not per statement."""
        found: dict[str, Rows] = {"sessions": [], "notes": [], "texts": []}
        params = (big, big, big, start, end, *_MAY_HIDE_PATTERNS)
        for row in self._rows(_STATEMENT_GROUPS, params):
            found[row.pop("part")].append(_sums_as_int(row, _GROUP_SUMS))
        found["texts"].sort(key=lambda row: str(row["first_at"]))
        return found

    def week_statements_of(self, start: str, end: str, big: int, texts: list[str]) -> Rows:
        """Each statement of the week that was refused, exported `big` rows or more, or has
        one of these texts, with where it ran."""
        out: Rows = []
        chunks = [texts[i : i + _IN_CHUNK] for i in range(0, len(texts), _IN_CHUNK)] or [[]]
        for number, chunk in enumerate(chunks):
            which = "x.refused_reason IS NOT NULL OR x.rows >= ?" if number == 0 else "0 = ?"
            if chunk:
                which += f" OR x.sql IN ({', '.join('?' for _ in chunk)})"
            out += self._rows(
                "SELECT x.id, x.session_id, x.at, x.sql, x.statement_kind AS kind,"
                " x.command_tag, x.rows, x.refused_reason, u.name AS person, t.name AS target,"
                " s.started_at, s.grant_id"
                + _BY_SESSION.format(table="queries")
                + f" WHERE x.at >= ? AND x.at < ? AND ({which})",
                (start, end, big if number == 0 else 1, *chunk),
            )
        return sorted(out, key=lambda r: (r["at"], r["id"]))

    def week_statement_volume(
        self, start: str, end: str, below: int, days: list[str],
        sessions: list[str] | None = None,
    ) -> Rows:  # fmt: skip
        """Rows returned (or changed) by each session's unrefused statements of fewer than
        `below` rows each, per day: (session_id, day, n, rows), day 0 to len(days) (`days`:
        the instants the week's second to last days begin). `sessions`, when given, narrows
        to those sessions. (The whole week's per session is week_statement_groups' "sessions".)"""
        cases = " ".join(f"WHEN at < ? THEN {i}" for i in range(len(days)))
        day = f"CASE {cases} ELSE {len(days)} END" if days else "0"
        only = f" AND session_id IN ({', '.join('?' for _ in sessions)})" if sessions else ""
        rows = self._rows(
            "SELECT session_id, day, COUNT(*) AS n, SUM(rows) AS rows FROM ("
            f"SELECT session_id, rows, {day} AS day FROM queries"
            f" WHERE at >= ? AND at < ? AND rows > 0 AND rows < ? AND refused_reason IS NULL{only}"
            ") pieces GROUP BY session_id, day",
            (*days, start, end, below, *(sessions or [])),
        )
        return [_sums_as_int(row, ("rows",)) for row in rows]

    def largest_statements(self, session_ids: list[str], start: str, end: str, below: int,
                           limit: int) -> Rows:  # fmt: skip
        """The `limit` unrefused statements of these sessions in [start, end) that returned
        the most rows, each of fewer than `below`."""
        if not session_ids:
            return []
        marks = ", ".join("?" for _ in session_ids)
        return self._rows(
            "SELECT x.id, x.session_id, x.at, x.sql, x.statement_kind AS kind, x.rows,"
            " x.refused_reason, u.name AS person, t.name AS target, s.started_at, s.grant_id"
            + _BY_SESSION.format(table="queries")
            + f" WHERE x.session_id IN ({marks}) AND x.at >= ? AND x.at < ? AND x.rows > 0"
            " AND x.rows < ? AND x.refused_reason IS NULL ORDER BY x.rows DESC, x.id LIMIT ?",
            (*session_ids, start, end, below, limit),
        )

    def week_commands(self, start: str, end: str) -> Rows:
        return self._rows(
            "SELECT x.id, x.session_id, x.at, x.command, x.reconstructed, x.uncertain,"
            " u.name AS person, t.name AS target, s.started_at, s.grant_id"
            + _BY_SESSION.format(table="commands")
            + " WHERE x.at >= ? AND x.at < ? ORDER BY x.at, x.id",
            (start, end),
        )

    def week_file_ops(self, start: str, end: str) -> Rows:
        return self._rows(
            "SELECT x.id, x.session_id, x.at, x.operation, x.path, x.path2, x.bytes, x.sha256,"
            " x.status, u.name AS person, t.name AS target, s.started_at, s.grant_id"
            + _BY_SESSION.format(table="file_transfers")
            + " WHERE x.at >= ? AND x.at < ? ORDER BY x.at, x.id",
            (start, end),
        )

    def week_event_counts(self, start: str, end: str, kinds: tuple[str, ...]) -> Rows:
        """How many events of each of these kinds the week holds (read from the index on kind
        and time alone)."""
        marks = ", ".join("?" for _ in kinds)
        return self._rows(
            f"SELECT kind, COUNT(*) AS n FROM audit_events WHERE kind IN ({marks})"
            " AND at >= ? AND at < ? GROUP BY kind",
            (*kinds, start, end),
        )

    def week_events(self, start: str, end: str, kinds: tuple[str, ...]) -> Rows:
        """The week's events of the kinds named, oldest first."""
        marks = ", ".join("?" for _ in kinds)
        return self._rows(
            "SELECT seq, at, kind, severity, actor, subject, session_id, detail"
            f" FROM audit_events WHERE at >= ? AND at < ? AND kind IN ({marks}) ORDER BY seq",
            (start, end, *kinds),
        )

    def chain_head_before(self, moment: str) -> tuple[int, str]:
        """The last event written before `moment` (the highest seq whose time is earlier):
        (seq, row MAC); before the first event, (0, GENESIS), as chain_head() says of an
        empty chain (a pack's heads must be MACs). Reads the time index from `moment` on,
        not the whole history, nor the events' rows."""
        first = self._rows(
            "SELECT MIN(seq) AS m, COUNT(*) AS n FROM audit_events WHERE at >= ?", (moment,)
        )[0]
        after, last = first["m"], self._rows(_LAST_EVENT, ())
        if after is None:
            rows = last  # every event is earlier
        elif int(first["n"]) == int(last[0]["seq"]) - int(after) + 1:
            # every seq from `after` on is an event at or after the moment: none later is earlier
            rows = self._rows(_EVENT_BEFORE, (after,))
        else:  # a clock stepped back (or seqs are missing): read the later rows' times
            rows = self._rows(
                "SELECT seq, row_hash FROM audit_events WHERE seq > ? AND +at < ?"
                " ORDER BY seq DESC LIMIT 1",
                (after, moment),
            ) or self._rows(_EVENT_BEFORE, (after,))
        if not rows:  # before the chain's start: a retention checkpoint, if cut before then
            rows = self._rows("SELECT seq, head AS row_hash FROM chain_checkpoints WHERE"
                              " cut_at < ? ORDER BY seq DESC LIMIT 1", (moment,))  # fmt: skip
        return (int(rows[0]["seq"]), str(rows[0]["row_hash"])) if rows else (0, GENESIS)

    def week_grants(self, start: str, end: str) -> Rows:
        """Grants whose window touches the week, made in it, or live after it."""
        return self._rows(
            _GRANTS + " WHERE (g.starts_at < ? AND g.ends_at >= ?) OR (g.created_at >= ?"
            " AND g.created_at < ?) OR (g.revoked_at >= ? AND g.revoked_at < ?)"
            " ORDER BY g.id",
            (end, start, start, end, start, end),
        )

    def grant_sessions(self, grant_ids: list[int]) -> Rows:
        """How many sessions each grant ever opened (any week)."""
        if not grant_ids:
            return []
        marks = ", ".join("?" for _ in grant_ids)
        return self._rows(
            f"SELECT grant_id, COUNT(*) AS n FROM sessions WHERE grant_id IN ({marks})"
            " GROUP BY grant_id",
            grant_ids,
        )

    def week_requests(self, start: str, end: str) -> Rows:
        return self._rows(
            "SELECT r.id, u.name AS person, t.name AS target, r.mode, r.duration_s, r.reason,"
            " r.ticket_ref, r.requested_by, r.created_at, r.state, r.decided_at, r.decided_by,"
            " r.decision_reason, r.grant_id FROM access_requests r"
            " JOIN users u ON u.id = r.user_id JOIN targets t ON t.id = r.target_id"
            " WHERE (r.created_at >= ? AND r.created_at < ?)"
            " OR (r.decided_at >= ? AND r.decided_at < ?) ORDER BY r.id",
            (start, end, start, end),
        )

    def request_approvers(self, request_ids: list[int]) -> Rows:
        if not request_ids:
            return []
        marks = ", ".join("?" for _ in request_ids)
        return self._rows(
            f"SELECT request_id, approver, at FROM request_approvals WHERE request_id IN ({marks})"
            " ORDER BY at",
            request_ids,
        )

    def week_unmask_grants(self, start: str, end: str) -> Rows:
        return self._rows(
            "SELECT g.id, u.name AS person, t.name AS target, g.subject_key, g.subject_value,"
            " g.reason, g.consent_ref, g.consent_sha256, g.requested_by, g.created_at, g.state,"
            " g.decided_by, g.decided_at, g.starts_at, g.ends_at FROM unmask_grants g"
            " JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id"
            " WHERE (g.created_at >= ? AND g.created_at < ?)"
            " OR (g.decided_at >= ? AND g.decided_at < ?)"
            " OR (g.starts_at < ? AND g.ends_at >= ?) ORDER BY g.id",
            (start, end, start, end, end, start),
        )

    def query_log_candidates(
        self, week: tuple[str, str], wide: tuple[str, str], below: int = querylog.NO_BOUND
    ) -> Iterator[tuple[str, Rows]]:
        """Query-log rows of the first form (ids below `below`) that may differ from their
        chained events, in pages, then the first event whose row is gone
        (bastion/audit/querylog.py); on a connection of its own."""
        with closing(self.reader()) as conn:
            yield from querylog.query_log_candidates(conn, week, wide, below)

    def first_commit_id(self) -> int:
        """The first row id bound by a commit event; querylog.NO_BOUND before the first."""
        with closing(self.reader()) as conn:
            try:
                first = qlogbind.boundary(conn)
            except DbError as exc:
                raise StoreError(f"cannot read the store {self.where}: {exc}") from exc
        return querylog.NO_BOUND if first is None else first

    def commit_findings(
        self, week: tuple[str, str], wide: tuple[str, str]
    ) -> tuple[list[qlogbind.Finding], dict[str, Any] | None]:
        """Rows of the second form against their commit events (bastion/audit/qlogbind.py):
        the rows that don't match, and a session whose person or target is not what its
        commits say."""
        found = qlogbind.check(self.reader, self.path, week, wide, pruned_query_runs(self))
        with closing(self.reader()) as conn:
            return found, qlogbind.people_problem(conn, week)

    def index_problem(self) -> str | None:
        """Whether the indexes of the tables the review reads agree with their tables."""
        with closing(self.reader()) as conn:
            return querylog.index_problem(conn)

    def events_by_seq(self, seqs: list[int]) -> dict[int, dict[str, Any]]:
        """Events by seq: (kind, session_id, actor, subject, detail)."""
        if not seqs:
            return {}
        marks = ", ".join("?" for _ in seqs)
        rows = self._rows(
            "SELECT seq, kind, session_id, actor, subject, detail FROM audit_events"
            f" WHERE seq IN ({marks})",
            seqs,
        )
        return {int(r["seq"]): r for r in rows}

    def session_events(self, start: str, end: str) -> Rows:
        """The session.opened and session.closed events written in [start, end), oldest first."""
        return self._rows(
            "SELECT seq, at, kind, actor, subject, session_id, detail FROM audit_events"
            " WHERE at >= ? AND at < ? AND kind IN ('session.opened', 'session.closed')"
            " ORDER BY seq",
            (start, end),
        )

    def session_event(self, session_id: str, kind: str, start: str, end: str) -> Rows:
        """A session's event of this kind written in [start, end] (by the time index)."""
        return self._rows(
            "SELECT * FROM audit_events WHERE at >= ? AND at <= ? AND kind = ?"
            " AND session_id = ? ORDER BY seq LIMIT 1",
            (start, end, kind, session_id),
        )

    def session_owner(self, session_id: str, started_at: str, until: str) -> str | None:
        """Who the chain says opened this session: the actor of its session.opened event
        written in [started_at, until], if that event carries this bastion's MAC; else None
        (a sessions row an admin edited does not decide whose a session is)."""
        rows = self.session_event(session_id, "session.opened", started_at, until)
        if not rows:
            return None
        event = ChainedEvent(**rows[0])
        return event.actor if keyed_row_holds(event, self.chain_key) else None
