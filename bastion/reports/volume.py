"""Local days of the week, and each person's exports per day read from the store: splitting an
export into many small statements, sessions or targets does not hide it from the review."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from bastion.audit import Store
from bastion.clock import iso, parse_iso
from bastion.reports.week import Week, zone

Rows = list[dict[str, Any]]
PIECES = 10  # the largest pieces a day's finding lists
_MANY = 500  # sessions spanning local days beyond which every statement is split by day


def day_starts(week: Week) -> list[datetime]:
    """When each local day of the week begins (eight instants: the last is the week's end)."""
    tz = zone(week.timezone)
    return [datetime.combine(week.first_day + timedelta(days=i), time(0), tzinfo=tz)
            for i in range(8)]  # fmt: skip


def local_day(week: Week, moment: datetime) -> str:
    """The local date of a moment, in the week's time zone (ISO, 2026-11-18)."""
    return moment.astimezone(zone(week.timezone)).date().isoformat()


def export_days(store: Store, week: Week, sessions: Rows, below: int, whole: Rows) -> Rows:
    """Each person's day whose statements of fewer than `below` rows each returned `below`
    rows or more in all, across sessions and targets: person, day, n, rows, sessions and
    `pieces` (its largest statements, at most PIECES). Statements of `below` rows or more
    are each a finding of their own and are not counted again here. `whole` holds each
    session's small statements, n and rows, over the week (facts.fold_statements)."""
    starts = day_starts(week)
    volume = _volume(store, week, sessions, below, whole)
    owner = {s["id"]: s["person"] or "?" for s in sessions}
    days: dict[tuple[str, int], dict[str, Any]] = defaultdict(
        lambda: {"n": 0, "rows": 0, "sessions": set()}
    )
    for row in volume:
        entry = days[(owner.get(row["session_id"], "?"), int(row["day"]))]
        entry["n"] += int(row["n"])
        entry["rows"] += int(row["rows"] or 0)
        entry["sessions"].add(row["session_id"])
    found = []
    for (person, day), entry in sorted(days.items()):
        if entry["rows"] < below:
            continue
        ids = sorted(entry["sessions"])
        pieces = store.largest_statements(
            ids, iso(starts[day]), iso(starts[day + 1]), below, PIECES
        )
        found.append({"person": person, "day": _day(week, day).isoformat(), "n": entry["n"],
                      "rows": entry["rows"], "sessions": ids, "pieces": pieces})  # fmt: skip
    return found


def _volume(store: Store, week: Week, sessions: Rows, below: int, whole: Rows) -> Rows:
    """Each session's rows per day index: `whole` per session, and the statements of
    sessions that span local days split by day (all by day when there are many such)."""
    starts = day_starts(week)
    start, end = iso(week.start), iso(week.end)
    index = {s["id"]: _index(starts, parse_iso(s["started_at"])) for s in sessions}
    spanning = [s["id"] for s in sessions if _spans(s, starts, index[s["id"]], week)]
    bounds = [iso(moment) for moment in starts[1:7]]
    if len(spanning) > _MANY:
        return store.week_statement_volume(start, end, below, bounds)
    split = store.week_statement_volume(start, end, below, bounds, spanning) if spanning else []
    kept = set(spanning)
    return [{**row, "day": index.get(row["session_id"], 0)} for row in whole
            if row["session_id"] not in kept] + split  # fmt: skip


def _index(starts: list[datetime], moment: datetime) -> int:
    """The day of the week (0 to 6) a moment falls on; before the week: 0, after: 6."""
    return max(0, min(6, sum(1 for s in starts[1:7] if moment >= s)))


def _spans(session: dict[str, Any], starts: list[datetime], first: int, week: Week) -> bool:
    ended = parse_iso(session["ended_at"]) if session["ended_at"] else week.end
    return _index(starts, min(ended, week.end) - timedelta(microseconds=1)) != first


def _day(week: Week, index: int) -> date:
    return week.first_day + timedelta(days=index)
