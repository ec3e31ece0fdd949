"""One week's rows from the store, read once, and the derivations findings and tables share."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from bastion.audit import Store
from bastion.clock import iso, parse_iso
from bastion.reports.commandcheck import destructive_command, escalating
from bastion.reports.sqlcheck import destructive_statement
from bastion.reports.volume import export_days
from bastion.reports.week import Week

Rows = list[dict[str, Any]]

# Events the review reads one by one (the rest it only counts).
# The events the summary counts (refused logins, TOTP failures, lockouts, break-glass).
REFUSED_LOGINS = ("auth.failed", "auth.password_failed", "auth.preauth_refused",
                  "auth.ticket_refused", "access.denied")  # fmt: skip
TOTP_FAILURES = ("auth.totp_failed", "auth.totp_refused")
COUNTED_KINDS = (*REFUSED_LOGINS, *TOTP_FAILURES, "user.locked", "breakglass.opened")
EVENT_KINDS = (
    "breakglass.opened", "breakglass.acknowledged", "grant.created", "grant.revoked",
    "request.created", "request.approved", "request.denied", "request.cancelled",
    "request.expired", "user.disabled", "user.locked", "auth.password_failed",
    "auth.totp_failed", "auth.failed", "auth.source_blocked", "recording.replayed",
    "recording.exported", "queries.listed", "audit.verified", "unmask.requested",
    "unmask.approved", "unmask.denied", "unmask.revoked", "ticket.issued", "ticket.revoked",
    "session.kill_requested", "report.signed", "store.restored", "hold.added",
    "hold.released", "retention.pruned", "retention.checkpoint", "export.cursor_tampered",
    "export.sink_configured",
)  # fmt: skip
READ_TAGS = frozenset({"SELECT", "SHOW", "EXPLAIN", "FETCH", "COPY", "VALUES", "TABLE"})
WRITE_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})
DDL_WORDS = frozenset({"CREATE", "ALTER", "DROP", "TRUNCATE", "GRANT", "REVOKE", "COMMENT",
                       "REINDEX", "CLUSTER", "SECURITY", "REFRESH", "IMPORT",
                       "REASSIGN"})  # fmt: skip


EXPORT_ROWS = 100_000  # a result or COPY of this many rows is a large export


Judged = dict[tuple[str, str | None], Any]  # (text, tag) -> what it destroys, or None


def notable(rows: Rows, seen: Judged | None = None) -> Rows:
    """The statements that matter: not plain reads, refused, destructive wherever it hides
    in the text, or exporting EXPORT_ROWS rows or more; each with "destroys" judged once
    (and each distinct text once: a parameterised statement repeats its text)."""
    kept = []
    seen = {} if seen is None else seen
    for row in rows:
        text = (row["sql"], row["kind"])
        if text not in seen:
            seen[text] = destructive_statement(*text)
        row["destroys"] = seen[text]
        plain = statement_class(row["kind"]) in ("read", "other")
        if (not plain or row["refused_reason"] is not None or row["destroys"]
                or int(row["rows"] or 0) >= EXPORT_ROWS):  # fmt: skip
            kept.append(row)
    return kept


def week_statements(store: Store, start: str, end: str, groups: Rows) -> tuple[Rows, Rows]:
    """(each statement that matters on its own: destructive, DDL, refused or exporting; the
    routine writes, one row per person, target and text, with how many and when), from the
    week's texts that may not be plain reads (week_statement_groups' "texts")."""
    seen: Judged = {}
    single: set[str] = set()
    for group in groups:
        text = (group["sql"], group["kind"])
        if text not in seen:
            seen[text] = destructive_statement(*text)
        if seen[text] or statement_class(group["kind"]) == "ddl":
            single.add(group["sql"])
    routine = [dict(g, destroys=None) for g in groups
               if g["sql"] not in single and statement_class(g["kind"]) == "write"]  # fmt: skip
    return notable(store.week_statements_of(start, end, EXPORT_ROWS, sorted(single)), seen), routine


def judged(commands: Rows) -> Rows:
    """Each command with what it destroys ("destroys") and who it runs as ("escalates"),
    judged once for the rules and the tables (each distinct text once)."""
    seen: dict[str, tuple[Any, Any]] = {}
    for row in commands:
        text = row["command"]
        if text not in seen:
            seen[text] = (destructive_command(text), escalating(text))
        row["destroys"], escalates = seen[text]
        row["escalates"] = list(escalates)
    return commands


def statement_class(tag: str | None) -> str:
    """read, write, ddl or other, from a statement's command tag."""
    if not tag:
        return "other"
    if tag in READ_TAGS or tag.startswith("SELECT"):
        return "read"
    first = tag.split(" ", 1)[0]
    if first in WRITE_TAGS:
        return "write"
    return "ddl" if first in DDL_WORDS else "other"


def hours_within(row: dict[str, Any], week: Week, now: datetime) -> float:
    """The hours a session was open inside the week (an open one counts up to now)."""
    return _hours(row["started_at"], row["ended_at"], week.start, week.end, now)


@lru_cache(maxsize=1 << 15)  # the summary, the tables and the charts each ask per session
def _hours(started: str, ended_at: str | None, first: datetime, last: datetime,
           now: datetime) -> float:  # fmt: skip
    start = max(parse_iso(started), first)
    ended = parse_iso(ended_at) if ended_at else min(now, last)
    end = min(ended, last)
    return max((end - start) / timedelta(hours=1), 0.0)


