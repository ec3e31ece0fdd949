"""The review's findings: each rule reads the week's facts and says what a reviewer must look at.

Every finding names its evidence by id (a session, statement, command, file operation,
event, grant, request or unmask grant), with the place in a recording where it shows, and
`involved`: the people who gave, approved or asked for what it rests on, none of whom may
pass it (bastion/access decides that). Rules are plain functions over Facts; pure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bastion.access.hours import Hours, parse_hours
from bastion.clock import parse_iso
from bastion.config import Config
from bastion.reports.facts import Facts
from bastion.reports.model import Evidence, Finding, finding_id, utc

Rule = Callable[[Facts, Config], list[Finding]]


def _offset(row: dict[str, Any]) -> float | None:
    if not row.get("started_at"):
        return None
    return max((parse_iso(row["at"]) - parse_iso(row["started_at"])).total_seconds(), 0.0)


def command_evidence(row: dict[str, Any]) -> Evidence:
    offset = _offset(row)
    replay = f"bastion replay {row['session_id']} --from {int(offset or 0)}"
    return Evidence("command", str(row["id"]), utc(parse_iso(row["at"])), row["command"],
                    row["session_id"], offset, replay)  # fmt: skip


def statement_evidence(row: dict[str, Any]) -> Evidence:
    text = row["sql"] if len(row["sql"]) <= 500 else row["sql"][:500] + "..."
    return Evidence("statement", str(row["id"]), utc(parse_iso(row["at"])), text,
                    row["session_id"], _offset(row))  # fmt: skip


def session_evidence(row: dict[str, Any]) -> Evidence:
    text = (f"{row['person']} -> {row['target']} ({row['door']}) from {row['client_addr']},"
            f" {row['state']}")  # fmt: skip
    replay = f"bastion replay {row['id']}" if row["door"] == "ssh" else None
    return Evidence("session", row["id"], utc(parse_iso(row["started_at"])), text, row["id"],
                    0.0, replay)  # fmt: skip


def grant_evidence(row: dict[str, Any]) -> Evidence:
    holder = row["person"] or f"group {row['grp']}"
    text = (f"grant {row['id']}: {holder} {row['mode']} on {row['target']},"
            f" {row['starts_at'][:16]} to {row['ends_at'][:16]}, by {row['granted_by']}:"
            f" {row['reason']}")  # fmt: skip
    return Evidence("grant", str(row["id"]), utc(parse_iso(row["created_at"])), text)


def event_evidence(row: dict[str, Any]) -> Evidence:
    text = f"{row['kind']} by {row['actor']}" + (f" for {row['subject']}" if row["subject"] else "")
    return Evidence("event", str(row["seq"]), utc(parse_iso(row["at"])), text, row["session_id"])


def grant_people(facts: Facts, grant_id: int | None) -> tuple[str, ...]:
    """Who gave the grant, and who approved the request it came from."""
    for grant in facts.grants:
        if grant["id"] == grant_id:
            request = next((r for r in facts.requests if r["id"] == grant["request_id"]), None)
            approvers = tuple(name for name, _ in request["approvers"]) if request else ()
            return tuple(sorted({grant["granted_by"], *approvers}))
    return ()


def under(facts: Facts, grant_id: int | None) -> dict[str, Any]:
    """A finding's `grants` and `involved` for activity under one grant: who gave it (and
    approved its request) may not pass what it allowed."""
    if not grant_id:
        return {}
    return {"grants": (int(grant_id),), "involved": grant_people(facts, int(grant_id))}


def _under(facts: Facts, row: dict[str, Any]) -> dict[str, Any]:
    return under(facts, row.get("grant_id"))


def break_glass(facts: Facts, config: Config) -> list[Finding]:
    """Each break-glass opened in the period; its id rests on the grant alone, so the day's
    flag and the week's finding are one (sessions opened under it later are evidence)."""
    found = []
    for grant in facts.grants:
        if not grant["break_glass"] or not facts.week.start <= parse_iso(grant["created_at"]):
            continue
        sessions = [session_evidence(s) for s in facts.sessions if s["grant_id"] == grant["id"]]
        acked = grant["acknowledged_at"]
        action = ("Confirm the emergency with the engineer and read its sessions"
                  + ("." if acked else "; then acknowledge it: bastion breakglass ack"
                     f" {grant['id']} --note ..."))  # fmt: skip
        state = f"acknowledged by {grant['acknowledged_by']}" if acked else "not acknowledged"
        found.append(Finding(
            "break_glass", "high",
            f"{grant['person']} opened break-glass {grant['mode']} access to {grant['target']}"
            f" ({state})", action, (grant_evidence(grant), *sessions), subject=grant["person"],
            grants=(int(grant["id"]),), involved=(grant["person"],),
            id=finding_id("break_glass", (grant_evidence(grant),))))  # fmt: skip
    return found


