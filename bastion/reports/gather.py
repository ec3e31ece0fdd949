"""A WeeklyReport from the store: the week's facts, last week's beside them, findings, tables.

Gathering reads; it writes nothing. What it could not check (the chain, the recordings) comes
in as a Verification made by the caller, whose findings join the others.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from bastion import __version__
from bastion.audit import Store
from bastion.clock import iso, parse_iso
from bastion.config import Config
from bastion.reports import findings as person_rules
from bastion.reports import findings_access as access_rules
from bastion.reports import findings_export as export_rules
from bastion.reports import findings_input as input_rules
from bastion.reports import findings_retention as retention_rules
from bastion.reports import findings_volume as volume_rules
from bastion.reports.charts import predraw
from bastion.reports.facts import (
    REFUSED_LOGINS,
    TOTP_FAILURES,
    Facts,
    collect,
    detector_counts,
    hours_within,
    statement_class,
)
from bastion.reports.model import (
    SEVERITIES,
    TABLES,
    ChainHead,
    Evidence,
    Finding,
    Metric,
    Provenance,
    Series,
    Table,
    Verification,
    WeeklyReport,
    utc,
)
from bastion.reports.tables import build_tables
from bastion.reports.week import Week

log = structlog.get_logger("bastion.reports")

RULES = (
    person_rules.break_glass, person_rules.outside_hours, person_rules.destructive,
    person_rules.escalation, person_rules.unmasks, access_rules.unused_grants,
    access_rules.long_grants, access_rules.weak_reasons, access_rules.failed_logins,
    access_rules.interrupted, access_rules.restores, access_rules.many_addresses,
    access_rules.large_transfers,
    volume_rules.large_transfer_days, volume_rules.large_export_days, input_rules.unparsed_input,
    retention_rules.holds, retention_rules.pruned, export_rules.tampered, export_rules.changed,
)  # fmt: skip


def gather(
    store: Store, config: Config, week: Week, *, now: datetime,
    verification: Verification | Callable[[], Verification], carried: Sequence[Finding] = (),
) -> WeeklyReport:  # fmt: skip
    """The week's report; `carried` are earlier findings still open (and other findings the
    caller made, such as an unsigned week). `verification` may be a call that waits for it,
    made once the week is read (the caller verifies beside the gathering)."""
    facts = collect(store, week, now)
    last = collect(store, week.previous(), now, detail=False)
    found = run_rules(facts, config)
    tables = build_tables(facts)  # all that needs no verdict is done before waiting for it
    heads = [ChainHead(*store.chain_head_before(iso(m))) for m in (week.start, week.end)]
    figures, drawn = summary(facts, last), charts(facts)
    predraw(drawn)
    if callable(verification):
        verification = verification()
    found += verification_findings(verification)
    seen = {f.id for f in found}
    found += [f for f in carried if f.id not in seen]
    found.sort(key=lambda f: (SEVERITIES.index(f.severity), f.rule, f.title, f.id))
    counts = {key: len(table.rows) for key, table in tables.items()}
    counts["findings"] = len(found)
    provenance = Provenance(
        week=week.label, timezone=week.timezone, start=utc(week.start) or "",
        end=utc(week.end) or "", start_local=week.local_start.isoformat(),
        end_local=week.local_end.isoformat(), made_at=utc(now) or "", version=__version__,
        filters={"week": week.label, "people": "all", "targets": "all", "doors": "all"},
        counts=counts, chain_start=heads[0], chain_end=heads[1], verification=verification,
    )  # fmt: skip
    return WeeklyReport(provenance, figures, tuple(found), tables, drawn)


def run_rules(facts: Facts, config: Config) -> list[Finding]:
    """Every rule's findings; a rule that fails is itself a high finding, so the week's
    review still goes out (an insider's odd command must not stop it) and says so."""
    found: list[Finding] = []
    for rule in RULES:
        try:
            found += rule(facts, config)
        except Exception as exc:
            log.error("report.rule_failed", rule=rule.__name__, error=str(exc))
            what = f"{type(exc).__name__}: {exc}"[:300]
            found.append(Finding(
                "rule_failed", "high", f"the review rule {rule.__name__} failed: {what}",
                "Report the bug; check by hand what this rule looks for in this week.",
                (Evidence("report", rule.__name__, None, what),)))  # fmt: skip
    return found


def verification_findings(verification: Verification) -> list[Finding]:
    found = []
    if verification.chain != "intact":
        found.append(Finding(
            "verification_failed", "high", f"the audit chain did not verify: {verification.chain}",
            "Stop and investigate: the audit trail may have been altered.",
            (Evidence("report", "chain", None, verification.chain),)))  # fmt: skip
    for problem in verification.recordings_failed:
        session = problem.split(":", 1)[0]
        found.append(Finding(
            "verification_failed", "high", f"a recording did not verify: {problem}",
            "Restore the recording from backup and find out who changed it.",
            (Evidence("session", session, None, problem, session),)))  # fmt: skip
    return found


def _values(facts: Facts) -> dict[str, float]:
    """The summary's figures for one week, by key."""
    people = {s["person"] for s in facts.sessions if s["person"]}
    doors = Counter(s["door"] for s in facts.sessions)
    kinds: Counter[str] = Counter()
    for row in facts.statement_counts:
        kinds["refused" if row["refused"] else statement_class(row["kind"])] += int(row["n"])
    moved = [op for op in facts.file_ops if op["operation"] != "stream"]
    events = facts.event_counts
    in_week = [g for g in facts.grants if parse_iso(g["created_at"]) >= facts.week.start]
    used = {s["grant_id"] for s in facts.sessions if s["grant_id"]}
    values: dict[str, float] = {
        "people_active": len(people),
        **{f"sessions_{door}": doors.get(door, 0) for door in ("ssh", "postgres", "web")},
        "hours": round(sum(hours_within(s, facts.week, facts.now) for s in facts.sessions), 2),
        **{f"statements_{kind}": kinds.get(kind, 0)
           for kind in ("read", "write", "ddl", "refused")},
        "file_transfers": len(moved),
        "transfer_mib": round(sum(int(op["bytes"] or 0) for op in moved) / (1 << 20), 2),
        "unmask_grants_used": sum(1 for u in facts.unmasks if u["rows_shown"]),
        "break_glass": events.get("breakglass.opened", 0),
        "refused_logins": sum(events.get(kind, 0) for kind in REFUSED_LOGINS),
        "totp_failures": sum(events.get(kind, 0) for kind in TOTP_FAILURES),
        "lockouts": events.get("user.locked", 0),
        "grants_issued": len(in_week),
        "grants_used": len(used),
        "grants_never_used": sum(1 for g in facts.grants if not g["sessions"]
                                 and parse_iso(g["starts_at"]) < facts.week.end),
    }  # fmt: skip
    for detector, n in detector_counts(facts.masking_notes).items():
        values[f"masked_{detector}"] = n
    return values


_LABELS = {
    "people_active": "people active", "sessions_ssh": "SSH sessions",
    "sessions_postgres": "database sessions", "sessions_web": "web sessions",
    "hours": "hours connected", "statements_read": "statements: read",
    "statements_write": "statements: write", "statements_ddl": "statements: DDL",
    "statements_refused": "statements: refused", "file_transfers": "file transfers",
    "transfer_mib": "MiB transferred", "unmask_grants_used": "unmask grants used",
    "break_glass": "break-glass uses", "refused_logins": "refused logins",
    "totp_failures": "TOTP failures", "lockouts": "lockouts", "grants_issued": "grants issued",
    "grants_used": "grants used", "grants_never_used": "grants never used",
}  # fmt: skip


def summary(facts: Facts, last: Facts) -> tuple[Metric, ...]:
    now, before = _values(facts), _values(last)
    keys = [*_LABELS, *sorted(k for k in {*now, *before} if k.startswith("masked_"))]
    return tuple(
        Metric(key, _LABELS.get(key, "masked values: " + key.removeprefix("masked_")),
               now.get(key, 0), before.get(key, 0))
        for key in keys
    )  # fmt: skip


def charts(facts: Facts) -> tuple[Series, ...]:
    days = [(facts.week.first_day + timedelta(days=i)).isoformat() for i in range(7)]
    per_person: dict[str, list[float]] = defaultdict(lambda: [0.0] * 7)
    hours: dict[str, float] = defaultdict(float)
    tz = facts.week.local_start.tzinfo
    for session in facts.sessions:
        day = parse_iso(session["started_at"]).astimezone(tz).date().isoformat()
        if session["person"] and day in days:
            per_person[session["person"]][days.index(day)] += 1
        hours[session["target"] or "?"] += hours_within(session, facts.week, facts.now)
    targets = sorted(hours)
    return (
        Series("sessions_per_day", "Sessions per day per person", tuple(days),
               {person: tuple(row) for person, row in sorted(per_person.items())}),
        Series("hours_per_target", "Hours connected per target", tuple(targets),
               {"hours": tuple(round(hours[t], 2) for t in targets)}),
    )  # fmt: skip


def event_detail(event: dict[str, Any]) -> dict[str, Any]:
    found = json.loads(event["detail"] or "{}")
    return found if isinstance(found, dict) else {}


__all__ = ["TABLES", "Table", "event_detail", "gather"]
