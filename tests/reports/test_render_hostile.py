"""Any text an insider types comes out of every rendering as that text, and only as text.

Hypothesis writes arbitrary text (control characters, quotes, markup, formulas, lone
surrogates from bytes that were not UTF-8) into a command of the sample week; the HTML
keeps its exact tag structure, the CSV reads the text back (defused when it would be a
formula), the JSON and the SQLite file give it back, and nothing fails to render.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sqlite3
import tempfile
from contextlib import closing
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.reports.columns import encodable
from bastion.reports.model import Cell, Table, WeeklyReport
from bastion.reports.render_csv import defuse, render_csv
from bastion.reports.render_html import render_html
from bastion.reports.render_json import render_json
from bastion.reports.render_sqlite import render_sqlite
from tests.reports.sample import sample_report

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
HOSTILE = st.one_of(
    ANY_TEXT,
    st.sampled_from(
        [
            "</pre></td><script>x()</script>",
            "<!--",
            "]]>",
            "&amp;",
            "\udcff\udc80",
            "=1+1",
            "\r\n=cmd",
            '"',
            "</style><style>*{}",
            "\x00",
        ]
    ),
)


def with_command(text: str) -> WeeklyReport:
    """The sample week, without charts, with `text` as the first notable command and evidence."""
    report = sample_report()
    rows: list[tuple[Cell, ...]] = list(report.tables["notable"].rows)
    rows[0] = (*rows[0][:5], text, *rows[0][6:])
    tables = dict(report.tables) | {"notable": Table("notable", tuple(rows))}
    first = report.findings[0]
    evidence = (dataclasses.replace(first.evidence[0], text=text), *first.evidence[1:])
    findings = (dataclasses.replace(first, evidence=evidence), *report.findings[1:])
    return dataclasses.replace(report, tables=tables, findings=findings, charts=())


class Structure(HTMLParser):
    """The tags of a page in order, and the text inside each <pre>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.pre: list[str] = []
        self.inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "pre":
            self.inside = True
            self.pre.append("")

    def handle_endtag(self, tag: str) -> None:
        self.tags.append("/" + tag)
        self.inside = self.inside and tag != "pre"

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.pre[-1] += data


def structure(page: bytes) -> Structure:
    parser = Structure()
    parser.feed(page.decode("utf-8"))
    parser.close()
    return parser


def norm(text: str) -> str:
    """Text as a parser may hand it over: line ends folded, NUL replaced."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")


BASELINE = structure(render_html(with_command("plain")))


@settings(max_examples=60, deadline=None)
@given(HOSTILE)
def test_html_shows_the_text_and_keeps_its_structure(text: str) -> None:
    page = structure(render_html(with_command(text)))
    assert page.tags == BASELINE.tags
    assert norm(encodable(text)) in [norm(shown) for shown in page.pre]


@settings(max_examples=60, deadline=None)
@given(HOSTILE)
def test_csv_reads_the_text_back_defused(text: str) -> None:
    data = render_csv(with_command(text))["notable.csv"]
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    assert rows[0]["text"] == defuse(encodable(text))


@settings(max_examples=60, deadline=None)
@given(HOSTILE)
def test_json_gives_the_text_back(text: str) -> None:
    document = json.loads(render_json(with_command(text)))
    assert document["tables"]["notable"][0]["text"] == text
    assert document["findings"][0]["evidence"][0]["text"] == text


@settings(max_examples=30, deadline=None)
@given(HOSTILE)
def test_sqlite_gives_the_text_back(text: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "evidence.db"
        render_sqlite(with_command(text), path)
        with closing(sqlite3.connect(path)) as conn:
            (stored,) = conn.execute("SELECT text FROM notable ORDER BY at LIMIT 1").fetchone()
    assert stored == encodable(text)
