"""The week's evidence as a standalone SQLite file that opens in Datasette; one table a section.

Tables: `provenance` (key, value), `summary`, `findings` (id primary key), `evidence`
(finding_id -> findings.id, session -> sessions.id), `finding_grants` and
`finding_requests`, `charts`, and every table of TABLES with its columns typed as
bastion/reports/columns.py says; `sessions.id` is a primary key that `notable`,
`transfers` and `evidence` point to. The file itself is written by bastion/audit/evidence_db.
"""

from __future__ import annotations

from pathlib import Path

from bastion.audit.evidence_db import PlainTable, Value, write_tables
from bastion.reports.columns import BOOLEAN, INTEGER, NUMBER, TEXT, cell, column_types
from bastion.reports.model import SEVERITIES, TABLES, Provenance, WeeklyReport

_TO_SESSION = ("session", "sessions", "id")


def render_sqlite(report: WeeklyReport, path: Path) -> None:
    """Write the report's evidence file at `path` (replacing any file there)."""
    write_tables(Path(path), plan(report))


def plan(report: WeeklyReport) -> list[PlainTable]:
    """The tables of the file, in the order they are written."""
    tables = [
        _provenance(report.provenance),
        PlainTable(
            "summary",
            (
                ("key", TEXT),
                ("label", TEXT),
                ("this_week", NUMBER),
                ("last_week", NUMBER),
                ("change", NUMBER),
            ),
            [(m.key, m.label, m.this_week, m.last_week, m.change) for m in report.summary],
            pk="key",
        ),
        _section(report, "sessions", pk="id"),
    ]
    tables += _findings(report)
    tables += [_section(report, key) for key in TABLES if key != "sessions"]
    tables.append(_charts(report))
    return tables


def _section(report: WeeklyReport, key: str, pk: str | None = None) -> PlainTable:
    types = column_types(key)
    rows = [
        tuple(
            cell(kind, value, f"{key}.{name}")
            for (name, kind), value in zip(types, row, strict=True)
        )
        for row in report.tables[key].rows
    ]
    links = (_TO_SESSION,) if "session" in TABLES[key] else ()
    return PlainTable(key, types, rows, pk=pk, foreign_keys=links)


def _provenance(p: Provenance) -> PlainTable:
    rows: list[tuple[Value, ...]] = [
        ("week", p.week), ("timezone", p.timezone), ("start", p.start), ("end", p.end),
        ("start_local", p.start_local), ("end_local", p.end_local), ("made_at", p.made_at),
        ("version", p.version),
        ("chain_start_seq", str(p.chain_start.seq)), ("chain_start_mac", p.chain_start.mac),
        ("chain_end_seq", str(p.chain_end.seq)), ("chain_end_mac", p.chain_end.mac),
        ("verification_chain", p.verification.chain),
        ("recordings_checked", str(p.verification.recordings_checked)),
    ]  # fmt: skip
    failed = p.verification.recordings_failed
    rows += [(f"recording_failed.{i}", why) for i, why in enumerate(failed, 1)]
    rows += [(f"filter.{key}", value) for key, value in p.filters.items()]
    rows += [(f"count.{key}", str(value)) for key, value in p.counts.items()]
    return PlainTable("provenance", (("key", TEXT), ("value", TEXT)), rows, pk="key")


def _findings(report: WeeklyReport) -> list[PlainTable]:
    found = report.findings
    findings = PlainTable(
        "findings",
        (("id", TEXT), ("severity", TEXT), ("severity_rank", INTEGER), ("rule", TEXT),
         ("title", TEXT), ("subject", TEXT), ("action", TEXT), ("first_seen", TEXT),
         ("carried_over", BOOLEAN)),
        [(f.id, f.severity, SEVERITIES.index(f.severity), f.rule, f.title, f.subject,
          f.action, f.first_seen, f.first_seen is not None) for f in found],
        pk="id",
    )  # fmt: skip
    to_finding = ("finding_id", "findings", "id")
    evidence = PlainTable(
        "evidence",
        (("id", INTEGER), ("finding_id", TEXT), ("position", INTEGER), ("kind", TEXT),
         ("ref", TEXT), ("at", TEXT), ("session", TEXT), ("offset", NUMBER),
         ("replay", TEXT), ("text", TEXT)),
        [(0, f.id, i, e.kind, e.ref, e.at, e.session, cell(NUMBER, e.offset, "offset"),
          e.replay, e.text) for f in found for i, e in enumerate(f.evidence, 1)],
        pk="id",
        foreign_keys=(to_finding, _TO_SESSION),
    )  # fmt: skip
    numbered = [(n, *row[1:]) for n, row in enumerate(evidence.rows, 1)]
    evidence = PlainTable(evidence.name, evidence.columns, numbered, "id", evidence.foreign_keys)
    grants = PlainTable(
        "finding_grants",
        (("finding_id", TEXT), ("grant_id", INTEGER)),
        [(f.id, g) for f in found for g in f.grants],
        foreign_keys=(to_finding,),
    )
    requests = PlainTable(
        "finding_requests",
        (("finding_id", TEXT), ("request_id", INTEGER)),
        [(f.id, r) for f in found for r in f.requests],
        foreign_keys=(to_finding,),
    )
    return [findings, evidence, grants, requests]


def _charts(report: WeeklyReport) -> PlainTable:
    rows = [
        (s.key, name, label, cell(NUMBER, value, f"chart {s.key}"))
        for s in report.charts
        for name, values in s.values.items()
        for label, value in zip(s.labels, values, strict=True)
    ]
    columns = (("chart", TEXT), ("series", TEXT), ("label", TEXT), ("value", NUMBER))
    return PlainTable("charts", columns, rows)
