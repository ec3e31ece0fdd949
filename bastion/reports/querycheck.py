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
    added or deleted without the key), or None. Each table is read once, over the week and
    a margin either side (an event is written a little after its statement ran)."""
    start, end = iso(week.start), iso(week.end)
    wide = iso(week.start - MARGIN), iso(week.end + MARGIN)
    events: dict[str, dict[str, Any]] = {}
    inside: list[str] = []
    for row in store.query_events_between(*wide):
        detail = json.loads(row["detail"])
        if isinstance(detail, dict) and isinstance(detail.get("key"), str):
            events[detail["key"]] = detail
            if start <= row["at"] < end:
                inside.append(detail["key"])
    rows = {r["key"]: r for r in store.query_log_between(*wide)}
    for row in rows.values():
        if not start <= row["at"] < end:
            continue
        event = events.get(row["key"])
        if event is None:
            return f"statement {row['key']} is in the query log but in no chained event"
        if _differs(row, event):
            return f"statement {row['key']} in the query log differs from its chained event"
    for key in inside:
        if key not in rows:
            return f"statement {key} is in the chain but was deleted from the query log"
    return None


def _differs(row: dict[str, Any], event: dict[str, Any]) -> bool:
    if row["sql"] != event.get("sql") or bool(row["refused_reason"]) != ("refused" in event):
        return True
    done = event.get("done")
    return isinstance(done, dict) and row["rows"] != done.get("rows")
