"""The week's sessions table checked against the chain: the review reads the editable
`sessions` rows (who, where, from which address, when, how it ended, the recording's hash),
so each must match its session.opened and session.closed events, and no session that opened
or closed in the week may have lost its row. An admin with the files could otherwise move a
session out of the week, give it to someone else, or delete it, and the review would agree.

A row is written in the same transaction as its event, a moment before it: its time may be
earlier than the event's by at most SLACK. Sessions open across the whole week, with neither
event inside it, are checked for their row's fields but a deleted one is not noticed here
(the chain walk and `audit verify` still hold their events)."""

from __future__ import annotations

import json
from typing import Any

from bastion.audit import Store
from bastion.audit.sessions import ROW_SLACK
from bastion.clock import iso, parse_iso
from bastion.reports.week import Week

SLACK = ROW_SLACK
Row = dict[str, Any]


def session_log_problem(store: Store, week: Week) -> str | None:
    """The first session row of the week its chained events do not vouch for, or None."""
    start, end = iso(week.start - SLACK), iso(week.end + SLACK)
    events: dict[tuple[str, str], Row] = {}
    for event in store.session_events(start, end):
        events.setdefault((event["kind"], event["session_id"] or ""), event)
    rows = store.week_sessions(iso(week.start), iso(week.end))
    known = {row["id"] for row in rows}
    for row in rows:
        problem = _opened(store, row, events) or _closed(store, row, events)
        if problem:
            return problem
    for (kind, session_id), event in events.items():
        if session_id not in known and _in_week(event, week):
            return f"session {session_id} is in the chain ({kind}) but not in the sessions table"
    return None


def _in_week(event: Row, week: Week) -> bool:
    return week.start <= parse_iso(event["at"]) < week.end


def _event(store: Store, events: dict[tuple[str, str], Row], kind: str, row: Row,
           column: str) -> Row | str:  # fmt: skip
    """The session's event of this kind, written within SLACK after the row's `column`
    says; else the problem, in one line."""
    when = parse_iso(row[column])
    found = events.get((kind, row["id"]))
    if found is None:  # outside the week's window: looked up by the time index
        near = store.session_event(row["id"], kind, iso(when), iso(when + SLACK))
        found = near[0] if near else None
    if found is None or not when <= parse_iso(found["at"]) <= when + SLACK:
        return (f"session {row['id']} has {column} {row[column]} in the sessions table;"
                f" no chained {kind} event says so")  # fmt: skip
    return found


def _opened(store: Store, row: Row, events: dict[tuple[str, str], Row]) -> str | None:
    event = _event(store, events, "session.opened", row, "started_at")
    if isinstance(event, str):
        return event
    detail = _detail(event)
    said = (event["actor"], event["subject"], detail.get("protocol"), detail.get("client"),
            detail.get("grant"))  # fmt: skip
    held = (row["person"], row["target"], row["door"], row["client_addr"], row["grant_id"])
    if said != held:
        return (f"session {row['id']} names {held[0]} on {held[1]} ({held[2]}, from {held[3]},"
                f" grant {held[4]}); its chained event {said[0]} on {said[1]} ({said[2]},"
                f" from {said[3]}, grant {said[4]})")  # fmt: skip
    return None


def _closed(store: Store, row: Row, events: dict[tuple[str, str], Row]) -> str | None:
    if row["ended_at"] is None:
        shut = events.get(("session.closed", row["id"]))
        if shut is not None:
            return (f"session {row['id']} is open in the sessions table;"
                    f" the chain closed it at {shut['at']}")  # fmt: skip
        return None
    event = _event(store, events, "session.closed", row, "ended_at")
    if isinstance(event, str):
        return event
    detail = _detail(event)
    said = (detail.get("state"), detail.get("reason"), detail.get("recording_sha256"))
    held = (row["state"], row["end_reason"], row["recording_sha256"])
    if said != held:
        return (
            f"session {row['id']} ended {held[0]} ({held[1]!r}, recording {held[2]});"
            f" its chained event says {said[0]} ({said[1]!r}, recording {said[2]})"
        )
    return None


def _detail(event: Row) -> dict[str, Any]:
    try:
        found = json.loads(event["detail"] or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
