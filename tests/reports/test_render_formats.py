"""The four renderings agree: every finding once, with the same evidence, in each."""

from __future__ import annotations

from pathlib import Path

from tests.reports.formats import findings_by_format, render_all
from tests.reports.sample import empty_report, sample_report


def test_every_finding_is_in_every_format_once_with_its_evidence(tmp_path: Path) -> None:
    report = sample_report()
    found = findings_by_format(render_all(report, tmp_path))
    expected = sorted((f.id, tuple((e.kind, e.ref) for e in f.evidence)) for f in report.findings)
    assert len({ident for ident, _ in expected}) == len(expected)
    for form, findings in found.items():
        assert sorted(findings) == expected, form


def test_an_empty_week_has_no_findings_in_any_format(tmp_path: Path) -> None:
    found = findings_by_format(render_all(empty_report(), tmp_path))
    assert found == {"html": [], "json": [], "csv": [], "sqlite": []}
