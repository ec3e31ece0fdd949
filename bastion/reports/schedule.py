"""The weekly review's schedule in `bastion serve`: build last week's pack, then deliver it.

At [reports] build_at, local time in [reports] timezone, on a review week's first day, the
week that just ended is built (by the builder, into paths.reports/<week>/), then mailed and
announced on the webhook. On start every week owed is built at once, oldest first: the latest
due week and, once the scheduler has run before, each unsigned week since its first run that
has no build yet or whose retry is due (at most [reports] catch_up_weeks back), so runs missed
while the bastion was down are caught up. A week that ended before the store existed is never
built. Failed builds and mails are retried with the notifications' backoff and given up after
notify.retries, each failure an audit event. The same loop runs the daily flags
(bastion/reports/daily.py) every [reports] flag_every.

Time comes from the core's clock and waits go through an injectable `sleep`, so tests move a
FakeClock instead of waiting; when to run is decided by pure functions (next_run, due_at).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import structlog

from bastion.audit.report_runs import Built
from bastion.clock import iso
from bastion.core import Core
from bastion.notify import backoff
from bastion.reports.daily import DailyFlags
from bastion.reports.deliver import (
    BuiltReport,
    MailError,
    ReportBuilder,
    SmtpSettings,
    compose,
    one_line,
    ready_notice,
    send_mail,
    spool,
    spool_path,
    unspool,
)
from bastion.reports.week import Week, last_complete_week, week_of, zone

log = structlog.get_logger("bastion.reports")

LOOK_EVERY = 60.0  # longest wait between looks: a clock that jumps is noticed within this
Sleep = Callable[[float], Awaitable[None]]
Sender = Callable[[SmtpSettings, bytes], list[str]]


def parse_build_at(text: str) -> time:
    """[reports] build_at, "HH:MM" on a 24-hour clock; ValueError saying what is wrong."""
    hours, sep, minutes = text.strip().partition(":")
    ok = sep and len(hours) == 2 and len(minutes) == 2 and (hours + minutes).isdigit()
    if not ok or int(hours) > 23 or int(minutes) > 59:
        raise ValueError(f"[reports] build_at: {text!r} is not a time written HH:MM, e.g. 06:00")
    return time(int(hours), int(minutes))


def due_at(week: Week, at: time) -> datetime:
    """When a week's review is due (UTC): `at` local time on the first day after the week.
    A local time skipped by a daylight-saving change counts from before the change (02:30
    on a spring-forward night is 03:30 summer time); a repeated one is its first occurrence."""
    day = week.first_day + timedelta(days=7)
    return datetime.combine(day, at, tzinfo=zone(week.timezone)).astimezone(UTC)


def latest_due_week(now: datetime, timezone: str, week_starts: str, at: time) -> Week:
    """The latest week whose review was due by `now`."""
    last = last_complete_week(now, timezone, week_starts)
    return last if due_at(last, at) <= now else last.previous()


def next_run(now: datetime, timezone: str, week_starts: str, at: time) -> tuple[Week, datetime]:
    """The next week to build after `now`, and when (strictly later than now)."""
    last = last_complete_week(now, timezone, week_starts)
    if due_at(last, at) > now:
        return last, due_at(last, at)
    current = week_of(now.astimezone(zone(timezone)).date(), timezone, week_starts)
    return current, due_at(current, at)


def pack_builder(core: Core) -> ReportBuilder:
    """bastion.reports.build.build_week bound to the core, imported when first called (the
    scheduler then fails closed, audited, if it cannot be)."""

    def build(week: Week) -> BuiltReport:
        module = importlib.import_module("bastion.reports.build")
        built: BuiltReport = module.build_week(core, week)
        return built

    return build


class ReportScheduler:
    """One task in `bastion serve`: builds each week's review when due, then delivers it."""

    def __init__(
        self,
        core: Core,
        build: ReportBuilder,
        *,
        sleep: Sleep = asyncio.sleep,
        send: Sender = send_mail,
        look_every: float = LOOK_EVERY,
    ) -> None:
        self.core = core
        self.store = core.store
        self.policy = core.config.reports
        self.at = parse_build_at(self.policy.build_at)  # ValueError: serve refuses to start
        zone(self.policy.timezone)
        self.smtp = SmtpSettings.of(core.config)
        self.build = build
        self.flags = DailyFlags(core) if self.policy.daily_flags else None
        self._sleep, self._send, self.look_every = sleep, send, look_every

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
                wait = await self.wait()
            except Exception as exc:  # keep going; the store or the network may come back
                log.error("report.loop_failed", error=one_line(str(exc)))
                wait = self.look_every
            await self._sleep(wait)

    async def tick(self) -> None:
        """One look: build every week owed, oldest first, then send the mail that is due,
        then look at the day so far when that is due."""
        for week in await self.owed(self.core.clock.now()):
            await self.build_week(week)
        await self.deliver_due()
        await self.flag_due()

    async def flag_due(self) -> None:
        """The daily flags' look, when due; one that fails is logged and tried again at the
        next look (the weekly review goes on meanwhile)."""
        if self.flags is None or not self.flags.due(self.core.clock.now()):
            return
        try:
            await self.flags.check()
        except Exception as exc:
            log.error("report.flags_failed", error=one_line(f"{type(exc).__name__}: {exc}"))

    async def wait(self) -> float:
        """Seconds until the next build or retry is due, at most look_every."""
        now = self.core.clock.now()
        _, when = next_run(now, self.policy.timezone, self.policy.week_starts, self.at)
        retry = await self.core.run(self.store.report_next_attempt)
        if retry is not None and retry > now:  # one already due is an older week's: not owed
            when = min(when, retry)
        if self.flags is not None and self.flags.next_at is not None:
            when = min(when, self.flags.next_at)
        return min(max((when - now).total_seconds(), 0.0), self.look_every)

    async def owed(self, now: datetime) -> list[Week]:
        """The weeks to build now, oldest first: the latest due week and each earlier one
        since the first run (at most catch_up_weeks in all), unless it ended before the store
        existed, is signed, is built, was given up, or waits for its next try."""
        latest = latest_due_week(now, self.policy.timezone, self.policy.week_starts, self.at)
        born = await self.core.run(self.store.store_born_at)
        runs = {r.week: r for r in await self.core.run(self.store.report_runs)
                if r.channel == "build"}  # fmt: skip
        signed = {w.week for w in await self.core.run(self.store.report_weeks)
                  if w.signed_at is not None}  # fmt: skip
        first = min(runs, default=latest.label)
        weeks: list[Week] = []
        week = latest
        while len(weeks) < self.policy.catch_up_weeks and week.label >= first:
            weeks.append(week)
            week = week.previous()
        owed = []
        for week in reversed(weeks):
            if (born is not None and week.end <= born) or week.label in signed:
                continue
            run = runs.get(week.label)
            due = run is not None and run.next_attempt_at is not None and run.next_attempt_at <= now
            if run is None or (run.state == "pending" and due):
                owed.append(week)
        return owed

    async def build_week(self, week: Week) -> BuiltReport | None:
        """Build one week (in a worker thread), then queue its deliveries."""
        log.info("report.building", week=week.label)
        try:
            built = await asyncio.to_thread(self.build, week)
            if inspect.isawaitable(built):
                built = await built
        except Exception as exc:
            await self._build_failed(week, one_line(f"{type(exc).__name__}: {exc}"))
            return None
        if built.week != week.label:
            await self._build_failed(week, f"the builder made {built.week!r}, not {week.label}")
            return None
        await self._queue(week, built)
        return built

    async def _build_failed(self, week: Week, error: str) -> None:
        run = await self.core.run(self.store.report_run, week.label, "build")
        retry = backoff(self.core.config.notify, run.attempts if run else 0)
        log.error("report.build_failed", week=week.label, error=error, gives_up=retry is None)
        await self.core.run(self.store.report_build_failed, week.label, error, retry)

    async def _queue(self, week: Week, built: BuiltReport) -> None:
        """Spool the mail, queue the webhook message, record the run: one transaction."""
        mail_sha, why, problem = None, self.smtp.missing(), ""
        if not why:
            try:
                message = compose(built, self.smtp, self.core.clock.now()).as_bytes()
                path = spool_path(self.core.config.paths.reports, week.label)
                mail_sha = await asyncio.to_thread(spool, path, message)
            except (ValueError, OSError) as exc:
                why = problem = one_line(f"the mail could not be made: {exc}")
        notice = ready_notice(built) if self.core.config.notify.webhook_url else None
        record = Built(week.label, str(built.directory), built.manifest_sha256, mail_sha, why,
                       notice)  # fmt: skip
        await self.core.run(self.store.report_built, record)
        log.info("report.built", week=week.label, directory=str(built.directory),
                 manifest_sha256=built.manifest_sha256, mail=why or "due")  # fmt: skip
        if problem:
            log.error("report.mail_failed", week=week.label, error=problem, gives_up=True)
            await self.core.run(self.store.report_delivery_failed, week.label, "mail", problem,
                                None, "warning")  # fmt: skip

    async def deliver_due(self) -> int:
        """Send every mail whose try is due; returns how many were accepted."""
        sent = 0
        for run in await self.core.run(self.store.report_mail_due):
            try:
                path = spool_path(self.core.config.paths.reports, run.week)
                data = await asyncio.to_thread(unspool, path, run.payload_sha256)
                refused = await asyncio.to_thread(self._send, self.smtp, data)
            except MailError as exc:
                retry = None if exc.final else backoff(self.core.config.notify, run.attempts)
                log.warning("report.mail_failed", week=run.week, error=str(exc),
                            attempt=run.attempts + 1, gives_up=retry is None)  # fmt: skip
                await self.core.run(self.store.report_delivery_failed, run.week, "mail",
                                    str(exc), retry, exc.severity)  # fmt: skip
                continue
            accepted = [r for r in self.smtp.recipients if r not in refused]
            detail = {"to": accepted, "refused": refused, "manifest_sha256": run.manifest_sha256,
                      "at": iso(self.core.clock.now())}  # fmt: skip
            await self.core.run(self.store.report_delivered, run.week, "mail", detail)
            log.info("report.mailed", week=run.week, refused=refused)
            with contextlib.suppress(OSError):
                Path(path).unlink()
            sent += 1
        return sent