def _hours(text: str | Hours | None, zone: str) -> Hours | None:
    if text is None or isinstance(text, Hours):
        return text
    return parse_hours(text, zone)


def outside_hours(facts: Facts, config: Config) -> list[Finding]:
    """Sessions begun outside a target's allowed hours (high) or the working hours (low)."""
    working = _hours(config.reports.working_hours, config.reports.timezone)
    late: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for session in facts.sessions:
        if not session["person"]:
            continue
        moments = _moments(session, facts)
        allowed = config.target_policy(session["target"] or "").allowed_hours
        if allowed is not None and not all(allowed.allows(m) for m in moments):
            late[(session["person"], "high")].append(session)
        elif working is not None and not all(working.allows(m) for m in moments):
            late[(session["person"], "low")].append(session)
    found = []
    for (person, severity), sessions in sorted(late.items()):
        what = "the target's allowed hours" if severity == "high" else "working hours"
        grants = sorted({int(s["grant_id"]) for s in sessions if s["grant_id"]})
        involved = {who for g in grants for who in grant_people(facts, g)}
        found.append(Finding(
            "outside_hours", severity,
            f"{person} opened {len(sessions)} session(s) outside {what}",
            "Ask why, and check the sessions' recordings and statements.",
            tuple(session_evidence(s) for s in sessions), subject=person,
            grants=tuple(grants), involved=tuple(sorted(involved))))  # fmt: skip
    return found


def _moments(session: dict[str, Any], facts: Facts) -> list[datetime]:
    """The moments of a session inside the week, every 15 minutes and its last: one opened
    at 19:55 and kept open overnight is outside working hours too."""
    start = max(parse_iso(session["started_at"]), facts.week.start)
    ended = parse_iso(session["ended_at"]) if session["ended_at"] else facts.now
    end = min(ended, facts.week.end - timedelta(microseconds=1))
    moments: list[datetime] = []
    at = start
    while at < end and len(moments) < 7 * 24 * 4:
        moments.append(at)
        at += timedelta(minutes=15)
    return [*moments, end] if end >= start else moments


def destructive(facts: Facts, config: Config) -> list[Finding]:
    found = []
    for row in facts.commands:
        what = row["destroys"]
        if what:
            found.append(Finding(
                "destructive_command", "high", f"{row['person']} ran {what} on {row['target']}",
                "Check the change was planned (a ticket) and its effect.",
                (command_evidence(row),), subject=row["person"], **_under(facts, row)))  # fmt: skip
    for row in facts.statements:
        why = row["destroys"]
        if why is None:
            continue
        refused = row["refused_reason"] is not None
        found.append(Finding(
            "destructive_statement", "medium" if refused else "high",
            f"{row['person']} {'tried' if refused else 'ran'} {why} on {row['target']}",
            "Check the change was planned (a ticket) and what it removed.",
            (statement_evidence(row),), subject=row["person"], **_under(facts, row)))  # fmt: skip
    return found


def escalation(facts: Facts, config: Config) -> list[Finding]:
    found = []
    for row in facts.commands:
        used = row["escalates"]
        if used:
            found.append(Finding(
                "privilege_escalation", "medium",
                f"{row['person']} used {used[0]} on {row['target']}",
                "Check the command needed root and was recorded in full.",
                (command_evidence(row),), subject=row["person"], **_under(facts, row)))  # fmt: skip
    return found


def unmasks(facts: Facts, config: Config) -> list[Finding]:
    found = []
    for row in facts.unmasks:
        if row["state"] != "approved":
            continue
        subject = f"{row['subject_key']}={row['subject_value']}"
        text = (f"unmask {row['id']}: {row['person']} saw {subject}"
                f" on {row['target']} ({row['rows_shown']} rows in clear); consent"
                f" {row['consent_ref']}, approved by {row['decided_by']}")  # fmt: skip
        evidence = Evidence("unmask", str(row["id"]), utc(parse_iso(row["created_at"])), text)
        found.append(Finding(
            "unmask", "medium", f"{row['person']} saw customer data of {row['subject_value']}",
            "Check the consent reference and document match the customer and the reason.",
            (evidence,), subject=row["person"],
            involved=tuple(sorted({row["person"], row["decided_by"] or ""} - {""}))))  # fmt: skip
    return found
