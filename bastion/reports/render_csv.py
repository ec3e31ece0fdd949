"""The weekly report as one CSV per section, for auditors' sampling; pure and deterministic.

Files: `<table>.csv` for every table in TABLES (its columns as the header), `findings.csv`
(one row per finding), `evidence.csv` (one row per piece of evidence, with its finding's
id), `summary.csv` (this week, last week, change) and `provenance.csv` (key, value).
RFC 4180 quoting, CRLF line ends, UTF-8 without a byte-order mark; empty cells are empty,
booleans `true`/`false`.

Text from the store is controlled by insiders (commands, statements, reasons), and a
spreadsheet runs a cell that starts with = + - @ as a formula (CSV injection). Every text
cell whose first character, or first character after spaces, is one of those (or a tab or
carriage return, or their full-width forms) is written with a leading apostrophe, so the
spreadsheet shows it as text. Numbers the report computes are written as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from bastion.reports.columns import NUMBER, UNENCODABLE, cell, column_types
from bastion.reports.model import TABLES, Cell, Finding, Provenance, WeeklyReport

# What makes a spreadsheet read a cell as a formula (OWASP's list, and full-width forms
# that some spreadsheets fold to them).
FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")

FINDING_COLUMNS = ("id", "severity", "rule", "title", "subject", "action", "first_seen",
                   "grants", "requests", "evidence_count")  # fmt: skip
EVIDENCE_COLUMNS = ("finding_id", "position", "kind", "ref", "at", "session", "offset",
                    "replay", "text")  # fmt: skip
SUMMARY_COLUMNS = ("key", "label", "this_week", "last_week", "change")
PROVENANCE_COLUMNS = ("key", "value")


def defuse(text: str) -> str:
    """Text a spreadsheet shows as text, never evaluates."""
    stripped = text.lstrip(" ")
    if text and (text[0] in FORMULA_STARTS or (stripped and stripped[0] in FORMULA_STARTS)):
        return "'" + text
    return text


def _format(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return defuse(value)


def _csv(columns: Sequence[str], rows: Iterable[Sequence[Cell]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_format(value) for value in row])
    return out.getvalue().encode("utf-8", UNENCODABLE)


def _table_rows(report: WeeklyReport, key: str) -> list[tuple[Cell, ...]]:
    types = column_types(key)
    return [
        tuple(
            cell(kind, value, f"{key}.{name}")
            for (name, kind), value in zip(types, row, strict=True)
        )
        for row in report.tables[key].rows
    ]


def _finding_row(f: Finding) -> tuple[Cell, ...]:
    grants = " ".join(str(g) for g in f.grants)
    requests = " ".join(str(r) for r in f.requests)
    return (f.id, f.severity, f.rule, f.title, f.subject, f.action, f.first_seen, grants,
            requests, len(f.evidence))  # fmt: skip


def _evidence_rows(findings: Sequence[Finding]) -> list[tuple[Cell, ...]]:
    return [
        (f.id, position, e.kind, e.ref, e.at, e.session,
         cell(NUMBER, e.offset, "evidence.offset"), e.replay, e.text)
        for f in findings
        for position, e in enumerate(f.evidence, 1)
    ]  # fmt: skip


def _provenance_rows(p: Provenance) -> list[tuple[Cell, ...]]:
    rows: list[tuple[Cell, ...]] = [
        ("week", p.week), ("timezone", p.timezone), ("start", p.start), ("end", p.end),
        ("start_local", p.start_local), ("end_local", p.end_local), ("made_at", p.made_at),
        ("version", p.version),
        ("chain_start_seq", p.chain_start.seq), ("chain_start_mac", p.chain_start.mac),
        ("chain_end_seq", p.chain_end.seq), ("chain_end_mac", p.chain_end.mac),
        ("verification_chain", p.verification.chain),
        ("recordings_checked", p.verification.recordings_checked),
    ]  # fmt: skip
    rows += [
        (f"recording_failed.{i}", why) for i, why in enumerate(p.verification.recordings_failed, 1)
    ]
    rows += [(f"filter.{key}", value) for key, value in p.filters.items()]
    rows += [(f"count.{key}", value) for key, value in p.counts.items()]
    return rows


def render_csv(report: WeeklyReport) -> dict[str, bytes]:
    """File name to bytes: the findings, evidence, summary and provenance, then every table."""
    files = {
        "findings.csv": _csv(FINDING_COLUMNS, map(_finding_row, report.findings)),
        "evidence.csv": _csv(EVIDENCE_COLUMNS, _evidence_rows(report.findings)),
        "summary.csv": _csv(
            SUMMARY_COLUMNS,
            [
                (
                    m.key,
                    m.label,
                    cell(NUMBER, m.this_week),
                    cell(NUMBER, m.last_week),
                    cell(NUMBER, m.change),
                )
                for m in report.summary
            ],
        ),
        "provenance.csv": _csv(PROVENANCE_COLUMNS, _provenance_rows(report.provenance)),
    }
    for key in TABLES:
        files[f"{key}.csv"] = _csv(TABLES[key], _table_rows(report, key))
    return files
