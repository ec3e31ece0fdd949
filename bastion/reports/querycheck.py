"""The week's query log checked against the chain: the review reads the editable `queries`
table, so each of its rows must match what the chain holds for it (text, session and the
person and target the session names, refusal, outcome: rows, tag, masking note), and no
statement the chain holds may have lost its row. Rows bound by a commit event are checked by
digest (bastion/audit/qlogbind.py); rows of stores written before, against their own events.

The database names the candidates (bastion/audit/querylog.py); each is confirmed here field by
field, so a masking note written with other key order, spacing or escapes is not a false alarm
(but 3.0 for 3 is). Events written since they carry it also vouch for when the statement ran
and its tag, so a row moved across the week's edge or relabelled is caught.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from bastion.audit import Store
from bastion.audit.chain import canonical_json
from bastion.clock import iso
from bastion.reports.week import Week

MARGIN = timedelta(hours=1)  # an event is written a little after its statement ran


def query_log_problem(store: Store, week: Week) -> str | None:
    """The first query-log row of the week that its chained event does not vouch for (edited,
    added or deleted without the key), or None."""
    span = iso(week.start), iso(week.end)
    wide = iso(week.start - MARGIN), iso(week.end + MARGIN)
    return commit_problem(store, span, wide) or first_form_problem(store, span, wide)


def commit_problem(store: Store, span: tuple[str, str], wide: tuple[str, str]) -> str | None:
    """The first row of the second form (bound by commit events) its commit does not vouch
    for, or a session handed to someone else than its commits say."""
    found, people = store.commit_findings(span, wide)
    if found:
        return str(found[0])
    if people is not None:
        return people_text(people)
    return None


def people_text(row: dict[str, Any]) -> str:
    return (
        f"session {row['session_id']} names {row['person']} on {row['target']},"
        f" its statements' chained events {row['actor']} on {row['subject']}"
    )


def first_form_problem(store: Store, span: tuple[str, str], wide: tuple[str, str]) -> str | None:
    """The first row of the first form (a chained event per statement) that differs."""
    below = store.first_commit_id()
    for what, rows in store.query_log_candidates(span, wide, below):
        if what == "deleted":
            for row in rows:
                return (f"statement {row['key']} is in the chain but was deleted from the query"
                        " log (or moved from when it ran)")  # fmt: skip
            continue
        if what == "people":
            for row in rows:
                return people_text(row)
            continue
        if what == "repeated":
            for row in rows:
                return f"statement {row['key']} is in the query log {row['n']} times (copied rows)"
            continue
        seqs = [int(r[k]) for r in rows for k in ("started_seq", "done_seq") if r[k] is not None]
        events = store.events_by_seq(seqs)
        for row in rows:
            problem = _confirm(row, events)
            if problem:
                return problem
    return None


def _confirm(row: dict[str, Any], events: dict[int, dict[str, Any]]) -> str | None:
    started = events.get(row["started_seq"]) if row["started_seq"] is not None else None
    if started is None:
        return f"statement {row['key']} is in the query log but in no chained event"
    detail = _detail(started)
    outcome = detail.get("done")
    if row["done_seq"] is not None and row["done_seq"] in events:
        outcome = _detail(events[row["done_seq"]])
    unfinished = (row["finished_at"], row["rows"], row["command_tag"], row["masked_columns"])
    if (row["sql"] != detail.get("sql") or row["session_id"] != started["session_id"]
            or row["refused_reason"] != detail.get("refused")
            or ("at" in detail and (row["at"], row["kind"]) != (detail["at"], detail.get("kind")))
            or (not isinstance(outcome, dict) and unfinished != (None, None, None, None))
            or (isinstance(outcome, dict) and _outcome_differs(row, outcome))):  # fmt: skip
        return f"statement {row['key']} in the query log differs from its chained event"
    return None


def _outcome_differs(row: dict[str, Any], outcome: dict[str, Any]) -> bool:
    try:
        note = json.loads(row["masked_columns"]) if row["masked_columns"] is not None else None
    except ValueError:
        return True
    return (row["rows"] != outcome.get("rows") or row["command_tag"] != outcome.get("tag")
            or canonical_json(note) != canonical_json(outcome.get("masking")))  # fmt: skip


def _detail(event: dict[str, Any]) -> dict[str, Any]:
    found = json.loads(event["detail"] or "{}")
    return found if isinstance(found, dict) else {}
