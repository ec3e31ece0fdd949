"""The JSON rendering: valid against the published schema, byte-stable, strict about types."""

from __future__ import annotations

import dataclasses
import json
import math

import jsonschema
import pytest

from bastion.reports.model import TABLES, Metric, Table
from bastion.reports.render_json import (
    SCHEMA_VERSION,
    build_schema,
    published_schema,
    render_json,
    schema_bytes,
)
from tests.reports.sample import IMG_STATEMENT, SCRIPT_COMMAND, empty_report, sample_report


def validator() -> jsonschema.Draft202012Validator:
    schema = published_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_json_validates_against_the_published_schema() -> None:
    for report in (sample_report(), empty_report()):
        document = json.loads(render_json(report))
        validator().validate(document)
        assert document["schema_version"] == SCHEMA_VERSION


def test_the_same_report_gives_the_same_bytes() -> None:
    first, second = render_json(sample_report()), render_json(sample_report())
    assert first == second
    assert first.endswith(b"\n") and first.count(b"\n") == 1
    assert list(json.loads(first)) == sorted(json.loads(first))  # keys sorted


def test_the_shipped_schema_file_is_the_generated_one() -> None:
    assert published_schema() == build_schema()
    assert (
        schema_bytes() == json.dumps(published_schema(), indent=2, sort_keys=True).encode() + b"\n"
    )


def test_every_section_and_column_is_named_in_the_schema() -> None:
    tables = build_schema()["properties"]["tables"]
    assert sorted(tables["required"]) == sorted(TABLES)
    for key, columns in TABLES.items():
        row = tables["properties"][key]["items"]
        assert sorted(row["required"]) == sorted(columns)
        assert row["additionalProperties"] is False


def test_rows_are_objects_by_column_and_text_is_kept_as_typed() -> None:
    document = json.loads(render_json(sample_report()))
    notable = document["tables"]["notable"]
    assert [row["text"] for row in notable[:2]] == [SCRIPT_COMMAND, IMG_STATEMENT]
    assert document["tables"]["access"][1]["break_glass"] is True
    high = [f for f in document["findings"] if f["severity"] == "high"]
    assert {f["rule"] for f in high} == {"break_glass", "destructive_statement", "lockout"}
    assert document["provenance"]["chain_end"] == {"seq": 5230, "mac": "8" * 64}


def test_the_schema_refuses_what_a_siem_would_misread() -> None:
    document = json.loads(render_json(sample_report()))
    check = validator()
    extra = json.loads(json.dumps(document))
    extra["findings"][0]["evidence"][0]["note"] = "added"
    wrong_severity = json.loads(json.dumps(document))
    wrong_severity["findings"][0]["severity"] = "critical"
    missing = json.loads(json.dumps(document))
    del missing["tables"]["sessions"][0]["recording_sha256"]
    for bad in (extra, wrong_severity, missing):
        assert not check.is_valid(bad)


def test_a_cell_that_does_not_fit_its_column_fails_the_rendering() -> None:
    report = sample_report()
    rows = list(report.tables["consent"].rows)
    rows[0] = ("seven", *rows[0][1:])  # unmask_id is an integer
    tables = dict(report.tables) | {"consent": Table("consent", tuple(rows))}
    with pytest.raises(ValueError, match=r"consent\.unmask_id"):
        render_json(dataclasses.replace(report, tables=tables))


def test_a_figure_that_is_not_a_number_fails_the_rendering() -> None:
    report = sample_report()
    summary = (*report.summary, Metric("hours", "Hours", math.nan, 1.0))
    with pytest.raises(ValueError):
        render_json(dataclasses.replace(report, summary=summary))


def test_instants_in_tables_must_be_utc() -> None:
    document = json.loads(render_json(sample_report()))
    document["tables"]["sessions"][0]["started_at"] = "2026-11-17T02:58:30+01:00"
    assert not validator().is_valid(document)


def test_each_finding_names_who_may_not_pass_it() -> None:
    """A SIEM or an auditor sees who was involved in a finding (who gave, approved or asked
    for the access), the people the review refuses as its judges."""
    report = sample_report()
    first = dataclasses.replace(report.findings[0], involved=("carol", "dave"))
    changed = dataclasses.replace(report, findings=(first, *report.findings[1:]))
    document = json.loads(render_json(changed))
    assert document["findings"][0]["involved"] == ["carol", "dave"]
    assert all(isinstance(f["involved"], list) for f in document["findings"])
