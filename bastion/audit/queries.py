"""Store queries for the PostgreSQL door: statements, their outcome, and one-time tickets."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from bastion.audit import qlogbind
from bastion.audit.base import CONTAINS, StoreBase, contains, where
from bastion.audit.chain import ChainedEvent, ChainKey, Event, canonical_json
from bastion.audit.location import PgLocation
from bastion.audit.sqlconn import one
from bastion.clock import Clock, iso, parse_iso
from bastion.errors import Denied, StoreError

RowCheck = Callable[[str, str, str, str, str | None], bool]  # a ticket row's MAC, checked


class QueryStart(NamedTuple):
    """A statement about to go upstream (or refused): written before it is forwarded.

    QueryStart and QueryEnd are NamedTuples rather than frozen dataclasses: the door makes
    two per statement, and these build in a third of the time.
    """

    key: str
    session_id: str
    user: str
    target: str
    at: datetime
    step: str  # simple, parse, bind, execute, function
    sql: str  # literals already replaced by placeholders unless the config keeps them
    parameters: str | None = None
    kind: str | None = None
    refused: str | None = None
    raw: bool = False  # sql is still the client's text: the scribe redacts it and sets kind
    kept_whole: str | None = None  # why sql is the client's text: code that could not be redacted


class QueryEnd(NamedTuple):
    """How a statement ended: rows, command tag, SQLSTATE, duration."""

    key: str
    session_id: str
    user: str
    target: str
    finished_at: datetime
    rows: int | None
    tag: str | None
    sqlstate: str | None
    duration_us: int
    masking: str | None = None  # JSON: masked, detected and unmasked columns (no values)
    server_message: str | None = None  # an error the client saw scrubbed, kept for the audit


@dataclass(frozen=True)
class QueryRow:
    id: int
    session_id: str
    user: str | None
    target: str | None
    at: datetime
    step: str
    sql: str
    parameters: str | None
    kind: str | None
    refused: str | None
    rows: int | None
    tag: str | None
    sqlstate: str | None
    duration_us: int | None
    masking: str | None = None
    kept_whole: str | None = None  # why the text was logged unredacted (its code did not parse)

    def public(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["at"] = iso(self.at)
        return out


Record = Event | QueryStart | QueryEnd


class QueryQueries(StoreBase):
    def __init__(
        self,
        where: Path | PgLocation,
        clock: Clock,
        key: ChainKey | None = None,
        node: str | None = None,
    ) -> None:
        super().__init__(where, clock, key, node)
        self._query_ids: dict[str, int] = {}  # statements written and not yet ended: key -> id

    def write_batch(self, records: Sequence[Record]) -> list[ChainedEvent]:
        """Events, query starts and ends in one transaction: one fsync for all of them.

        Each statement is one row; the statement records of the batch are bound by one
        chained `queries.committed` event (bastion/audit/qlogbind.py), appended after the
        batch's other events. Returns, in the records' order, each event's chained row and,
        for each statement record, the commit event that made it durable.
        """
        if any(isinstance(r, QueryStart) and r.raw for r in records):
            raise StoreError("a statement's text must be redacted before it is stored")
        ends = {r.key: r for r in records if isinstance(r, QueryEnd)}
        started = {r.key for r in records if isinstance(r, QueryStart)}
        owner: list[int] = []  # for each record, the index of its event (-1: the commit's)
        events: list[Event] = []
        with self._write() as conn:
            next_id = 0  # a batch of events alone needs no statement id: one round trip less
            if ends or started:
                next_id = int(one(conn.execute("SELECT coalesce(max(id), 0) FROM queries"))[0])
            commit = qlogbind.Commit(next_id + 1)
            rows: list[tuple[Any, ...]] = []
            updates: list[tuple[Any, ...]] = []
            for record in records:
                if isinstance(record, QueryStart):
                    owner.append(-1)
                    end = ends.get(record.key)
                    next_id += 1
                    if end is None:
                        self._query_ids[record.key] = next_id
                    row = _query_row_values(next_id, record, end)
                    rows.append(row)
                    commit.started(row, record.user, record.target)
                    if end is not None:
                        commit.ended((next_id, *row[9:15]), end.key, end.server_message)
                elif isinstance(record, QueryEnd):
                    owner.append(-1)
                    if record.key in started:
                        continue  # its start took it: one row
                    found = self._query_ids.pop(record.key, None)
                    if found is None:  # its row is not this writer's: the outcome alone
                        commit.orphan(_outcome(record))
                        continue
                    outcome = _outcome_values(record)
                    updates.append((*outcome, found))
                    commit.ended((found, *outcome), record.key, record.server_message)
                else:
                    owner.append(len(events))
                    events.append(record)
            conn.executemany(_INSERT_QUERY, rows)
            conn.executemany(_UPDATE_QUERY, updates)
            bound = commit.event()
            chained = self._append(conn, [*events, bound] if bound else events)
        return [chained[i] for i in owner]

    def queries(
        self,
        *,
        user: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        grep: str | None = None,
        session_id: str | None = None,
        limit: int = 500,
        until: datetime | None = None,
        before: int | None = None,
    ) -> list[QueryRow]:
        """The query log, newest first; `before` is the previous page's last id."""
        clause, params = where([
            ("u.name = ?", user),
            ("t.name = ?", target),
            ("q.at >= ?", iso(since) if since else None),
            ("q.at < ?", iso(until) if until else None),
            (CONTAINS.format(column="q.sql"), contains(grep) if grep else None),
            ("q.session_id = ?", session_id),
            ("q.id < ?", before),
        ])  # fmt: skip
        sql = (
            "SELECT q.*, u.name AS user, t.name AS target FROM queries q"
            " JOIN sessions s ON s.id = q.session_id LEFT JOIN users u ON u.id = s.user_id"
            " LEFT JOIN targets t ON t.id = s.target_id" + clause + " ORDER BY q.id DESC LIMIT ?"
        )
        return [_query_row(r) for r in self._rows(sql, [*params, limit])]

    # -- tickets ----------------------------------------------------------------------

    def add_ticket(self, user: str, target: str, digest: str, expires: datetime, actor: str,
                   *, row_mac: str) -> int:  # fmt: skip
        """Keep a one-time ticket by its keyed digest (the token is shown once to the
        engineer, never stored) with the key's MAC over its row (bastion/identity/onetime.py)."""
        user_id = self._id_by_name("users", user)
        target_id = self._id_by_name("targets", target)
        with self._write() as conn:
            (ticket_id,) = one(
                conn.execute(
                    "INSERT INTO tickets (user_id, target_id, token_sha256, created_at, expires_at,"
                    " row_mac) VALUES (?,?,?,?,?,?) RETURNING id",
                    (user_id, target_id, digest, iso(self.clock.now()), iso(expires), row_mac),
                )
            )
            detail = {"ticket": ticket_id, "target": target, "until": iso(expires)}
            self._append(conn, [Event("ticket.issued", actor, user, "notice", detail=detail)])
            return int(ticket_id)

    def use_ticket(self, user: str, target: str, digest: str, via: str,
                   holds: RowCheck) -> int:  # fmt: skip
        """Spend a ticket once: it must be this user's, for this target, unexpired, and its
        row must carry the key's MAC (`holds`: digest, person, target, end, MAC)."""
        now = self.clock.now()
        with self._write() as conn:
            row: Any = conn.execute(
                "SELECT k.id, k.expires_at, k.used_at, k.revoked_at, k.row_mac, u.name AS user,"
                " t.name AS target FROM tickets k JOIN users u ON u.id = k.user_id"
                " JOIN targets t ON t.id = k.target_id"
                " WHERE k.token_sha256 = ? AND k.reusable = 0",
                (digest,),
            ).fetchone()
            if row is not None and not holds(digest, row["user"], row["target"],
                                             row["expires_at"], row["row_mac"]):  # fmt: skip
                problem: str | None = "unknown ticket (its row does not carry the key's MAC)"
            else:
                problem = _ticket_problem(row, user, target, now)
            if problem is None:
                conn.execute("UPDATE tickets SET used_at = ? WHERE id = ?", (iso(now), row["id"]))
            detail = {"via": via, "target": target, "why": problem} if problem else {
                "via": via, "target": target, "ticket": row["id"]}  # fmt: skip
            kind = "auth.ticket_refused" if problem else "auth.ticket_ok"
            self._append(conn, [Event(kind, via, user, "notice" if problem else "info",
                                      detail=detail)])  # fmt: skip
        if problem is not None:
            raise Denied(problem)
        return int(row["id"])