@dataclass
class Facts:
    """The week's rows, each list oldest first."""

    week: Week
    now: datetime
    sessions: Rows
    commands: Rows
    statements: Rows  # the notable ones, each: destructive, DDL, refused, exporting
    routine_writes: Rows  # the other writes, per person, target and text: n, first_at, last_at
    statement_counts: Rows
    per_person_statements: Rows
    masking_notes: Rows
    file_ops: Rows
    events: Rows
    event_counts: dict[str, int]
    grants: Rows  # with "sessions": how many sessions each ever opened
    requests: Rows  # with "approvers": [(name, at)]
    unmasks: Rows  # with "rows_shown"
    # each person's day of many small statements adding up to an export (volume.py)
    export_days: Rows = field(default_factory=list)

    def events_of(self, *kinds: str) -> Rows:
        return [e for e in self.events if e["kind"] in kinds]

    def detail(self, event: dict[str, Any]) -> dict[str, Any]:
        found = json.loads(event["detail"] or "{}")
        return found if isinstance(found, dict) else {}


def collect(store: Store, week: Week, now: datetime, *, detail: bool = True) -> Facts:
    """Read the week from the store (a handful of narrow queries); without `detail`, only
    what the summary's figures need (last week's, beside this week's)."""
    start, end = iso(week.start), iso(week.end)
    grants = store.week_grants(start, end)
    used = {
        int(r["grant_id"]): int(r["n"]) for r in store.grant_sessions([g["id"] for g in grants])
    }
    for grant in grants:
        grant["sessions"] = used.get(int(grant["id"]), 0)
    requests = store.week_requests(start, end)
    approvers: dict[int, list[tuple[str, str]]] = {}
    for row in store.request_approvers([r["id"] for r in requests]):
        approvers.setdefault(int(row["request_id"]), []).append((row["approver"], row["at"]))
    for request in requests:
        request["approvers"] = approvers.get(int(request["id"]), [])
    groups = store.week_statement_groups(start, end, EXPORT_ROWS)
    notes = [{"note": row["sql"], "n": row["n"]} for row in groups["notes"]]
    unmasks = store.week_unmask_grants(start, end)
    shown = rows_shown(notes)
    for unmask in unmasks:
        unmask["rows_shown"] = shown.get(int(unmask["id"]), 0)
    sessions = store.week_sessions(start, end)
    counts, per_person, volume = fold_statements(groups["sessions"])
    statements, routine = (week_statements(store, start, end, groups["texts"]) if detail
                           else ([], []))  # fmt: skip
    return Facts(
        week=week, now=now, sessions=sessions,
        commands=judged(store.week_commands(start, end)) if detail else [],
        statements=statements, routine_writes=routine,
        statement_counts=counts, per_person_statements=per_person,
        masking_notes=notes, file_ops=store.week_file_ops(start, end),
        events=store.week_events(start, end, EVENT_KINDS) if detail else [],
        event_counts={r["kind"]: int(r["n"])
                      for r in store.week_event_counts(start, end, COUNTED_KINDS)},
        grants=grants, requests=requests, unmasks=unmasks,
        export_days=export_days(store, week, sessions, EXPORT_ROWS, volume) if detail else [],
    )  # fmt: skip


def fold_statements(rows: Rows) -> tuple[Rows, Rows, Rows]:
    """From the per-session, per-tag counts: (statements per tag and refused or not; per
    person n and refused, over known sessions; per session the small unrefused statements'
    n and rows, day 0, for export_days)."""
    kinds: Counter[tuple[Any, int]] = Counter()
    people: dict[Any, list[int]] = {}
    small: dict[str, list[int]] = {}
    for row in rows:
        n, refused = int(row["n"]), int(row["refused"] or 0)
        kinds[(row["kind"], 0)] += n - refused
        kinds[(row["kind"], 1)] += refused
        if row["known"]:
            figures = people.setdefault(row["person"], [0, 0])
            figures[0] += n
            figures[1] += refused
        if row["small_n"]:
            pair = small.setdefault(row["session_id"], [0, 0])
            pair[0] += int(row["small_n"])
            pair[1] += int(row["small_rows"] or 0)
    counts = [{"kind": kind, "refused": refused, "n": n}
              for (kind, refused), n in kinds.items() if n]  # fmt: skip
    per_person = [{"person": person, "n": n, "refused": refused}
                  for person, (n, refused) in people.items()]  # fmt: skip
    volume = [{"session_id": sid, "day": 0, "n": n, "rows": rows}
              for sid, (n, rows) in small.items()]  # fmt: skip
    return counts, per_person, volume


def _notes(rows: Rows) -> list[tuple[dict[str, Any], int]]:
    out = []
    for row in rows:
        try:
            note = json.loads(row["note"])
        except (TypeError, ValueError):
            continue
        if isinstance(note, dict):
            out.append((note, int(row["n"])))
    return out


def rows_shown(notes: Rows) -> dict[int, int]:
    """Rows each unmask grant showed in clear over the week."""
    shown: Counter[int] = Counter()
    for note, n in _notes(notes):
        for item in note.get("unmasked") or []:
            if isinstance(item, dict) and isinstance(item.get("grant"), int):
                shown[item["grant"]] += int(item.get("rows") or 0) * n
    return dict(shown)


def detector_counts(notes: Rows) -> dict[str, int]:
    """Values the free-text detectors masked over the week, per detector."""
    counts: Counter[str] = Counter()
    for note, n in _notes(notes):
        for per_column in (note.get("detected") or {}).values():
            if isinstance(per_column, dict):
                for detector, matches in per_column.items():
                    counts[str(detector)] += int(matches) * n
    return dict(counts)


def masked_columns(notes: Rows) -> int:
    """Columns masked in results over the week (each result counts each column once)."""
    return sum(len(note.get("masked") or []) * n for note, n in _notes(notes))
