"""The review's findings about volume per person and local day: many small copies or exports
that add up, across sessions, targets and doors, to what one large one would; pure.

How they relate to the single-item findings (findings_access.large_transfers): a session
that moved more than `[reports] large_transfer_mb` (files and streams) and a statement of
EXPORT_ROWS rows or more are each flagged on their own; a person's day is flagged when what
is left of it, without those, still passes the same threshold. The same bytes or rows are
never flagged twice, and splitting a copy or an export does not hide it. A day's finding
lists its largest pieces (at most volume.PIECES); its id rests on the person, the day and
those pieces, so the same week built again gives the same id.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from bastion.clock import parse_iso
from bastion.config import Config
from bastion.reports.facts import EXPORT_ROWS, Facts
from bastion.reports.findings import grant_people, statement_evidence
from bastion.reports.model import Evidence, Finding, utc
from bastion.reports.volume import PIECES, local_day

MIB = 1 << 20


def session_bytes(facts: Facts) -> Counter[str]:
    """Bytes each session moved in the week: file operations and its recorded streams."""
    moved: Counter[str] = Counter()
    for op in facts.file_ops:
        moved[op["session_id"]] += int(op["bytes"] or 0)
    return moved


def _involved(facts: Facts, grant_ids: set[int]) -> dict[str, Any]:
    grants = sorted(grant_ids)
    people = sorted({who for g in grants for who in grant_people(facts, g)})
    return {"grants": tuple(grants), "involved": tuple(people)}


def _grants_of(facts: Facts, sessions: list[str]) -> set[int]:
    """The grants all of these sessions ran under (not only the listed pieces')."""
    wanted = set(sessions)
    return {int(s["grant_id"]) for s in facts.sessions if s["id"] in wanted and s["grant_id"]}


def _some(names: list[str], most: int = 20) -> str:
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _file_evidence(op: dict[str, Any]) -> Evidence:
    what = (f"{op['operation']} {op['path']}" if op["operation"] != "stream"
            else f"the session's {op['path']} stream")  # fmt: skip
    text = f"{what}: {int(op['bytes'] or 0) / MIB:.1f} MiB on {op['target']}"
    return Evidence("file", str(op["id"]), utc(parse_iso(op["at"])), text, op["session_id"])


def large_transfer_days(facts: Facts, config: Config) -> list[Finding]:
    """A person's day of copies (files and streams) over the threshold in all, leaving out
    sessions already flagged on their own."""
    limit = config.reports.large_transfer_mb * MIB
    flagged = {sid for sid, n in session_bytes(facts).items() if n > limit}
    days: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for op in facts.file_ops:
        if op["session_id"] not in flagged and int(op["bytes"] or 0) > 0:
            day = local_day(facts.week, parse_iso(op["at"]))
            days[(op["person"] or "?", day)].append(op)
    found = []
    for (person, day), ops in sorted(days.items()):
        total = sum(int(op["bytes"] or 0) for op in ops)
        if total <= limit:
            continue
        sessions = sorted({op["session_id"] for op in ops})
        targets = ", ".join(sorted({op["target"] or "?" for op in ops}))
        largest = sorted(ops, key=lambda op: (-int(op["bytes"] or 0), int(op["id"])))[:PIECES]
        summary = Evidence(
            "report",
            f"large_transfer_day:{person}:{day}",
            None,
            f"{len(ops)} pieces, {total} bytes, sessions {_some(sessions)}",
        )
        found.append(Finding(
            "large_transfer_day", "medium",
            f"{person} moved {total // MIB} MiB on {day} in {len(ops)} pieces over"
            f" {len(sessions)} session(s) on {targets}",
            "Check what left production and that it was needed; many small copies in one"
            " day can be one large one split up.",
            (summary, *(_file_evidence(op) for op in largest)), subject=person,
            **_involved(facts, {int(op["grant_id"]) for op in ops if op["grant_id"]})))  # fmt: skip
    return found


def large_export_days(facts: Facts, config: Config) -> list[Finding]:
    """A person's day of statements each under EXPORT_ROWS rows that returned EXPORT_ROWS
    rows or more in all (collected by volume.export_days)."""
    found = []
    for day in facts.export_days:
        pieces = day["pieces"]
        targets = ", ".join(sorted({p["target"] or "?" for p in pieces})) or "?"
        summary = Evidence(
            "report", f"large_export_day:{day['person']}:{day['day']}", None,
            f"{day['n']} statements, {day['rows']} rows, sessions {_some(day['sessions'])}",
        )  # fmt: skip
        found.append(Finding(
            "large_export_day", "medium",
            f"{day['person']} exported {day['rows']} rows on {day['day']} in {day['n']}"
            f" statements of fewer than {EXPORT_ROWS} rows each, on {targets}",
            "Check what left production and that it was needed; many small exports in one"
            " day can be one large one split up.",
            (summary, *(statement_evidence(p) for p in pieces)), subject=day["person"],
            **_involved(facts, _grants_of(facts, day["sessions"]))))  # fmt: skip
    return found