_INSERT_QUERY = (
    "INSERT INTO queries (id, session_id, at, protocol_step, sql, parameters, refused_reason,"
    " statement_kind, query_key, finished_at, rows, command_tag, sqlstate, duration_us,"
    " masked_columns, kept_whole) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_UPDATE_QUERY = (
    "UPDATE queries SET finished_at = ?, rows = ?, command_tag = ?, sqlstate = ?,"
    " duration_us = ?, masked_columns = ? WHERE id = ?"
)


def _query_row_values(row_id: int, start: QueryStart, end: QueryEnd | None) -> tuple[Any, ...]:
    done = _outcome_values(end) if end else (None, None, None, None, None, None)
    return (row_id, start.session_id, iso(start.at), start.step, start.sql, start.parameters,
            start.refused, start.kind, start.key, *done, start.kept_whole)  # fmt: skip


def _outcome_values(end: QueryEnd) -> tuple[Any, ...]:
    return (iso(end.finished_at), end.rows, end.tag, end.sqlstate, end.duration_us,
            _note(end.masking))  # fmt: skip


def _note(masking: str | None) -> str | None:
    """The masking note in canonical JSON: the form its digest binds, so a note rewritten in
    another form (a jsonb column, a tool) can be recognised as the same note."""
    if masking is None:
        return None
    try:
        return canonical_json(json.loads(masking))
    except ValueError:
        return masking


def _outcome(end: QueryEnd) -> dict[str, Any]:
    out = {"key": end.key, "rows": end.rows, "tag": end.tag, "sqlstate": end.sqlstate,
           "us": end.duration_us}  # fmt: skip
    if end.masking is not None:
        out["masking"] = json.loads(end.masking)
    if end.server_message is not None:
        out["server_message"] = end.server_message
    return out


def _ticket_problem(row: Any, user: str, target: str, now: datetime) -> str | None:
    if row is None or row["user"] != user:
        return "unknown ticket"
    if row["target"] != target:
        return f"this ticket is for {row['target']}, not {target}"
    if row["revoked_at"] is not None:
        return "this ticket was revoked"
    if row["used_at"] is not None:
        return "this ticket was used already"
    if now >= parse_iso(row["expires_at"]):
        return "this ticket has expired"
    return None


def _query_row(r: dict[str, Any]) -> QueryRow:
    return QueryRow(
        id=r["id"], session_id=r["session_id"], user=r["user"], target=r["target"],
        at=parse_iso(r["at"]), step=r["protocol_step"], sql=r["sql"], parameters=r["parameters"],
        kind=r["statement_kind"], refused=r["refused_reason"], rows=r["rows"],
        tag=r["command_tag"], sqlstate=r["sqlstate"], duration_us=r["duration_us"],
        masking=r["masked_columns"], kept_whole=r["kept_whole"],
    )  # fmt: skip
