"""When the weekly review is built: due times across timezones and daylight saving (pure), the
loop driven by a fake clock, the catch-up of a run missed while down, failed builds retried
then given up, and the report.ready webhook message (which holds none of the report)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bastion.notify import Notifier
from bastion.reports.schedule import (
    ReportScheduler,
    due_at,
    latest_due_week,
    next_run,
    pack_builder,
    parse_build_at,
)
from bastion.reports.week import parse_week, week_of, zone
from bastion.server import ServeError, Server
from tests.harness import Bastion
from tests.realssh import free_port
from tests.reports.packs import CSVS, Builder, events, first_week

SIX = time(6, 0)
REPORTS = '\n[reports]\ntimezone = "Europe/Amsterdam"\nbuild_at = "06:00"\n'


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# -- when (pure) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "timezone", "starts", "at", "expected"),
    [
        ("2026-W47", "UTC", "monday", SIX, utc(2026, 11, 23, 6)),
        ("2026-W47", "Europe/Amsterdam", "monday", SIX, utc(2026, 11, 23, 5)),  # CET
        ("2026-W27", "Europe/Amsterdam", "monday", SIX, utc(2026, 7, 6, 4)),  # CEST
        ("2026-W47", "Asia/Kolkata", "monday", SIX, utc(2026, 11, 23, 0, 30)),
        ("2026-W47", "Pacific/Kiritimati", "monday", SIX, utc(2026, 11, 22, 16)),  # +14
        ("2026-W47", "America/Los_Angeles", "monday", SIX, utc(2026, 11, 23, 14)),
        # clocks spring forward at 02:00 on Sunday 8 March in New York: 02:30 does not exist
        # and counts from before the change (03:30 EDT)
        ("2026-W10", "America/New_York", "sunday", time(2, 30), utc(2026, 3, 8, 7, 30)),
        # clocks fall back at 02:00 on Sunday 1 November: 01:30 happens twice; the first counts
        ("2026-W44", "America/New_York", "sunday", time(1, 30), utc(2026, 11, 1, 5, 30)),
    ],
)
def test_a_week_is_due_at_build_at_local_time_on_the_next_first_day(
    label: str, timezone: str, starts: str, at: time, expected: datetime
) -> None:
    assert due_at(parse_week(label, timezone, starts), at) == expected


def test_the_next_run_is_the_next_first_day_at_build_at_in_local_time() -> None:
    tz = "Europe/Amsterdam"
    week, when = next_run(utc(2026, 11, 23, 4, 59), tz, "monday", SIX)  # 05:59 local
    assert (week.label, when) == ("2026-W47", utc(2026, 11, 23, 5))
    week, when = next_run(utc(2026, 11, 23, 5), tz, "monday", SIX)  # due now: the next one
    assert (week.label, when) == ("2026-W48", utc(2026, 11, 30, 5))
    week, when = next_run(utc(2026, 11, 22, 23, 30), tz, "monday", SIX)  # Monday 00:30 local
    assert (week.label, when) == ("2026-W47", utc(2026, 11, 23, 5))
    # across the spring change the next run is 167 hours later, still at 06:00 local
    week, when = next_run(utc(2026, 3, 23, 5), tz, "monday", SIX)
    assert (week.label, when) == ("2026-W13", utc(2026, 3, 30, 4))
    week, when = next_run(utc(2026, 11, 21, 12), "UTC", "sunday", SIX)  # Saturday
    assert (week.label, when) == ("2026-W47", utc(2026, 11, 22, 6))
    assert week.first_day.isoweekday() == 7


def test_the_latest_due_week_is_the_one_before_last_until_build_at() -> None:
    tz = "Europe/Amsterdam"
    assert latest_due_week(utc(2026, 11, 23, 2), tz, "monday", SIX).label == "2026-W46"
    assert latest_due_week(utc(2026, 11, 23, 5), tz, "monday", SIX).label == "2026-W47"


@pytest.mark.parametrize("text", ["6:00", "06:60", "24:00", "0600", "06:00pm", "", "aa:bb"])
def test_a_build_time_that_is_not_hh_mm_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="build_at"):
        parse_build_at(text)


# -- the loop ----------------------------------------------------------------------------------


class Stop(Exception):
    """Ends a scheduler loop from its (fake) sleep."""


@pytest.fixture
def bastions(tmp_path: Path) -> Iterator[list[Bastion]]:
    made: list[Bastion] = []
    yield made
    for b in made:
        b.release()


def make(bastions: list[Bastion], tmp_path: Path, extra: str = "") -> Bastion:
    b = Bastion(tmp_path / f"bastion{len(bastions)}", REPORTS + extra)
    bastions.append(b)
    return b


async def test_the_loop_builds_each_week_at_build_at_and_only_once(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    b = make(bastions, tmp_path, "daily_flags = false\n")  # only the weekly looks here
    born = b.clock.now()
    week = week_of(born.astimezone(zone("Europe/Amsterdam")).date(), "Europe/Amsterdam")
    following = week_of(week.first_day + timedelta(days=7), "Europe/Amsterdam")
    stop_at = due_at(following, SIX) + timedelta(days=1)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        b.clock.advance(seconds)
        if b.clock.now() >= stop_at:
            raise Stop
        await asyncio.sleep(0)

    builder = Builder(b)
    scheduler = ReportScheduler(b.core, builder, sleep=sleep, look_every=3 * 86400)
    with pytest.raises(Stop):
        await scheduler.run()
    # nothing before the store existed; then each week exactly when due, local 06:00
    assert builder.calls == [(week.label, due_at(week, SIX)),
                             (following.label, due_at(following, SIX))]  # fmt: skip
    assert len(waits) < 12 and all(w > 0 for w in waits)
    assert [r.channel for r in b.store.report_runs(week.label)] == ["build", "mail", "webhook"]
    assert {r.state for r in b.store.report_runs()} == {"done", "skipped"}
    assert [e["subject"] for e in events(b, "report.built")] == [week.label, following.label]


async def test_the_loop_keeps_local_time_across_the_spring_change(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    """Weeks around the last Sunday of March (Amsterdam): each built Monday 06:00 local, which
    is 05:00 UTC before the change and 04:00 after; the week owed at start is built at once."""
    b = make(bastions, tmp_path, "daily_flags = false\n")
    year = b.clock.now().year + 1
    start, stop_at = utc(year, 3, 17, 12), utc(year, 4, 8)
    b.clock.set(start)

    async def sleep(seconds: float) -> None:
        b.clock.advance(seconds)
        if b.clock.now() >= stop_at:
            raise Stop
        await asyncio.sleep(0)

    builder = Builder(b)
    with pytest.raises(Stop):
        await ReportScheduler(b.core, builder, sleep=sleep, look_every=86400).run()
    (first, at_start), *scheduled = builder.calls
    assert at_start == start and len(scheduled) == 3
    amsterdam = zone("Europe/Amsterdam")
    for _, at in scheduled:
        local = at.astimezone(amsterdam)
        assert (local.isoweekday(), local.hour, local.minute) == (1, 6, 0)
    hours = [at.hour for _, at in scheduled]  # [5, 4, 4] in 2027
    assert set(hours) == {5, 4} and hours == sorted(hours, reverse=True)
    labels = [first] + [label for label, _ in scheduled]
    assert len(set(labels)) == 4


async def test_a_run_missed_while_down_is_caught_up_on_start(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    b = make(bastions, tmp_path)
    week = first_week(b)
    b.clock.advance(timedelta(days=2))  # the bastion was down on Monday morning

    async def sleep(seconds: float) -> None:
        raise Stop

    builder = Builder(b)
    with pytest.raises(Stop):
        await ReportScheduler(b.core, builder, sleep=sleep).run()
    assert builder.calls == [(week.label, b.clock.now())]  # at once, before any wait
    run = b.store.report_run(week.label, "build")
    assert run is not None and run.state == "done"
    assert run.directory == str(b.config.paths.reports / week.label)
    await ReportScheduler(b.core, builder).tick()  # started again: nothing owed
    assert len(builder.calls) == 1


async def test_the_week_before_last_is_caught_up_before_this_weeks_build_time(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    """Down from before last Monday 06:00 to this Monday 04:00 local: last Monday's run is
    owed now; last week's comes at 06:00."""
    b = make(bastions, tmp_path)
    week = first_week(b)
    b.clock.set(due_at(week, SIX) + timedelta(days=7, hours=-2))
    builder = Builder(b)
    await ReportScheduler(b.core, builder).tick()
    assert [label for label, _ in builder.calls] == [week.label]


