"""Every rendering of a report read back: which findings each holds, with what evidence.

For tests that check a finding appears once, with the same evidence, in every format:
`render_all` writes the four renderings into a directory and `findings_by_format` reads
each back to {format: [(finding id, ((evidence kind, ref), ...)), ...]}.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from contextlib import closing
from html.parser import HTMLParser
from pathlib import Path

from bastion.reports.model import WeeklyReport
from bastion.reports.render_csv import render_csv
from bastion.reports.render_html import render_html
from bastion.reports.render_json import render_json
from bastion.reports.render_sqlite import render_sqlite

Found = list[tuple[str, tuple[tuple[str, str], ...]]]


def render_all(report: WeeklyReport, directory: Path) -> Path:
    """report.html, report.json, csv/<section>.csv and evidence.db under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.html").write_bytes(render_html(report))
    (directory / "report.json").write_bytes(render_json(report))
    (directory / "csv").mkdir(exist_ok=True)
    for name, data in render_csv(report).items():
        (directory / "csv" / name).write_bytes(data)
    render_sqlite(report, directory / "evidence.db")
    return directory


class _Findings(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        ident = values.get("id") or ""
        if tag == "article" and ident.startswith("finding-"):
            self.found.append((ident.removeprefix("finding-"), []))
        elif tag == "tr" and values.get("data-evidence") and self.found:
            kind, _, ref = (values["data-evidence"] or "").partition(":")
            self.found[-1][1].append((kind, ref))


def _html(path: Path) -> Found:
    parser = _Findings()
    parser.feed(path.read_text(encoding="utf-8"))
    return [(ident, tuple(evidence)) for ident, evidence in parser.found]


def _json(path: Path) -> Found:
    document = json.loads(path.read_bytes())
    return [
        (f["id"], tuple((e["kind"], e["ref"]) for e in f["evidence"])) for f in document["findings"]
    ]


def _csv(directory: Path) -> Found:
    def rows(name: str) -> list[dict[str, str]]:
        text = (directory / name).read_text(encoding="utf-8")
        return list(csv.DictReader(io.StringIO(text, newline="")))

    evidence = rows("evidence.csv")
    return [
        (f["id"], tuple((e["kind"], e["ref"]) for e in evidence if e["finding_id"] == f["id"]))
        for f in rows("findings.csv")
    ]


def _sqlite(path: Path) -> Found:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM findings ORDER BY rowid")]
        pairs = conn.execute("SELECT finding_id, kind, ref FROM evidence ORDER BY id").fetchall()
    return [(i, tuple((kind, ref) for fid, kind, ref in pairs if fid == i)) for i in ids]


def findings_by_format(directory: Path, csvs: Path | None = None) -> dict[str, Found]:
    """The findings of each rendering under `directory` (its CSVs in `csvs`, by default
    directory/csv; a signed pack keeps them beside the others), in the order each lists them."""
    return {
        "html": _html(directory / "report.html"),
        "json": _json(directory / "report.json"),
        "csv": _csv(csvs or directory / "csv"),
        "sqlite": _sqlite(directory / "evidence.db"),
    }
