"""The week's query log checked against the chain: the review reads the editable `queries`
table, so each of its rows must match the statement's chained event (text, refusal, rows)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from bastion.audit import Store
from bastion.clock import iso
from bastion.reports.week import Week

MARGIN = timedelta(hours=1)  # an event is written a little after its statement ran


def query_log_problem(store: Store, week: Week) -> str | None:
    """The first query-log row of the week that its chained event does not vouch for (edited,
    added or deleted without the key), or None."""
    events = _events(store, iso(week.start - MARGIN), iso(week.end + MARGIN))
    rows = {r["key"]: r for r in store.query_log_between(iso(week.start - MARGIN),
                                                         iso(week.end + MARGIN))}  # fmt: skip
    for row in store.query_log_between(iso(week.start), iso(week.end)):
        event = events.get(row["key"])
        if event is None:
            return f"statement {row['key']} is in the query log but in no chained event"
        if _differs(row, event):
            return f"statement {row['key']} in the query log differs from its chained event"
    inside = _events(store, iso(week.start), iso(week.end))
    for key in inside:
        if key not in rows:
            return f"statement {key} is in the chain but was deleted from the query log"
    return None


def _events(store: Store, start: str, end: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for row in store.query_events_between(start, end):
        detail = json.loads(row["detail"])
        if isinstance(detail, dict) and isinstance(detail.get("key"), str):
            found[detail["key"]] = detail
    return found


def _differs(row: dict[str, Any], event: dict[str, Any]) -> bool:
    if row["sql"] != event.get("sql") or bool(row["refused_reason"]) != ("refused" in event):
        return True
    done = event.get("done")
    return isinstance(done, dict) and row["rows"] != done.get("rows")
