"""The weekly review's sign-off as the CLI and the web console both read and make it.

Reviewing a finding and signing a week are decided by `bastion.access.reviews.Reviews` (who
may, bound to what); this module lists the built weeks and a week's findings for both, and
proves the person before a decision, so `bastion report review`/`sign` and the console's
pages and API make the very same calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.access.reviews import Reviews
from bastion.audit import ReportWeek, ReviewedFinding
from bastion.identity.service import Identity


@dataclass(frozen=True)
class WeekFindings:
    """One built week and its findings (all, or those in one state)."""

    week: ReportWeek
    findings: list[ReviewedFinding]

    def public(self) -> dict[str, Any]:
        return {**week_item(self.week, self.findings),
                "findings": [f.public() for f in self.findings]}  # fmt: skip


def week_item(week: ReportWeek, findings: list[ReviewedFinding]) -> dict[str, Any]:
    """A week as listings show it: its sign-off, and how many findings are still open."""
    data = week.public()
    data["findings_total"] = len(findings)
    data["findings_open"] = sum(1 for f in findings if f.state == "open")
    return data


def weeks(reviews: Reviews) -> list[dict[str, Any]]:
    """Every built week, newest first."""
    store = reviews.store
    return [week_item(w, store.report_findings(w.week)) for w in reversed(store.report_weeks())]


def week_findings(reviews: Reviews, week: str, state: str | None = None) -> WeekFindings:
    """A week (`2026-W47` or a date in it; NotFound when it was never built) and its findings."""
    built = reviews.store.report_week(reviews.label(week))
    return WeekFindings(built, reviews.store.report_findings(built.week, state=state))


def review(reviews: Reviews, identity: Identity, week: str, finding: str, *, reviewer: str,
           verdict: str, note: str, code: str | None, via: str) -> ReviewedFinding:  # fmt: skip
    """Mark one finding ok or flag, by `reviewer`, proven by their TOTP code first when one
    is asked for (code None: the caller proved them already, as a console sign-in did)."""
    label = reviews.label(week)  # a typo costs no code
    if code is not None:
        identity.require_totp(reviewer, code, via)
    return reviews.review(label, finding, reviewer, verdict, note)


def sign(reviews: Reviews, identity: Identity, week: str, signer: str, *, code: str | None,
         via: str) -> ReportWeek:  # fmt: skip
    """Sign a fully reviewed week, by `signer` proven with a fresh TOTP code first (None: the
    caller proved them already, as the CLI's --as does)."""
    label = reviews.label(week)
    if code is not None:
        identity.require_totp(signer, code, via)
    return reviews.sign(label, signer)