async def test_the_real_builder_builds_the_week_the_store_was_born_in(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    """No event comes before that week: its pack's start head is the chain's genesis, not an
    empty MAC the pack refuses (which made every new bastion's first review fail)."""
    b = make(bastions, tmp_path)
    week = first_week(b)
    await ReportScheduler(b.core, pack_builder(b.core)).tick()
    assert events(b, "report.build_failed") == []
    run = b.store.report_run(week.label, "build")
    assert run is not None and run.state == "done" and run.attempts == 1
    manifest = json.loads((b.config.paths.reports / week.label / "manifest.json").read_text())
    assert manifest["chain"]["start"]["seq"] == 0


async def test_no_week_that_ended_before_the_store_existed_is_built(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    b = make(bastions, tmp_path)
    builder = Builder(b)
    await ReportScheduler(b.core, builder).tick()
    assert builder.calls == [] and b.store.report_runs() == []


async def test_a_failing_build_is_retried_with_backoff_then_given_up(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    b = make(bastions, tmp_path, '\n[notify]\nretries = 2\nretry_after = "2s"\n')
    week = first_week(b)
    builder = Builder(b, failures=10)
    scheduler = ReportScheduler(b.core, builder)
    await scheduler.tick()
    await scheduler.tick()  # not due again yet
    assert len(builder.calls) == 1
    assert await scheduler.wait() == 2.0
    for wait in (2, 4):
        b.clock.advance(timedelta(seconds=wait))
        await scheduler.tick()
    b.clock.advance(timedelta(days=1))
    await scheduler.tick()
    assert len(builder.calls) == 3
    failures = events(b, "report.build_failed")
    assert [f["detail"]["attempt"] for f in failures] == [1, 2, 3]
    assert [f["detail"]["gives_up"] for f in failures] == [False, False, True]
    assert failures[-1]["severity"] == "high"
    assert "RuntimeError: the store is busy" in failures[0]["detail"]["error"]
    run = b.store.report_run(week.label, "build")
    assert run is not None and run.state == "failed" and run.attempts == 3


async def test_a_week_left_pending_by_a_newer_one_does_not_spin_the_loop(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    """A build that failed, then the bastion was down past the next week's run: the older
    week's overdue retry is made first, then the newer week is built, and no stale retry
    time makes the loop busy afterwards."""
    b = make(bastions, tmp_path)
    week = first_week(b)
    builder = Builder(b, failures=1)
    scheduler = ReportScheduler(b.core, builder)
    await scheduler.tick()
    b.clock.advance(timedelta(days=8))
    await scheduler.tick()
    (failed, _), (retried, _), (newer, _) = builder.calls
    assert (
        failed == retried == week.label
        and newer == week_of(week.first_day + timedelta(days=7), "Europe/Amsterdam").label
    )
    assert {r.state for r in b.store.report_runs() if r.channel == "build"} == {"done"}
    assert await scheduler.wait() > 0


async def test_every_week_missed_while_down_is_built_oldest_first(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    """Built once, then down for three weeks: the three weeks owed are built at start, oldest
    first, and the one built before is not built again."""
    b = make(bastions, tmp_path)
    week = first_week(b)
    builder = Builder(b)
    await ReportScheduler(b.core, builder).tick()
    b.clock.advance(timedelta(days=21))
    await ReportScheduler(b.core, builder).tick()  # started again
    later = [week_of(week.first_day + timedelta(days=7 * n), "Europe/Amsterdam").label
             for n in (1, 2, 3)]  # fmt: skip
    assert [label for label, _ in builder.calls] == [week.label, *later]
    assert [e["subject"] for e in events(b, "report.built")] == [week.label, *later]
    await ReportScheduler(b.core, builder).tick()
    assert len(builder.calls) == 4


async def test_catching_up_goes_back_at_most_catch_up_weeks(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    b = make(bastions, tmp_path, "catch_up_weeks = 2\n")
    week = first_week(b)
    builder = Builder(b)
    await ReportScheduler(b.core, builder).tick()
    b.clock.advance(timedelta(days=7 * 5))
    await ReportScheduler(b.core, builder).tick()
    later = [week_of(week.first_day + timedelta(days=7 * n), "Europe/Amsterdam").label
             for n in (4, 5)]  # fmt: skip
    assert [label for label, _ in builder.calls] == [week.label, *later]


# -- the webhook ---------------------------------------------------------------------------------


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=200)

    port = free_port()
    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/hook", received
    await runner.cleanup()


async def post(b: Bastion) -> int:
    async with aiohttp.ClientSession() as http:
        return await Notifier(b.core).deliver_due(http)


async def test_report_ready_reaches_the_webhook_with_the_week_and_hash_only(
    bastions: list[Bastion], tmp_path: Path, hook: tuple[str, list[bytes]]
) -> None:
    url, received = hook
    b = make(bastions, tmp_path, f'\n[notify]\nwebhook_url = "{url}"\n')
    week = first_week(b)
    await ReportScheduler(b.core, Builder(b)).tick()
    queued = b.store.report_run(week.label, "webhook")
    assert queued is not None and queued.state == "pending"
    assert await post(b) == 1
    [body] = received
    payload = json.loads(body)
    run = b.store.report_run(week.label, "build")
    assert run is not None
    assert payload["event"] == "report.ready" and payload["week"] == week.label
    assert payload["manifest_sha256"] == run.manifest_sha256
    assert payload["summary"] == "3 people, 12 sessions, 1 high finding"
    for content in (b"alice", b"web-1", b"caf", b"break_glass", *CSVS.values()):
        assert content not in body  # none of the report itself
    done = b.store.report_run(week.label, "webhook")
    assert done is not None and done.state == "done" and done.delivered_at is not None
    [delivered] = events(b, "report.delivered")
    assert delivered["detail"] == {"week": week.label, "channel": "webhook", "attempts": 1}


async def test_each_failed_webhook_post_of_the_review_is_an_audit_event(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    b = make(bastions, tmp_path, f'\n[notify]\nwebhook_url = "{url}"\nretries = 1\n')
    week = first_week(b)
    await ReportScheduler(b.core, Builder(b)).tick()
    assert await post(b) == 0
    b.clock.advance(timedelta(minutes=1))
    assert await post(b) == 0
    failures = events(b, "report.delivery_failed")
    assert [(f["detail"]["channel"], f["detail"]["attempt"], f["detail"]["gives_up"])
            for f in failures] == [("webhook", 1, False), ("webhook", 2, True)]  # fmt: skip
    run = b.store.report_run(week.label, "webhook")
    assert run is not None and run.state == "failed" and run.attempts == 2


# -- serve -------------------------------------------------------------------------------------


async def test_serve_refuses_a_build_time_it_cannot_read(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    """The config refuses it at load; serve checks again before it opens a door."""
    b = make(bastions, tmp_path)
    b.core.config = replace(b.config, reports=replace(b.config.reports, build_at="6am"))
    with pytest.raises(ServeError, match="build_at"):
        await Server(b.core).start()


async def test_serve_catches_up_a_missed_week_as_it_starts(
    bastions: list[Bastion], tmp_path: Path
) -> None:
    b = make(bastions, tmp_path)
    week = first_week(b)
    b.clock.advance(timedelta(days=3))  # down since before Monday 06:00
    builder = Builder(b)
    server = Server(b.core, report_builder=builder)
    await server.start()
    try:
        for _ in range(400):  # the scheduler's first look runs as serve starts
            if b.store.report_run(week.label, "build") is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop()
    assert builder.calls == [(week.label, b.clock.now())]
    run = b.store.report_run(week.label, "build")
    assert run is not None and run.state == "done"
