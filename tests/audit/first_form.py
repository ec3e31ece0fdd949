"""The query log as the store wrote it before commit events: a chained event per statement
(`query`, `query.refused`, and `query.done` for an end in a later batch). Tests write stores of
that form with it, to prove they still verify and that the review still checks them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bastion.audit import QueryEnd, QueryStart, Store
from bastion.audit.chain import Event
from bastion.audit.queries import _INSERT_QUERY, _UPDATE_QUERY
from bastion.audit.sqlconn import one
from bastion.clock import iso

_OPEN: dict[tuple[str, str], int] = {}  # (store path, key) -> row id, for ends in a later batch


def write_first_form(store: Store, records: Sequence[QueryStart | QueryEnd]) -> None:
    """Rows and per-statement events, as the store wrote them before commit events."""
    ends = {r.key: r for r in records if isinstance(r, QueryEnd)}
    merged: set[str] = set()
    events: list[Event] = []
    with store._write() as conn:
        next_id = int(one(conn.execute("SELECT coalesce(max(id), 0) FROM queries"))[0])
        for record in records:
            if isinstance(record, QueryStart):
                end = ends.get(record.key)
                next_id += 1
                if end is None:
                    _OPEN[(str(store.path), record.key)] = next_id
                else:
                    merged.add(record.key)
                conn.execute(_INSERT_QUERY, _row(next_id, record, end))
                events.append(_event(record, end))
            elif record.key not in merged:
                found = _OPEN.pop((str(store.path), record.key), None)
                if found is not None:
                    conn.execute(_UPDATE_QUERY, (*_outcome_values(record), found))
                events.append(Event("query.done", record.user, record.target, "info",
                                    record.session_id, _outcome(record)))  # fmt: skip
        store._append(conn, events)


def _row(row_id: int, start: QueryStart, end: QueryEnd | None) -> tuple[Any, ...]:
    done = _outcome_values(end) if end else (None, None, None, None, None, None)
    return (row_id, start.session_id, iso(start.at), start.step, start.sql, start.parameters,
            start.refused, start.kind, start.key, *done, start.kept_whole)  # fmt: skip


def _outcome_values(end: QueryEnd) -> tuple[Any, ...]:
    return (iso(end.finished_at), end.rows, end.tag, end.sqlstate, end.duration_us, end.masking)


def _event(start: QueryStart, end: QueryEnd | None) -> Event:
    detail: dict[str, Any] = {"key": start.key, "step": start.step, "sql": start.sql,
                              "at": iso(start.at), "kind": start.kind}  # fmt: skip
    if start.refused is not None:
        detail["refused"] = start.refused
    if end is not None:
        detail["done"] = _outcome(end)
    kind = "query.refused" if start.refused else "query"
    return Event(kind, start.user, start.target, "info", start.session_id, detail)


def _outcome(end: QueryEnd) -> dict[str, Any]:
    out = {"key": end.key, "rows": end.rows, "tag": end.tag, "sqlstate": end.sqlstate,
           "us": end.duration_us}  # fmt: skip
    if end.masking is not None:
        out["masking"] = json.loads(end.masking)
    return out
