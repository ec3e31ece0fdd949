"""Daily flags under the weekly review: each day's high findings sent on that day, once.

`bastion serve` reads the local day so far (in [reports] timezone) every [reports]
flag_every, runs the rules whose findings must not wait a week (break-glass, destructive
commands and statements, lockouts) and sends each new high-severity finding through the
notifications' outbox (the webhook, its retries, its audit events). The store remembers each
finding sent by its stable id, and how far each day was read, so:

- a finding is sent once, whatever the number of checks and restarts;
- a day the bastion was down for is read when it comes back (at most catch_up_weeks back);
- the weekly review shows the same finding under the same id.

A day is read whole once more after it ended (plus GRACE, for rows written late); that last
read also checks the day's recordings and query log, so a failed verification is flagged the
day after at the latest. A check reads one day, never the week. A rule that fails is itself a
high finding of that day (sent once per day), never a silent gap.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import structlog

from bastion.audit import DayChecked, Flag, Notice, Store
from bastion.audit.outbox import FLAG_NOTICE
from bastion.config import Config
from bastion.core import Core
from bastion.identity.sealing import SecretBox
from bastion.recording.fetch import Fetcher
from bastion.reports import findings as person_rules
from bastion.reports import findings_access as access_rules
from bastion.reports.facts import Facts, collect
from bastion.reports.findings import Rule
from bastion.reports.gather import verification_findings
from bastion.reports.model import Evidence, Finding, Verification
from bastion.reports.querycheck import query_log_problem
from bastion.reports.recordcheck import recording_problems
from bastion.reports.sessioncheck import session_log_problem
from bastion.reports.week import Week, zone

log = structlog.get_logger("bastion.reports")

# Rules whose findings rest on one thing each (a grant, a command, a statement, an event), so
# a day's finding has the id the week's will have. Their high findings are flagged.
DAILY_RULES: tuple[Rule, ...] = (
    person_rules.break_glass,
    person_rules.destructive,
    access_rules.failed_logins,
)
GRACE = timedelta(minutes=10)  # a day is read whole this long after it ended
FLAGGED_SEVERITIES = ("high",)
MAX_NOTICES = 20  # webhook messages a day; beyond, one says how many more (and of what)
_FIRST = ("break_glass", "verification_failed", "rule_failed", "lockout")  # sent before others
_MAX_REFS = 10  # evidence ids named in one notification


def day_period(day: date, timezone: str) -> Week:
    """One local day as a period the facts are read over (label: the ISO date)."""
    tz = zone(timezone)
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return Week(day.isoformat(), day, timezone, start, end)


def days_to_check(today: date, checks: Sequence[DayChecked], bound: int) -> list[date]:
    """The days to read now, oldest first: each after the last one read whole (else from the
    first one ever read, else today) through today, at most `bound` days."""
    whole = [c.day for c in checks if c.complete]
    if whole:
        first = date.fromisoformat(max(whole)) + timedelta(days=1)
    elif checks:
        first = date.fromisoformat(min(c.day for c in checks))
    else:
        first = today
    first = max(first, today - timedelta(days=bound - 1))
    return [first + timedelta(days=i) for i in range((today - first).days + 1)]


def day_findings(facts: Facts, config: Config) -> list[Finding]:
    """The daily rules' findings over one day; a rule that fails is a high finding of its
    own, one per rule and day."""
    found: list[Finding] = []
    for rule in DAILY_RULES:
        try:
            found += rule(facts, config)
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"[:300]
            where = f"{rule.__name__}@{facts.week.label}"  # one finding per rule and day
            log.error("report.daily_rule_failed", rule=rule.__name__, error=what)
            found.append(Finding(
                "rule_failed", "high", f"the review rule {rule.__name__} failed: {what}",
                "Report the bug; check by hand what this rule looks for on this day.",
                (Evidence("report", where, None, what),)))  # fmt: skip
    return found


def verify_day(
    store: Store, box: SecretBox, day: Week, fetcher: Fetcher | None = None
) -> Verification:
    """The day's query log and sessions against the chain, and each recording of the day's sessions
    against the hash its chained session.closed event holds."""
    problem = query_log_problem(store, day) or session_log_problem(store, day)
    checked, failed = recording_problems(store, box, day, store.chain_head()[0], fetcher)
    return Verification(problem or "intact", checked, failed)


def flag_notice(finding: Finding, day: str) -> Notice:
    """The webhook message: the rule, the ids and counts, the replay command; never the text
    of a command, statement or reason (they may hold what an engineer typed)."""
    refs = [f"{e.kind} {e.ref}" for e in finding.evidence[:_MAX_REFS]]
    more = len(finding.evidence) - len(refs)
    replays = sorted({e.replay for e in finding.evidence if e.replay})[:3]
    text = (f"bastion: {finding.severity} finding {finding.id} on {day}: {finding.rule}"
            + (f" ({finding.subject})" if finding.subject else "")
            + f"; evidence: {', '.join(refs)}" + (f" and {more} more" if more > 0 else "")
            + "".join(f"; {r}" for r in replays)
            + "; it is in this week's review: bastion report findings WEEK")  # fmt: skip
    body: dict[str, object] = {
        "text": text, "event": FLAG_NOTICE, "severity": finding.severity, "day": day,
        "rule": finding.rule, "finding": finding.id, "subject": finding.subject,
        "evidence": [{"kind": e.kind, "ref": e.ref, "session": e.session}
                     for e in finding.evidence[:_MAX_REFS]],
        "evidence_count": len(finding.evidence), "replay": replays,
    }  # fmt: skip
    return Notice(FLAG_NOTICE, finding.severity, body)


def overflow_notice(day: str, rules: Counter[str]) -> Notice:
    """One message for the findings past MAX_NOTICES: how many, of which rules."""
    count = sum(rules.values())
    kinds = ", ".join(f"{rule}: {n}" for rule, n in sorted(rules.items()))
    body: dict[str, object] = {
        "text": f"bastion: {count} more high findings on {day} ({kinds}), not sent one by one;"
        " each is in this week's review: bastion report findings WEEK",
        "event": FLAG_NOTICE, "severity": "high", "day": day, "finding": f"more@{day}",
        "count": count, "rules": dict(sorted(rules.items())),
    }  # fmt: skip
    return Notice(FLAG_NOTICE, "high", body)


def plan(
    found: list[Finding], day: str, known: set[str], room: int
) -> tuple[list[Flag], Notice | None]:
    """The flags to record for new high findings, the most urgent first: the first `room`
    with their own webhook message, the rest in one overflow message (room < 0: no webhook)."""
    new = [f for f in _unique(found) if f.severity in FLAGGED_SEVERITIES and f.id not in known]
    new.sort(key=lambda f: _FIRST.index(f.rule) if f.rule in _FIRST else len(_FIRST))
    flags = [to_flag(f, day, 0 <= i < room) for i, f in enumerate(new)]
    rest = Counter(f.rule for f in new[max(room, 0) :])
    return flags, overflow_notice(day, rest) if room >= 0 and rest else None


def to_flag(finding: Finding, day: str, webhook: bool) -> Flag:
    detail = {"evidence": [f"{e.kind}:{e.ref}" for e in finding.evidence[:_MAX_REFS]],
              "evidence_count": len(finding.evidence), "subject": finding.subject}  # fmt: skip
    notice = flag_notice(finding, day) if webhook else None
    return Flag(finding.id, finding.rule, finding.severity, detail, notice)


class DailyFlags:
    """The daily check, one look at a time; ReportScheduler calls it from its loop."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.store = core.store
        self.policy = core.config.reports
        self.next_at: datetime | None = None  # None: look at once (as serve starts)

    def due(self, now: datetime) -> bool:
        return self.next_at is None or self.next_at <= now

    async def check(self) -> list[str]:
        """Read every day owed (the missed ones, then today) and send what is new; returns
        the finding ids sent by this check."""
        now = self.core.clock.now()
        self.next_at = now + self.policy.flag_every
        today = now.astimezone(zone(self.policy.timezone)).date()
        checks = await self.core.run(self.store.daily_checks)
        sent: list[str] = []
        for day in days_to_check(today, checks, self.policy.catch_up_weeks * 7):
            sent += await self.check_day(day_period(day, self.policy.timezone), now)
        return sent

    async def check_day(self, day: Week, now: datetime) -> list[str]:
        whole = now >= day.end + GRACE
        # in a worker thread, as the weekly build is: the store's own thread (the doors')
        # waits only for each query, not for the judging of the day's statements
        facts = await asyncio.to_thread(collect, self.store, day, now)
        found = day_findings(facts, self.core.config)
        if whole:  # once a day, when it is over: its recordings and query log
            with Fetcher(self.core.config) as fetcher:  # recordings uploaded to S3 too
                verdict = await asyncio.to_thread(
                    verify_day, self.store, self.core.box, day, fetcher
                )
            found += verification_findings(verdict)
        webhook = bool(self.core.config.notify.webhook_url)
        earlier = await self.core.run(self.store.daily_flags, day.label)
        room = MAX_NOTICES - sum(1 for r in earlier if r["notification_id"]) if webhook else -1
        known = await self.core.run(self.store.daily_flagged, [f.id for f in found])
        flags, more = plan(found, day.label, known, room)
        sent = await self.core.run(self.store.daily_checked, day.label, min(now, day.end),
                                   whole, flags, more)  # fmt: skip
        for finding_id in sent:
            log.warning("report.flagged", day=day.label, finding=finding_id, webhook=webhook)
        return sent


def _unique(found: list[Finding]) -> list[Finding]:
    seen: dict[str, Finding] = {}
    for finding in found:
        seen.setdefault(finding.id, finding)
    return list(seen.values())
