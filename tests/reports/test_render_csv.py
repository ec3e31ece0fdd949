"""The CSV rendering: a file a section, each with its header, no formula a spreadsheet runs."""

from __future__ import annotations

import csv
import io

import pytest

from bastion.reports.model import TABLES
from bastion.reports.render_csv import (
    EVIDENCE_COLUMNS,
    FINDING_COLUMNS,
    SUMMARY_COLUMNS,
    defuse,
    render_csv,
)
from tests.reports.sample import (
    FORMULA_COMMAND,
    NIGHT_COMMAND,
    REASON_AT,
    SCRIPT_COMMAND,
    empty_report,
    sample_report,
)


def read(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def header(data: bytes) -> list[str]:
    return next(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_one_file_per_section_each_parsing_with_its_header() -> None:
    report = sample_report()
    files = render_csv(report)
    expected = {f"{key}.csv" for key in TABLES}
    expected |= {"findings.csv", "evidence.csv", "summary.csv", "provenance.csv"}
    assert set(files) == expected
    for key, columns in TABLES.items():
        assert header(files[f"{key}.csv"]) == list(columns)
        assert len(read(files[f"{key}.csv"])) == len(report.tables[key].rows)
    assert header(files["findings.csv"]) == list(FINDING_COLUMNS)
    assert header(files["evidence.csv"]) == list(EVIDENCE_COLUMNS)
    assert header(files["summary.csv"]) == list(SUMMARY_COLUMNS)
    assert len(read(files["findings.csv"])) == len(report.findings)
    assert len(read(files["evidence.csv"])) == sum(len(f.evidence) for f in report.findings)


def test_an_empty_week_still_has_every_header() -> None:
    files = render_csv(empty_report())
    for key, columns in TABLES.items():
        assert files[f"{key}.csv"] == (",".join(columns) + "\r\n").encode()


def test_the_same_report_gives_the_same_bytes() -> None:
    assert render_csv(sample_report()) == render_csv(sample_report())


def test_evidence_rows_name_their_finding_and_keep_the_text() -> None:
    report = sample_report()
    rows = read(render_csv(report)["evidence.csv"])
    glass = next(f for f in report.findings if f.rule == "break_glass")
    mine = [row for row in rows if row["finding_id"] == glass.id]
    assert [row["position"] for row in mine] == ["1", "2"]
    assert mine[1]["text"] == SCRIPT_COMMAND  # markup is not a formula: kept as typed
    assert mine[1]["replay"] == glass.evidence[1].replay


@pytest.mark.parametrize(
    ("typed", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("   =cmd|' /C calc'!A0", "'   =cmd|' /C calc'!A0"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("ls -la", "ls -la"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_a_cell_a_spreadsheet_would_evaluate_is_written_as_text(typed: str, written: str) -> None:
    assert defuse(typed) == written


def test_insider_typed_formulas_arrive_defused_in_every_file() -> None:
    files = render_csv(sample_report())
    notable = read(files["notable.csv"])
    assert notable[2]["text"] == "'" + FORMULA_COMMAND
    assert notable[3]["text"].startswith("'-1+1")
    access = read(files["access.csv"])
    assert access[2]["reason"] == "'" + REASON_AT
    evidence = read(files["evidence.csv"])
    assert "'" + NIGHT_COMMAND in [row["text"] for row in evidence]
    for name, data in files.items():
        for row in csv.reader(io.StringIO(data.decode("utf-8"), newline="")):
            for value in row:
                assert not value or value[0] not in "=+@\t\r", f"{name}: {value!r}"


def test_numbers_the_report_computes_stay_numbers() -> None:
    summary = {row["key"]: row for row in read(render_csv(sample_report())["summary.csv"])}
    assert summary["sessions_ssh"]["change"] == "-2"  # a negative change is not defused
    assert summary["hours"]["this_week"] == "5.16"
    sessions = read(render_csv(sample_report())["access.csv"])
    assert sessions[1]["break_glass"] == "true" and sessions[0]["group"] == ""
