"""The review's tables from the week's facts: sessions, access, changes, people, notable commands
and statements, transfers, reviewers' activity, the consent ledger; pure."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from bastion.clock import parse_iso
from bastion.reports.facts import Facts, hours_within
from bastion.reports.findings import command_evidence, statement_evidence
from bastion.reports.model import Cell, Table, utc

CHANGE_KINDS = (
    "request.created", "request.approved", "request.denied", "request.cancelled",
    "request.expired", "grant.created", "grant.revoked", "breakglass.opened",
    "breakglass.acknowledged", "user.disabled", "ticket.issued", "ticket.revoked",
    "unmask.requested", "unmask.approved", "unmask.denied", "unmask.revoked",
    "session.kill_requested", "config.reloaded",
)  # fmt: skip
REVIEW_KINDS = ("recording.replayed", "recording.exported", "queries.listed", "audit.verified",
                "report.signed")  # fmt: skip


def _at(text: str | None) -> str | None:
    """A stored instant as the report writes it. The store keeps UTC with microseconds, so
    the report's form is its first 19 characters and a Z (checked as parse_iso checks it)."""
    if not text:
        return None
    if len(text) == 27 and text[10] == "T" and text[19] == "." and text[-1] == "Z":
        datetime.fromisoformat(text[:-1])  # the same check parse_iso makes; strftime is slow
        return text[:19] + "Z"
    return utc(parse_iso(text))  # raises on any other shape, as before


def build_tables(facts: Facts) -> dict[str, Table]:
    rows = {
        "sessions": _sessions(facts), "access": _access(facts), "changes": _changes(facts),
        "people": _people(facts), "notable": _notable(facts), "transfers": _transfers(facts),
        "reviewers": _reviewers(facts), "consent": _consent(facts),
    }  # fmt: skip
    return {key: Table(key, tuple(found)) for key, found in rows.items()}


def _sessions(facts: Facts) -> list[tuple[Cell, ...]]:
    return [(s["id"], s["person"], s["target"], s["door"], s["client_addr"],
             _at(s["started_at"]), _at(s["ended_at"]),
             round(hours_within(s, facts.week, facts.now), 3), s["state"], s["end_reason"],
             s["recording_sha256"]) for s in facts.sessions]  # fmt: skip


def _access(facts: Facts) -> list[tuple[Cell, ...]]:
    """Every grant live or scheduled when the week ended; standing: live then."""
    out: list[tuple[Cell, ...]] = []
    for g in facts.grants:
        revoked = g["revoked_at"] and parse_iso(g["revoked_at"]) <= facts.week.end
        if revoked or parse_iso(g["ends_at"]) <= facts.week.end:
            continue
        standing = parse_iso(g["starts_at"]) <= facts.week.end
        out.append((g["id"], g["person"], g["grp"], g["target"], g["mode"], _at(g["starts_at"]),
                    _at(g["ends_at"]), g["granted_by"], g["reason"], g["ticket_ref"],
                    bool(g["break_glass"]), standing))  # fmt: skip
    return out


def _changes(facts: Facts) -> list[tuple[Cell, ...]]:
    out: list[tuple[Cell, ...]] = []
    for event in facts.events_of(*CHANGE_KINDS):
        detail = facts.detail(event)
        reason = detail.pop("reason", None) or detail.pop("why", None)
        window = detail.pop("window", None)
        if window is None and "starts_at" in detail and "ends_at" in detail:
            window = f"{detail.pop('starts_at')} to {detail.pop('ends_at')}"
        out.append((_at(event["at"]), event["kind"], event["actor"], event["subject"] or None,
                    detail.pop("target", None), reason, None if window is None else str(window),
                    json.dumps(detail, sort_keys=True) if detail else None))  # fmt: skip
    return out


