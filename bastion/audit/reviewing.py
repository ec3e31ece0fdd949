r"""Store reads for reviewers: session search, a session's command index, the consent ledger.

Every listing here is a page in a fixed order with a keyset cursor (the last row's sort key),
so a page never repeats or skips a row when new ones arrive while someone pages through.
Text is matched as a substring, ASCII case ignored (base.CONTAINS): a `%`, `_` or `\` in what
a reviewer types is matched as itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.audit.base import CONTAINS, StoreBase, contains, where
from bastion.audit.records import SessionRecord, session_from_row
from bastion.audit.sessions import SESSION_SELECT
from bastion.audit.unmask import UNMASK_SELECT, UnmaskGrant, unmask_from_row
from bastion.clock import iso

Rows = list[dict[str, Any]]

# A session matches a text when one of its commands, statements or file paths holds it: each
# table is read once for the text (not once a session), and the sessions found are joined.
_TEXT = (
    "s.id IN (SELECT session_id FROM commands WHERE "
    + CONTAINS.format(column="command")
    + " UNION SELECT session_id FROM queries WHERE "
    + CONTAINS.format(column="sql")
    + " UNION SELECT session_id FROM file_transfers WHERE "
    + CONTAINS.format(column="path || '\n' || coalesce(path2, '')")  # a newline: no match across
    + ")"
)


@dataclass(frozen=True)
class SessionFilter:
    """What a session search asks for; None (or False) leaves a filter out.

    `since`/`until` select the sessions open at any moment of [since, until): one that began
    the evening before and ran past midnight is in the next day's search too."""

    user: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None  # in a command, a statement or a file path of the session
    protocol: str | None = None  # "ssh" or "postgres"
    open_only: bool = False


class ReviewerReadQueries(StoreBase):
    def search_sessions(
        self, found: SessionFilter, *, after: tuple[str, str] | None = None, limit: int = 50
    ) -> list[SessionRecord]:
        """Sessions matching every filter given, newest first; `after` is the (started_at,
        id) of the last row of the previous page."""
        text = contains(found.text) if found.text else None
        clause, params = where([
            ("u.name = ?", found.user),
            ("t.name = ?", found.target),
            ("s.protocol = ?", found.protocol),
            ("(s.ended_at IS NULL OR s.ended_at >= ?)", iso(found.since) if found.since else None),
            ("s.started_at < ?", iso(found.until) if found.until else None),
            ("s.ended_at IS NULL", found.open_only),
            (_TEXT, (text, text, text) if text else None),
            ("(s.started_at < ? OR (s.started_at = ? AND s.id < ?))",
             (after[0], after[0], after[1]) if after else None),
        ])  # fmt: skip
        sql = SESSION_SELECT + clause + " ORDER BY s.started_at DESC, s.id DESC LIMIT ?"
        return [session_from_row(r) for r in self._rows(sql, [*params, limit])]

    def session_commands_page(self, session_id: str, after: int, limit: int) -> Rows:
        """A session's commands in the order they were logged, from id `after` on."""
        return self._rows(
            "SELECT id, at, command AS text, reconstructed, uncertain FROM commands"
            " WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?",
            [session_id, after, limit],
        )

    def session_statements_page(self, session_id: str, after: int, limit: int) -> Rows:
        """A session's statements in the order they ran, from id `after` on."""
        return self._rows(
            "SELECT id, at, sql AS text, statement_kind, refused_reason AS refused,"
            " rows, command_tag AS tag, sqlstate FROM queries"
            " WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?",
            [session_id, after, limit],
        )

    def consent_ledger(
        self,
        *,
        user: str | None = None,
        target: str | None = None,
        state: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[UnmaskGrant]:
        """Unmask grants, newest first; `before` is the id of the previous page's last one."""
        clause, params = where([("u.name = ?", user), ("t.name = ?", target),
                                ("g.state = ?", state), ("g.id < ?", before)])  # fmt: skip
        sql = UNMASK_SELECT + clause + " ORDER BY g.id DESC LIMIT ?"
        return [unmask_from_row(r) for r in self._rows(sql, [*params, limit])]

    def unmasked_notes(self, grant: UnmaskGrant) -> Rows:
        """The distinct masking notes (with how many statements had each) of the statements
        the grant's person ran on its target while it was open: what it showed in clear."""
        if grant.starts_at is None or grant.ends_at is None:
            return []
        return self._rows(
            "SELECT q.masked_columns AS note, COUNT(*) AS n FROM queries q"
            " JOIN sessions s ON s.id = q.session_id JOIN users u ON u.id = s.user_id"
            " JOIN targets t ON t.id = s.target_id WHERE u.name = ? AND t.name = ?"
            " AND q.at >= ? AND q.at <= ?"
            # holds "unmasked", case and all (a case-sensitive substring test on both engines)
            " AND replace(q.masked_columns, '\"unmasked\"', '') <> q.masked_columns"
            " GROUP BY q.masked_columns",
            [grant.user, grant.target, iso(grant.starts_at), iso(grant.ends_at)],
        )
