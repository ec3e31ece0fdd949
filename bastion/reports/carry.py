"""Findings a week's report inherits: earlier ones nobody decided, and weeks not signed in time."""

from __future__ import annotations

from bastion.access.reviews import Reviews
from bastion.audit import ReportWeek, ReviewedFinding, Store
from bastion.clock import Clock
from bastion.config import Config
from bastion.durations import format_duration
from bastion.reports.model import Evidence, Finding, utc

UNSIGNED_RULE = "review_unsigned"


def carry(store: Store, config: Config, clock: Clock, week: str) -> list[Finding]:
    """What the report of `week` (a label) adds to its own findings: each earlier week not
    signed within [reports] sign_within (announced once, as an event and a notification), and
    every earlier finding still open, with the week it was first seen; each once."""
    reviews = Reviews(store, config, clock)
    late = [w for w in reviews.overdue() if w.week < week]
    found = [unsigned_finding(w, config) for w in late]
    found += [carried_finding(f) for f in store.open_findings_before(week)]
    unique: dict[str, Finding] = {}
    for item in found:
        unique.setdefault(item.id, item)
    return list(unique.values())


def carried_finding(stored: ReviewedFinding) -> Finding:
    """An earlier week's open finding as it was reported, under the same id."""
    return Finding(
        rule=stored.rule, severity=stored.severity, title=stored.title, action=stored.action,
        evidence=tuple(Evidence(**item) for item in stored.evidence), subject=stored.subject,
        grants=stored.grants, requests=stored.requests, involved=stored.involved,
        first_seen=stored.week, id=stored.id,
    )  # fmt: skip


def unsigned_finding(late: ReportWeek, config: Config) -> Finding:
    """A week whose review nobody signed in time; the same id every week until it is."""
    within = format_duration(config.reports.sign_within)
    built = utc(late.built_at)
    text = f"week {late.week} built {built}, manifest SHA-256 {late.manifest_sha256 or '-'}"
    return Finding(
        rule=UNSIGNED_RULE, severity="medium",
        title=f"the access review of week {late.week} was not signed within {within}",
        action=f"Review its findings and sign it: bastion report sign {late.week} --as NAME",
        evidence=(Evidence(kind="report", ref=late.week, at=built, text=text),),
    )  # fmt: skip