def _people(facts: Facts) -> list[tuple[Cell, ...]]:
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"targets": set(), "sessions": 0,
                                                          "hours": 0.0, "first": None,
                                                          "last": None, "commands": 0})  # fmt: skip
    for s in facts.sessions:
        if not s["person"]:
            continue
        entry = per[s["person"]]
        entry["targets"].add(s["target"])
        entry["sessions"] += 1
        entry["hours"] += hours_within(s, facts.week, facts.now)
        end = s["ended_at"] or s["started_at"]
        entry["first"] = min(filter(None, [entry["first"], s["started_at"]]))
        entry["last"] = max(filter(None, [entry["last"], end]))
    for c in facts.commands:
        if c["person"] in per:
            per[c["person"]]["commands"] += 1
    said = {r["person"]: (int(r["n"]), int(r["refused"] or 0)) for r in facts.per_person_statements}
    return [(person, ", ".join(sorted(filter(None, e["targets"]))), e["sessions"],
             round(e["hours"], 2), _at(e["first"]), _at(e["last"]),
             said.get(person, (0, 0))[0], e["commands"], said.get(person, (0, 0))[1])
            for person, e in sorted(per.items())]  # fmt: skip


def _notable(facts: Facts) -> list[tuple[Cell, ...]]:
    """Commands that destroy or escalate, each statement that is destructive, DDL, refused or
    exporting, and the other writes once per person, target and text (with how many)."""
    out: list[tuple[str, tuple[Cell, ...]]] = []
    for c in facts.commands:
        why = [c["destroys"], *c["escalates"]] if c["destroys"] else list(c["escalates"])
        if why:
            e = command_evidence(c)
            out.append((c["at"], (e.at, c["person"], c["target"], c["session_id"], "command",
                                  c["command"], ", ".join(why), e.offset, e.replay)))  # fmt: skip
    for q in facts.statements:
        e = statement_evidence(q)
        refused = q["refused_reason"]
        reason = q["destroys"] or (f"refused: {refused}" if refused is not None
                                   else (q["kind"] or "?"))  # fmt: skip
        out.append((q["at"], (e.at, q["person"], q["target"], q["session_id"], "statement",
                              e.text, reason, e.offset, None)))  # fmt: skip
    for w in facts.routine_writes:
        n, tag = int(w["n"]), str(w["kind"] or "?")
        said = tag if n == 1 else f"{tag}, {n:,} times until {_at(w['last_at'])}"
        out.append((w["first_at"], (_at(w["first_at"]), w["person"], w["target"],
                                    w["session_id"], "statement" if n == 1 else "statements",
                                    w["sql"], said, None, None)))  # fmt: skip
    return [row for _, row in sorted(out, key=lambda item: item[0])]


def _transfers(facts: Facts) -> list[tuple[Cell, ...]]:
    return [(_at(op["at"]), op["person"], op["target"], op["session_id"], op["operation"],
             op["path"], op["bytes"], op["sha256"]) for op in facts.file_ops]  # fmt: skip


def _reviewers(facts: Facts) -> list[tuple[Cell, ...]]:
    return [(_at(event["at"]), event["actor"], event["kind"],
             _reviewed(event, facts.detail(event)))
            for event in facts.events_of(*REVIEW_KINDS)]  # fmt: skip


def _reviewed(event: dict[str, Any], detail: dict[str, Any]) -> str:
    """What a reviewer's action was about, in one line (never a statement's text)."""
    if event["session_id"]:
        return str(event["session_id"])
    if event["kind"] == "queries.listed":
        filters = detail.get("filters")
        filters = dict(filters) if isinstance(filters, dict) else {}
        read = str(filters.pop("via", None) or "query log")  # audit log, sessions search...
        given = ", ".join(f"{key}={value}" for key, value in sorted(filters.items()))
        return f"{read} ({given or 'no filter'}): {detail.get('rows')} rows shown"
    if event["kind"] == "audit.verified":
        what = f"review pack {detail['week']}" if detail.get("week") else "audit chain"
        span = f"events {detail.get('from_seq')}-{detail.get('to_seq')}"
        return f"{detail.get('command') or 'verify'}: {what}, {span}: {detail.get('result')}"
    return str(detail.get("week") or json.dumps(detail, sort_keys=True))


def _consent(facts: Facts) -> list[tuple[Cell, ...]]:
    return [(u["id"], u["person"], u["target"], f"{u['subject_key']}={u['subject_value']}",
             u["consent_ref"], u["consent_sha256"], u["state"], u["decided_by"], u["rows_shown"],
             _at(u["created_at"])) for u in facts.unmasks]  # fmt: skip
