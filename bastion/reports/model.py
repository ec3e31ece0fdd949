"""The weekly review as data: provenance, summary, findings, tables and charts; what renderers read.

`gather` (bastion/reports/gather.py) builds a WeeklyReport from the store; the renderers
(HTML, JSON, CSV, SQLite) only read it. Every table's columns are fixed here (TABLES), so
the JSON Schema, the CSV headers and the SQLite evidence file agree and stay stable for the
people who import them. Instants are ISO 8601 strings in UTC ("2026-11-16T03:00:00Z"); a
local time is shown beside them only where people read (the HTML).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

Cell = str | int | float | bool | None
SEVERITIES = ("high", "medium", "low", "info")  # most severe first

# Each table's columns, in order. Keys are the section names in JSON, the CSV file names
# (<key>.csv) and the SQLite table names.
TABLES: Mapping[str, tuple[str, ...]] = {
    # every session of the week, on every door
    "sessions": ("id", "person", "target", "door", "client_address", "started_at", "ended_at",
                 "hours", "state", "end_reason", "recording_sha256"),
    # every grant live or scheduled at the end of the week; standing: it outlived the week
    "access": ("grant_id", "person", "group", "target", "mode", "starts_at", "ends_at",
               "granted_by", "reason", "ticket", "break_glass", "standing"),
    # requests, approvals, denials, revocations, offboardings, break-glass, tickets
    "changes": ("at", "kind", "actor", "person", "target", "reason", "window", "detail"),
    # what each person reached, when and for how long
    "people": ("person", "targets", "sessions", "hours", "first_at", "last_at", "statements",
               "commands", "refused"),
    # the commands and statements that matter, each linked to its place in a recording
    "notable": ("at", "person", "target", "session", "kind", "text", "why", "offset",
                "replay"),
    # file transfers and exports
    "transfers": ("at", "person", "target", "session", "operation", "path", "bytes", "sha256"),
    # who replayed or exported recordings, listed queries, verified the chain
    "reviewers": ("at", "reviewer", "action", "what"),
    # every unmask request of the week with its consent
    "consent": ("unmask_id", "person", "target", "subject", "consent_ref", "document_sha256",
                "state", "approved_by", "rows_shown", "at"),
}  # fmt: skip


def utc(moment: datetime | None) -> str | None:
    """An aware instant as the report writes it: ISO 8601 in UTC, to the second, with Z."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ChainHead:
    """The audit chain at one moment: its last event's sequence number (0: none) and MAC."""

    seq: int
    mac: str


@dataclass(frozen=True)
class Verification:
    """What was checked when the report was made: the chain, and the week's recordings."""

    chain: str  # "intact", or the first problem found
    recordings_checked: int
    recordings_failed: tuple[str, ...] = ()  # "SESSION-ID: why"


@dataclass(frozen=True)
class Provenance:
    """Information produced by the entity: what period, made when, by what, from what."""

    week: str
    timezone: str
    start: str  # UTC
    end: str  # UTC, exclusive
    start_local: str
    end_local: str
    made_at: str
    version: str
    filters: Mapping[str, str]
    counts: Mapping[str, int]  # rows per section (tables and findings)
    chain_start: ChainHead
    chain_end: ChainHead
    verification: Verification


@dataclass(frozen=True)
class Metric:
    """One summary figure with last week's beside it."""

    key: str
    label: str
    this_week: float
    last_week: float

    @property
    def change(self) -> float:
        return self.this_week - self.last_week


@dataclass(frozen=True)
class Evidence:
    """One thing a finding rests on, by its id in the store, with where to see it."""

    kind: str  # session, statement, command, file, event, grant, request, unmask, report
    ref: str
    at: str | None
    text: str
    session: str | None = None
    offset: float | None = None  # seconds into the session's recording
    replay: str | None = None  # the command that replays the recording from there


@dataclass(frozen=True)
class Finding:
    """Something a reviewer must look at: how bad, why, what it rests on, what to do."""

    rule: str  # the rule that found it, e.g. "break_glass", "destructive_statement"
    severity: str  # one of SEVERITIES
    title: str
    action: str  # the recommended action
    evidence: tuple[Evidence, ...]
    subject: str | None = None  # the person it is about, if one
    grants: tuple[int, ...] = ()  # grants it concerns: who gave one may not pass it
    requests: tuple[int, ...] = ()  # requests it concerns: who approved one may not pass it
    first_seen: str | None = None  # the week it first appeared, when carried over
    involved: tuple[str, ...] = ()  # who gave, approved or asked for it: they may not pass it
    id: str = field(default="")

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        if not self.id:
            object.__setattr__(self, "id", finding_id(self.rule, self.evidence))


def finding_id(rule: str, evidence: tuple[Evidence, ...]) -> str:
    """Stable across weeks (a finding carried over keeps it): the rule and what it rests on."""
    key = "\n".join([rule, *sorted(f"{e.kind}:{e.ref}" for e in evidence)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Table:
    key: str  # one of TABLES
    rows: tuple[tuple[Cell, ...], ...]

    def __post_init__(self) -> None:
        width = len(TABLES[self.key])
        if any(len(row) != width for row in self.rows):
            raise ValueError(f"every row of {self.key} has {width} cells")

    @property
    def columns(self) -> tuple[str, ...]:
        return TABLES[self.key]


@dataclass(frozen=True)
class Series:
    """A chart's data: labels on one axis, one row of values per name."""

    key: str  # "sessions_per_day" (names: people; labels: the local days) or
    # "hours_per_target" (names: ("hours",); labels: targets)
    title: str
    labels: tuple[str, ...]
    values: Mapping[str, tuple[float, ...]]


@dataclass(frozen=True)
class WeeklyReport:
    provenance: Provenance
    summary: tuple[Metric, ...]
    findings: tuple[Finding, ...]
    tables: Mapping[str, Table]  # every key of TABLES, in that order
    charts: tuple[Series, ...]
