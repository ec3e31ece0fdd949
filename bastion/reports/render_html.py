"""The weekly report as one self-contained HTML file that prints well and never goes online.

Order: the provenance header, the findings (most severe first, each with its evidence and
the command that replays the recording at that moment), the summary with last week's
figures, the charts, then every section as a table. Everything is in the file: CSS inline,
charts as SVG data URIs drawn by matplotlib (bastion/reports/charts.py), no script, font,
image or style fetched from anywhere; a Content-Security-Policy forbids any request and
any script, as a second wall behind escaping. Every text from the store is escaped (an
insider types commands and reasons). Pure: the same report gives the same bytes.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bastion.reports import charts
from bastion.reports.columns import NUMBER, UNENCODABLE, cell, column_types
from bastion.reports.model import (
    SEVERITIES,
    TABLES,
    Cell,
    Evidence,
    Finding,
    Metric,
    Provenance,
    WeeklyReport,
)

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)

SECTIONS: Mapping[str, tuple[str, str]] = {
    "access": ("Access at the end of the week",
               "Every live and scheduled grant; standing: it outlived the week."),
    "changes": ("Changes", "Requests, approvals, denials, revocations, offboardings, "
                "break-glass with its acknowledgement."),
    "people": ("Per person", "What each person reached, when and for how long."),
    "notable": ("Commands and statements that matter",
                "Each with the command that replays its recording from that moment."),
    "transfers": ("File transfers and exports", ""),
    "consent": ("Consent ledger", "Every unmask request of the week, with its consent."),
    "reviewers": ("Reviewer activity",
                  "Who replayed or exported recordings, listed queries, verified the chain."),
    "sessions": ("Sessions", "Every session of the week, on every door."),
}  # fmt: skip

STYLE = """
:root { --high: #b00020; --medium: #b35c00; --low: #2a5db0; --info: #555; }
* { box-sizing: border-box; }
body { font: 10.5pt/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #111; }
h1 { font-size: 1.6em; margin: 0 0 .2em; } h2 { font-size: 1.25em; margin: 1.6em 0 .4em;
     border-bottom: 2px solid #333; } h3 { font-size: 1.05em; margin: 0 0 .3em; }
table { border-collapse: collapse; width: 100%; margin: .4em 0 1em; font-size: .92em; }
th, td { border: 1px solid #bbb; padding: .2em .4em; text-align: left; vertical-align: top; }
th { background: #eee; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: .92em/1.35 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
td code, dd code { overflow-wrap: anywhere; }
.local { color: #555; display: block; font-size: .9em; } time { white-space: nowrap; }
nav ul { list-style: none; padding: 0; margin: .5em 0; } nav li { display: inline; }
nav li + li::before { content: " · "; color: #888; }
.provenance dl { display: grid; grid-template-columns: max-content 1fr; gap: .1em 1em; }
.provenance dt { font-weight: 600; } .provenance dd { margin: 0; }
.alert { border: 2px solid var(--high); padding: .5em; margin: .5em 0; font-weight: 600; }
.ok { color: #1b6e20; font-weight: 600; }
.finding { border: 1px solid #bbb; border-left: 6px solid var(--info); padding: .5em .8em;
           margin: .6em 0; }
.finding.high { border-left-color: var(--high); }
.finding.medium { border-left-color: var(--medium); }
.finding.low { border-left-color: var(--low); }
.badge { display: inline-block; padding: 0 .45em; border-radius: 3px; color: #fff;
         font-size: .8em; text-transform: uppercase; background: var(--info); margin-right: .4em; }
.badge.high { background: var(--high); } .badge.medium { background: var(--medium); }
.badge.low { background: var(--low); }
.meta { color: #444; font-size: .9em; } .action { margin: .3em 0; }
.up { color: var(--high); } .down { color: #1b6e20; }
figure { margin: 1em 0; break-inside: avoid; } figure img { max-width: 100%; }
.empty { color: #555; font-style: italic; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 9pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  thead { display: table-header-group; } tr, .finding, figure { break-inside: avoid; }
  h2 { break-after: avoid; } nav { display: none; }
}
"""


def e(value: object) -> str:
    """Text as HTML, quotes included: safe in element content and in quoted attributes."""
    return html.escape(str(value), quote=True)


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def when(at: str | None, zone: ZoneInfo | None) -> str:
    """An instant in UTC with its local time beside it (when the timezone is known)."""
    if at is None:
        return ""
    try:
        moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return e(at)
    if zone is None or moment.tzinfo is None:
        return e(at)
    local = moment.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")
    return f'<time datetime="{e(at)}">{e(at)}</time><span class="local">{e(local)}</span>'


def number(value: float) -> str:
    """A figure for people: thousands grouped, two decimals unless it is whole."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def _provenance(p: Provenance) -> str:
    v = p.verification
    rows = [
        ("Week", f"{e(p.week)} ({e(p.timezone)})"),
        ("Period, local", f"{e(p.start_local)} to {e(p.end_local)} (end exclusive)"),
        ("Period, UTC", f"{e(p.start)} to {e(p.end)} (end exclusive)"),
        ("Made", f"{e(p.made_at)} by bastion {e(p.version)}"),
        ("Filters", ", ".join(f"{e(k)} = {e(val)}" for k, val in p.filters.items()) or "none"),
        ("Rows", ", ".join(f"{e(k)} {e(n)}" for k, n in p.counts.items())),
        ("Chain at start", f"seq {e(p.chain_start.seq)}, <code>{e(p.chain_start.mac)}</code>"),
        ("Chain at end", f"seq {e(p.chain_end.seq)}, <code>{e(p.chain_end.mac)}</code>"),
        ("Chain", e(v.chain)),
        ("Recordings", f"{e(v.recordings_checked)} checked, {len(v.recordings_failed)} failed"),
    ]
    items = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    alerts = []
    if v.chain != "intact":
        alerts.append(f"The audit chain failed verification: {e(v.chain)}")
    alerts += [f"A recording failed verification: {e(why)}" for why in v.recordings_failed]
    banner = "".join(f'<p class="alert" role="alert">{text}</p>' for text in alerts)
    if not alerts:
        banner = '<p class="ok">The audit chain and every recording of the week verified.</p>'
    return (
        f'<header class="provenance"><h1>Weekly access review, {e(p.week)}</h1>'
        f"{banner}<dl>{items}</dl></header>"
    )


def _evidence_row(ev: Evidence, zone: ZoneInfo | None) -> str:
    where = e(ev.session) if ev.session else ""
    if ev.session and ev.offset is not None:
        where += f" at {number(ev.offset)} s"
    replay = f"<code>{e(ev.replay)}</code>" if ev.replay else ""
    return (
        f'<tr data-evidence="{e(ev.kind)}:{e(ev.ref)}"><td>{when(ev.at, zone)}</td>'
        f"<td>{e(ev.kind)} {e(ev.ref)}</td>"
        f"<td><pre>{e(ev.text)}</pre></td><td>{where}</td><td>{replay}</td></tr>"
    )


def _finding(f: Finding, zone: ZoneInfo | None) -> str:
    meta = [f"rule <code>{e(f.rule)}</code>", f"id <code>{e(f.id)}</code>"]
    if f.subject:
        meta.insert(0, f"about {e(f.subject)}")
    if f.first_seen:
        meta.append(f"open since {e(f.first_seen)}")
    if f.grants:
        meta.append("grants " + ", ".join(e(g) for g in f.grants))
    if f.requests:
        meta.append("requests " + ", ".join(e(r) for r in f.requests))
    rows = "".join(_evidence_row(ev, zone) for ev in f.evidence)
    evidence = (
        "<table><thead><tr><th>When</th><th>What</th><th>Text</th><th>Recording</th>"
        f"<th>Replay</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p class="empty">No evidence recorded.</p>'
    )
    sev = e(f.severity)
    return (
        f'<article class="finding {sev}" id="finding-{e(f.id)}">'
        f'<h3><span class="badge {sev}">{sev}</span>{e(f.title)}</h3>'
        f'<p class="meta">{" · ".join(meta)}</p>'
        f'<p class="action"><strong>Recommended:</strong> {e(f.action)}</p>{evidence}</article>'
    )


def ordered(findings: Sequence[Finding]) -> list[Finding]:
    """Most severe first; within a severity, the order the report gives."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def _findings(findings: Sequence[Finding], zone: ZoneInfo | None) -> str:
    counts = [(s, sum(1 for f in findings if f.severity == s)) for s in SEVERITIES]
    tally = ", ".join(f"{n} {s}" for s, n in counts if n) or "none"
    body = "".join(_finding(f, zone) for f in ordered(findings))
    if not findings:
        body = '<p class="empty">No findings this week.</p>'
    return f'<section id="findings"><h2>Findings ({tally})</h2>{body}</section>'


def change(m: Metric) -> str:
    """The week-over-week change: signed, with the percentage when last week was not zero."""
    delta = m.change
    if delta == 0:
        return "no change"
    sign = "+" if delta > 0 else "\u2212"
    text = f"{sign}{number(abs(delta))}"
    if m.last_week:
        text += f" ({sign}{abs(delta) / abs(m.last_week):.0%})"
    return f'<span class="{"up" if delta > 0 else "down"}">{text}</span>'


def _summary(summary: Sequence[Metric]) -> str:
    rows = "".join(
        f'<tr><td>{e(m.label)}</td><td class="num">{number(m.this_week)}</td>'
        f'<td class="num">{number(m.last_week)}</td><td class="num">{change(m)}</td></tr>'
        for m in summary
    )
    if not rows:
        return '<section id="summary"><h2>Summary</h2><p class="empty">No figures.</p></section>'
    return (
        '<section id="summary"><h2>Summary</h2><table><thead><tr><th>Figure</th>'
        '<th class="num">This week</th><th class="num">Last week</th><th class="num">Change</th>'
        f"</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _charts(report: WeeklyReport) -> str:
    figures = []
    for series in report.charts:
        for name, row in series.values.items():  # as render_json: refused, not misdrawn
            if len(row) != len(series.labels):
                raise ValueError(f"chart {series.key}: {name} has {len(row)} values")
            cell(NUMBER, sum(row), f"chart {series.key}.{name}")  # finite
        svg = charts.draw(series)
        if svg is None:
            figures.append(f'<h3>{e(series.title)}</h3><p class="empty">Nothing this week.</p>')
            continue
        data = base64.b64encode(svg).decode("ascii")
        figures.append(
            f'<figure><img alt="{e(series.title)}" src="data:image/svg+xml;base64,{data}">'
            f"<figcaption>{e(series.title)}</figcaption></figure>"
        )
    return f'<section id="charts"><h2>Charts</h2>{"".join(figures)}</section>'


def _writer(column: str, zone: ZoneInfo | None) -> Callable[[Cell], str]:
    """How a column's cells are written, chosen once a table (tables run to many rows)."""
    text: Callable[[str], str] = e
    if column == "at" or column.endswith("_at"):
        text = partial(when, zone=zone)
    elif column in ("text", "replay") or column.endswith("sha256"):
        text = _code

    def write(value: Cell) -> str:
        if value is None:
            return "<td></td>"
        if isinstance(value, bool):
            return f"<td>{'yes' if value else 'no'}</td>"
        if isinstance(value, int | float):
            return f'<td class="num">{number(value)}</td>'
        return f"<td>{text(value)}</td>"

    return write


def _code(value: str) -> str:
    return f"<code>{e(value)}</code>"


HTML_ROWS = 2000  # rows of a table the page shows; every row is in the CSV and evidence.db


def _table(report: WeeklyReport, key: str, zone: ZoneInfo | None) -> str:
    """A section's table; past HTML_ROWS rows (a busy week's writes) the page shows the first
    ones and says where all of them are, so the page stays one a browser can open."""
    title, about = SECTIONS.get(key, (key, ""))
    types = column_types(key)
    head = "".join(f"<th>{e(name)}</th>" for name, _ in types)
    columns = [(name, kind, _writer(name, zone)) for name, kind in types]
    rows = "".join(
        "<tr>"
        + "".join(
            write(cell(kind, value, f"{key}.{name}"))
            for (name, kind, write), value in zip(columns, row, strict=True)
        )
        + "</tr>"
        for row in report.tables[key].rows[:HTML_ROWS]
    )
    intro = f"<p>{e(about)}</p>" if about else ""
    count = len(report.tables[key].rows)
    if count > HTML_ROWS:
        intro += (
            f'<p class="more">The first {number(HTML_ROWS)} of {number(count)} rows, oldest'
            f" first; every row is in {e(key)}.csv and in evidence.db.</p>"
        )
    body = (
        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else '<p class="empty">None this week.</p>'
    )
    return f'<section id="{e(key)}"><h2>{e(title)} ({count})</h2>{intro}{body}</section>'


def render_html(report: WeeklyReport) -> bytes:
    """The report as one HTML document, UTF-8 bytes."""
    p = report.provenance
    zone = _zone(p.timezone)
    order = [key for key in SECTIONS if key in TABLES]
    order += [key for key in TABLES if key not in SECTIONS]
    sections = "".join(_table(report, key, zone) for key in order)
    links = [("findings", "Findings"), ("summary", "Summary"), ("charts", "Charts")]
    links += [(key, SECTIONS.get(key, (key, ""))[0]) for key in order]
    nav = "".join(f'<li><a href="#{e(key)}">{e(title)}</a></li>' for key, title in links)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Weekly access review {e(p.week)}</title><style>{STYLE}</style></head><body>"
        f'{_provenance(p)}<nav aria-label="Sections"><ul>{nav}</ul></nav>'
        f"<main>{_findings(report.findings, zone)}{_summary(report.summary)}"
        f'{_charts(report)}<div class="sections">{sections}</div></main>'
        f'<footer class="meta"><p>Made by bastion {e(p.version)} at {e(p.made_at)} from the '
        f"audit store, chain seq {e(p.chain_start.seq)} to {e(p.chain_end.seq)}.</p></footer>"
        "</body></html>\n"
    )
    return page.encode("utf-8", UNENCODABLE)
