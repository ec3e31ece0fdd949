"""The HTML rendering: one file, findings first, store text escaped, offline, same bytes."""

from __future__ import annotations

import dataclasses
import re

from bastion.reports import charts
from bastion.reports.model import Metric, Series, Table
from bastion.reports.render_html import HTML_ROWS, change, ordered, render_html
from tests.reports.sample import IMG_STATEMENT, SCRIPT_COMMAND, empty_report, sample_report


def page() -> str:
    return render_html(sample_report()).decode("utf-8")


def test_the_same_report_gives_the_same_bytes() -> None:
    assert render_html(sample_report()) == render_html(sample_report())
    assert render_html(empty_report()) == render_html(empty_report())


def test_nothing_is_fetched_and_no_script_is_allowed() -> None:
    text = page()
    assert "<script" not in text.lower()
    assert 'content="default-src &#x27;none&#x27;;' in text  # the Content-Security-Policy
    for attribute, value in re.findall(r'\b(src|href|action|srcset|data)="([^"]*)"', text):
        assert value.startswith(("data:image/svg+xml;base64,", "#")), (attribute, value[:60])
    assert "url(" not in text and "@import" not in text


def test_store_text_is_escaped() -> None:
    text = page()
    assert SCRIPT_COMMAND not in text and IMG_STATEMENT not in text
    assert "echo &#x27;&lt;script&gt;window.__pwned = 1&lt;/script&gt;&#x27;" in text
    assert "&lt;img src=&quot;http://127.0.0.1:9/x&quot; onerror=" in text


def test_the_order_is_provenance_findings_summary_charts_sections() -> None:
    text = page()
    marks = ["Weekly access review, 2026-W47", 'id="findings"', 'id="summary"',
             'id="charts"', 'id="access"', 'id="sessions"']  # fmt: skip
    positions = [text.index(mark) for mark in marks]
    assert positions == sorted(positions)
    severities = re.findall(r'<article class="finding (\w+)"', text)
    assert severities == [f.severity for f in ordered(sample_report().findings)]
    assert severities[:3] == ["high"] * 3 and severities[-1] == "info"


def test_instants_show_their_local_time_beside_utc() -> None:
    text = page()
    assert "2026-11-20T02:12:00Z" in text and "Fri 2026-11-20 03:12 CET" in text


def test_the_summary_shows_the_change_against_last_week() -> None:
    assert "+1 (+33%)" in change(Metric("p", "People", 4, 3))
    assert "\u22122 (\u221240%)" in change(Metric("s", "Sessions", 3, 5))
    assert change(Metric("x", "X", 2, 2)) == "no change"
    assert "+12" in change(Metric("w", "Writes", 12, 0))  # no percentage from zero


def test_a_failed_verification_is_the_first_thing_read() -> None:
    report = sample_report()
    verification = dataclasses.replace(
        report.provenance.verification, chain="event 4711: MAC mismatch",
        recordings_failed=("0b6f7c1e-alice-ssh-db1: chunk 3 hash",),
    )  # fmt: skip
    provenance = dataclasses.replace(report.provenance, verification=verification)
    text = render_html(dataclasses.replace(report, provenance=provenance)).decode()
    alert = text.index('role="alert"')
    assert alert < text.index('id="findings"')
    assert "The audit chain failed verification: event 4711: MAC mismatch" in text
    assert "A recording failed verification: 0b6f7c1e-alice-ssh-db1: chunk 3 hash" in text


def test_an_empty_week_renders() -> None:
    text = render_html(empty_report()).decode()
    assert "No findings this week." in text and "None this week." in text
    assert "Nothing this week." in text  # no empty chart


def test_charts_are_deterministic_svg_without_active_content() -> None:
    series = sample_report().charts
    for one in series:
        svg = charts.draw(one)
        assert svg is not None and svg == charts.draw(one)
        assert b"<script" not in svg and b"<dc:date>" not in svg
        assert b'xlink:href="http' not in svg and b'href="http' not in svg


def test_chart_labels_from_the_store_are_drawn_as_typed() -> None:
    hostile = Series("hours_per_target", "Hours per target",
                     ("$x^2$ <b>", "db--1", "a$"), {"hours": (1.0, 2.0, 3.0)})  # fmt: skip
    svg = charts.draw(hostile)
    assert svg is not None and b"<b>" not in svg and b"db--1" not in svg


def test_many_people_fold_into_others() -> None:
    values = {f"person{i:02}": (float(i),) for i in range(30)}
    folded = charts.fold(values, 10)
    assert len(folded) == 10 and "others (21)" in folded
    assert "person29" in folded and "person00" not in folded
    assert sum(sum(v) for v in folded.values()) == sum(range(30))


def test_a_busy_table_shows_its_first_rows_and_says_where_all_are() -> None:
    """A week of 90,000 writes must still give a page a browser opens: the HTML shows the
    first HTML_ROWS rows of a table and names the files that hold every row."""
    report = sample_report()
    sessions = report.tables["sessions"]
    many = tuple(sessions.rows[i % len(sessions.rows)] for i in range(HTML_ROWS + 7))
    tables = {**report.tables, "sessions": Table("sessions", many)}
    text = render_html(dataclasses.replace(report, tables=tables)).decode()
    section = text[text.index('<section id="sessions">') :]
    section = section[: section.index("</section>")]
    assert section.count("<tr>") == HTML_ROWS + 1  # the header row, then the first rows
    assert f"Sessions ({HTML_ROWS + 7})" in section
    assert f"The first {HTML_ROWS:,} of {HTML_ROWS + 7:,} rows" in section
    assert "sessions.csv and in evidence.db" in section


def test_charts_drawn_ahead_in_their_own_thread_are_the_same_bytes() -> None:
    series = sample_report().charts
    direct = [charts.draw(s) for s in series]
    charts.predraw(series)
    assert [charts.draw(s) for s in series] == direct
    assert not charts._PENDING  # each drawing ahead is taken once, none left behind
    charts.predraw(series)  # a build that never renders (its drawings left untaken) ...
    charts.predraw(empty_report().charts)  # ... is forgotten by the next one
    assert len(charts._PENDING) <= len(empty_report().charts)
    assert [charts.draw(s) for s in series] == direct  # drawn again, the same bytes
