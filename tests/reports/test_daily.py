"""Daily flags under the weekly review, on a real store, a fake clock and the real webhook path:
each high finding sent on its day once (across checks and restarts), a day missed while down
caught up, low findings not sent, failures sent or audited, the week's review under the same id."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bastion.audit import (
    ChainKey,
    CommandLine,
    DayChecked,
    Event,
    NewGrant,
    QueryEnd,
    QueryStart,
    Store,
)
from bastion.config import load_config
from bastion.core import Core
from bastion.errors import BastionError
from bastion.notify import Notifier
from bastion.reports import daily
from bastion.reports.daily import DailyFlags, days_to_check
from bastion.reports.facts import Facts
from bastion.reports.gather import gather
from bastion.reports.model import Finding, Verification
from bastion.reports.schedule import ReportScheduler
from bastion.reports.week import week_of, zone
from tests.harness import Bastion
from tests.realssh import free_port
from tests.reports.packs import Builder, events

TZ = "Europe/Amsterdam"
SECRET = "PGPASSWORD=Zq8-s3cret-Xv"  # typed into a command: must never reach the webhook


@dataclass
class Hook:
    """A local webhook receiver that answers with the statuses it is given, then 200."""

    port: int
    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.raw.append(body)
        self.received.append(json.loads(body))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    def flags(self) -> list[dict[str, Any]]:
        return [p for p in self.received if p["event"] == "report.flag"]


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook(free_port())
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    yield receiver
    await runner.cleanup()


@pytest.fixture
def bastions() -> Iterator[list[Bastion]]:
    made: list[Bastion] = []
    yield made
    for b in made:
        b.release()


class Day:
    """A bastion home whose fake clock is moved to local times on the days after its birth."""

    def __init__(self, bastions: list[Bastion], tmp_path: Path, url: str, extra: str = "") -> None:
        notify = f'\n[notify]\nwebhook_url = "{url}"\nretries = 2\nretry_after = "2s"\n'
        config = f'\n[reports]\ntimezone = "{TZ}"\n{extra}' + notify
        self.b = b = Bastion(tmp_path / f"bastion{len(bastions)}", config)
        bastions.append(b)
        b.add_user("alice", key=False)
        b.add_user("bob", key=False)
        for name, kind in [("web-1", "ssh"), ("db-1", "postgres")]:
            b.store.add_target(name=name, kind=kind, host="127.0.0.1", port=22, login="x",
                               database=None, secret_sealed=b"x", actor="test")  # fmt: skip
        self.first = b.clock.now().astimezone(zone(TZ)).date() + timedelta(days=1)

    def at(self, day: int, hour: int, minute: int = 0) -> datetime:
        local = datetime.combine(self.first + timedelta(days=day), time(hour, minute))
        return local.replace(tzinfo=zone(TZ)).astimezone(UTC)

    def when(self, day: int, hour: int, minute: int = 0) -> None:
        self.b.clock.set(self.at(day, hour, minute))

    def break_glass(self, day: int, hour: int) -> int:
        self.when(day, hour)
        start = self.at(day, hour)
        new = NewGrant(target="web-1", mode="write", starts_at=start,
                       ends_at=start + timedelta(hours=30), reason="pager: web-1 is down",
                       actor="alice", user="alice", break_glass=True)  # fmt: skip
        return self.b.store.add_grant(new).id

    def grant(self, user: str, target: str, day: int, hour: int) -> int:
        self.when(day, hour)
        start = self.at(day, hour)
        new = NewGrant(target=target, mode="write", starts_at=start,
                       ends_at=start + timedelta(hours=8), reason="CHG-12 planned migration",
                       actor="carol", user=user)  # fmt: skip
        return self.b.store.add_grant(new).id

    def session(self, sid: str, user: str, target: str, grant: int, day: int, *, hour: int) -> None:
        self.when(day, hour)
        self.b.store.open_session(session_id=sid, user=user, target=target, grant_id=grant,
                                  protocol="ssh" if target == "web-1" else "postgres",
                                  client_addr="10.0.0.5:50000")  # fmt: skip
        self.when(day, hour, 30)
        self.b.store.close_session(sid, "closed", "done")

    def statement(self, sid: str, user: str, moment: datetime, sql: str, *, tag: str,
                  refused: str | None = None) -> None:  # fmt: skip
        key = f"{sid}-{moment.timestamp()}"
        self.b.store.write_batch([
            QueryStart(key, sid, user, "db-1", moment, "simple", sql, kind=tag,
                       refused=refused),
            QueryEnd(key, sid, user, "db-1", moment, 0, tag, None, 1000),
        ])  # fmt: skip

    async def check(self, flags: DailyFlags | None = None) -> list[str]:
        return await (flags or DailyFlags(self.b.core)).check()

    async def deliver(self) -> int:
        async with aiohttp.ClientSession() as http:
            return await Notifier(self.b.core).deliver_due(http)

    def restarted(self) -> Core:
        """A new core on the store opened again, as `bastion serve` would after a restart."""
        b = self.b
        store = Store.open(b.config.paths.store, b.clock, ChainKey.of(b.box))
        return Core(b.config, store, b.box, b.clock)


def flagged(b: Bastion) -> list[dict[str, Any]]:
    return [e["detail"] for e in events(b, "report.flagged")]


# -- which days (pure) ---------------------------------------------------------------------


def test_the_days_read_are_those_after_the_last_whole_one_through_today() -> None:
    today = date(2026, 11, 20)
    assert days_to_check(today, [], 56) == [today]
    part = [DayChecked("2026-11-17", "x", False, 0)]
    assert days_to_check(today, part, 56)[0] == date(2026, 11, 17)
    whole = [DayChecked("2026-11-17", "x", True, 0), DayChecked("2026-11-18", "x", False, 0)]
    assert days_to_check(today, whole, 56) == [date(2026, 11, d) for d in (18, 19, 20)]
    assert days_to_check(today, part, 2) == [date(2026, 11, 19), today]


# -- the checks ------------------------------------------------------------------------------


async def test_break_glass_at_ten_is_flagged_that_day_once_and_the_week_shows_the_same_id(
    bastions: list[Bastion], tmp_path: Path, hook: Hook
) -> None:
    d = Day(bastions, tmp_path, hook.url)
    d.when(0, 8)
    flags = DailyFlags(d.b.core)
    assert await d.check(flags) == []
    glass = d.break_glass(0, 10)
    d.session("s-glass", "alice", "web-1", glass, 0, hour=10)
    d.when(0, 10, 45)
    [sent] = await d.check(flags)
    assert await d.deliver() == 1
    [payload] = hook.flags()
    assert payload["finding"] == sent and payload["rule"] == "break_glass"
    assert payload["severity"] == "high" and payload["day"] == d.first.isoformat()
    assert {"kind": "grant", "ref": str(glass), "session": None} in payload["evidence"]
    assert "bastion replay s-glass" in payload["text"] and sent in payload["text"]
    assert "pager" not in payload["text"]  # the reason (free text) stays in the review
    d.when(0, 11)
    assert await d.check(flags) == []  # the next check: not again
    d.session("s-glass2", "alice", "web-1", glass, 1, hour=9)  # more evidence the next day
    d.when(1, 9, 45)
    again = d.restarted()
    try:
        assert await d.check(DailyFlags(again)) == []  # restarted: not again
    finally:
        again.shutdown()
    assert await d.deliver() == 0 and len(hook.flags()) == 1
    [row] = d.b.store.daily_flags()
    assert row["finding_id"] == sent and row["notification_id"] is not None
    assert [f["finding"] for f in flagged(d.b)] == [sent]
    # the week's review, read after the week, shows the same finding under the same id
    week = week_of(d.first, TZ)
    d.b.clock.set(week.end + timedelta(hours=6))
    report = gather(d.b.store, d.b.config, week, now=d.b.clock.now(),
                    verification=Verification("intact", 0))  # fmt: skip
    [glass_finding] = [f for f in report.findings if f.rule == "break_glass"]
    assert glass_finding.id == sent
    assert {e.ref for e in glass_finding.evidence} >= {str(glass), "s-glass", "s-glass2"}


async def test_a_day_missed_while_down_is_caught_up(
    bastions: list[Bastion], tmp_path: Path, hook: Hook
) -> None:
    d = Day(bastions, tmp_path, hook.url)
    d.when(0, 9)
    assert await d.check() == []  # serving on day 0, then down until day 2
    g = d.grant("bob", "db-1", 1, 9)
    d.session("s-db", "bob", "db-1", g, 1, hour=10)
    d.statement("s-db", "bob", d.at(1, 10, 5), "DROP TABLE invoices", tag="DROP TABLE")
    d.when(1, 14)
    d.b.store.append_events([Event("user.locked", "ssh", "alice", "high")])
    d.when(2, 8)
    core = d.restarted()
    try:
        sent = await d.check(DailyFlags(core))
    finally:
        core.shutdown()
    assert len(sent) == 2
    assert {f["rule"] for f in flagged(d.b)} == {"destructive_statement", "lockout"}
    assert {f["day"] for f in flagged(d.b)} == {(d.first + timedelta(days=1)).isoformat()}
    checks = {c.day: c.complete for c in d.b.store.daily_checks()}
    assert checks == {d.first.isoformat(): True, (d.first + timedelta(days=1)).isoformat(): True,
                      (d.first + timedelta(days=2)).isoformat(): False}  # fmt: skip
    assert await d.deliver() == 2
    assert {p["rule"] for p in hook.flags()} == {"destructive_statement", "lockout"}


async def test_low_and_medium_findings_are_not_flagged(
    bastions: list[Bastion], tmp_path: Path, hook: Hook
) -> None:
    """A refused DROP (medium), a burst of failed logins (medium), sudo (medium) and an
    unused grant (low) wait for the weekly review."""
    d = Day(bastions, tmp_path, hook.url)
    g = d.grant("bob", "db-1", 0, 9)
    d.grant("alice", "web-1", 0, 9)  # never used
    d.session("s-db", "bob", "db-1", g, 0, hour=10)
    d.statement("s-db", "bob", d.at(0, 10, 5), "DROP TABLE invoices", tag="DROP TABLE",
                refused="read-only grant")  # fmt: skip
    d.when(0, 11)
    d.b.store.append_events([Event("auth.totp_failed", "ssh", "alice", "notice")] * 6)
    d.b.store.log_commands("s-db", [CommandLine(d.at(0, 10, 6), 0, "sudo ls /root")])
    d.when(1, 9)  # the day is read whole, then today
    assert await d.check() == []
    assert d.b.store.daily_flags() == [] and flagged(d.b) == []
    assert await d.deliver() == 0 and hook.flags() == []


async def test_the_webhook_carries_ids_and_replay_never_what_was_typed(
    bastions: list[Bastion], tmp_path: Path, hook: Hook
) -> None:
    d = Day(bastions, tmp_path, hook.url)
    g = d.grant("alice", "web-1", 0, 9)
    d.session("s-web", "alice", "web-1", g, 0, hour=10)
    d.b.store.log_commands("s-web", [CommandLine(d.at(0, 10, 5), 0, f"{SECRET} rm -rf /srv")])
    d.when(0, 12)
    [sent] = await d.check()
    await d.deliver()
    [payload] = hook.flags()
    assert payload["rule"] == "destructive_command" and payload["finding"] == sent
    assert payload["replay"] == ["bastion replay s-web --from 300"]
    assert all(SECRET.encode() not in body for body in hook.raw)
    assert SECRET not in json.dumps(flagged(d.b))


async def test_a_failed_post_of_a_flag_is_retried_and_each_failure_audited(
    bastions: list[Bastion], tmp_path: Path, hook: Hook
) -> None:
    d = Day(bastions, tmp_path, hook.url)
    hook.statuses = [500]
    d.break_glass(0, 10)
    d.when(0, 11)
    [sent] = await d.check()
    assert await d.deliver() == 0
    [failure] = events(d.b, "report.flag_failed")
    assert failure["subject"] == sent
    assert failure["detail"]["attempt"] == 1 and failure["detail"]["error"] == "HTTP 500"
    d.b.clock.advance(timedelta(seconds=2))
    assert await d.deliver() == 1
    assert [p["finding"] for p in hook.flags()] == [sent, sent]


async def test_a_failing_rule_is_flagged_once_a_day(
    bastions: list[Bastion], tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lockouts_broken(facts: Facts, config: object) -> list[Finding]:
        raise KeyError("subject")

    monkeypatch.setattr(daily, "DAILY_RULES", (*daily.DAILY_RULES[:2], lockouts_broken))
    d = Day(bastions, tmp_path, hook.url)
    d.when(0, 9)
    [first] = await d.check()
    d.when(0, 10)
    assert await d.check() == []
    d.when(1, 9)
    [second] = await d.check()  # the next day: said again
    assert first != second
    await d.deliver()
    assert [p["rule"] for p in hook.flags()] == ["rule_failed", "rule_failed"]
    assert "lockouts_broken" in json.dumps(flagged(d.b))


async def test_a_query_log_edited_that_day_is_flagged_when_the_day_is_read_whole(
    bastions: list[Bastion], tmp_path: Path, hook: Hook
) -> None:
    d = Day(bastions, tmp_path, hook.url)
    g = d.grant("bob", "db-1", 0, 9)
    d.session("s-db", "bob", "db-1", g, 0, hour=10)
    d.statement("s-db", "bob", d.at(0, 10, 5), "SELECT 1", tag="SELECT 1")
    with sqlite3.connect(d.b.config.paths.store) as db:  # an admin with the files
        db.execute("DELETE FROM queries WHERE sql = 'SELECT 1'")
    d.when(0, 23)
    assert await d.check() == []  # the day is not over: recordings and log wait for it
    d.when(1, 0, 20)
    [sent] = await d.check()
    await d.deliver()
    [payload] = hook.flags()
    assert payload["rule"] == "verification_failed" and payload["finding"] == sent


async def test_the_scheduler_loop_runs_the_daily_check(
    bastions: list[Bastion], tmp_path: Path, hook: Hook
) -> None:
    d = Day(bastions, tmp_path, hook.url, 'flag_every = "30m"\n')
    d.break_glass(0, 10)
    d.when(0, 10, 5)
    scheduler = ReportScheduler(d.b.core, Builder(d.b), look_every=3600)
    await scheduler.tick()
    assert len(flagged(d.b)) == 1
    assert await scheduler.wait() == 1800.0
    await scheduler.tick()  # not due: no read
    d.b.clock.advance(timedelta(minutes=30))
    await scheduler.tick()
    assert len(flagged(d.b)) == 1
    assert {c.day for c in d.b.store.daily_checks()} == {d.first.isoformat()}


async def test_a_flood_of_high_findings_cannot_bury_a_break_glass(
    bastions: list[Bastion], tmp_path: Path, hook: Hook
) -> None:
    """An insider who runs 25 DROPs, then opens break-glass: the break-glass is sent first,
    the day's webhook messages stop at MAX_NOTICES, and one more says how many were left;
    every finding is still recorded and audited."""
    d = Day(bastions, tmp_path, hook.url)
    g = d.grant("bob", "db-1", 0, 9)
    d.session("s-db", "bob", "db-1", g, 0, hour=10)
    for n in range(25):
        d.statement("s-db", "bob", d.at(0, 10, n + 1), f"DROP TABLE t{n}", tag="DROP TABLE")
    glass = d.break_glass(0, 11)
    d.when(0, 12)
    assert len(await d.check()) == 26
    while await d.deliver():
        pass
    sent = hook.flags()
    assert len(sent) == daily.MAX_NOTICES + 1
    assert sent[0]["rule"] == "break_glass"
    assert {"kind": "grant", "ref": str(glass), "session": None} in sent[0]["evidence"]
    [more] = [p for p in sent if "count" in p]
    assert more["count"] == 26 - daily.MAX_NOTICES
    assert more["rules"] == {"destructive_statement": 26 - daily.MAX_NOTICES}
    assert len(d.b.store.daily_flags()) == 26 == len(flagged(d.b))
    d.statement("s-db", "bob", d.at(0, 12, 30), "DROP TABLE late", tag="DROP TABLE")
    d.when(0, 13)
    assert len(await d.check()) == 1
    while await d.deliver():
        pass
    [late] = hook.flags()[len(sent) :]
    assert late["count"] == 1  # the day's budget stays spent


def test_a_look_more_often_than_once_a_minute_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text('[reports]\nflag_every = "10s"\n', encoding="utf-8")
    with pytest.raises(BastionError, match="flag_every"):
        load_config(path)
