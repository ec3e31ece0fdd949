"""`bastion report runs` and `bastion report resend`: each week's delivery state in one line, and
a built, signed pack sent again by mail (local SMTP with STARTTLS) and the webhook, audited;
a pack edited since it was built is not sent."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from bastion.commands import report_runs
from bastion.commands.app import App
from bastion.errors import Conflict, Exit, UsageError
from bastion.notify import Notifier
from bastion.pki import TlsFiles
from bastion.reports.schedule import ReportScheduler, pack_builder
from tests import test_cli
from tests.harness import Bastion
from tests.realssh import free_port
from tests.reports.packs import (
    Mailbox,
    events,
    first_week,
    home,
    reports_config,
    server_context,
    smtp_server,
    tls_files,
)
from tests.test_cli import assert_error, assert_ok

pristine = test_cli.pristine
bst = test_cli.bst


@pytest.fixture
def box() -> Mailbox:
    return Mailbox()


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    return tls_files(tmp_path / "smtp-tls")


@pytest.fixture
def starttls(box: Mailbox, tls: TlsFiles) -> Iterator[Controller]:
    yield from smtp_server(box, server_context(tls))


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response(status=200)

    port = free_port()
    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/hook", received
    await runner.cleanup()


@pytest.fixture
def made(
    tmp_path: Path, starttls: Controller, tls: TlsFiles, hook: tuple[str, list[dict[str, Any]]]
) -> Iterator[Bastion]:
    notify = f'\n[notify]\nwebhook_url = "{hook[0]}"\n'
    b = home(tmp_path / "bastion", reports_config(starttls.port, tls.ca_cert) + notify)
    yield b
    b.release()


def app_of(b: Bastion, *, as_json: bool = True) -> App:
    return App(config_path=b.home / "bastion.toml", as_json=as_json, out=io.StringIO(),
               clock=b.clock)  # fmt: skip


def run(b: Bastion, handler: Any, **args: Any) -> str:
    app = app_of(b, as_json=args.pop("as_json", True))
    try:
        handler(app, argparse.Namespace(**args))
        assert isinstance(app.out, io.StringIO)
        return app.out.getvalue()
    finally:
        app.store.close()


async def post(b: Bastion) -> int:
    async with aiohttp.ClientSession() as http:
        return await Notifier(b.core).deliver_due(http)


async def test_a_built_week_is_listed_then_sent_again_by_mail_and_webhook(
    made: Bastion, box: Mailbox, hook: tuple[str, list[dict[str, Any]]]
) -> None:
    b, (_, received) = made, hook
    week = first_week(b)
    scheduler = ReportScheduler(b.core, pack_builder(b.core))
    await scheduler.tick()  # the real builder: a signed pack, mailed
    assert await post(b) == 1 and len(box.received) == 1
    [listed] = json.loads(run(b, report_runs.runs, week=None))
    assert (listed["week"], listed["build"], listed["mail"], listed["webhook"]) == (
        week.label, "done/1", "done/1", "done/1")  # fmt: skip
    text = run(b, report_runs.runs, week=week.label, as_json=False)
    assert text.splitlines()[1].split()[:4] == [week.label, "done/1", "done/1", "done/1"]
    out = json.loads(run(b, report_runs.resend, week=week.label, channel=None))
    assert out["channels"] == ["mail", "webhook"]
    resent = events(b, "report.resend")
    assert [e["detail"]["channel"] for e in resent] == ["mail", "webhook"]
    assert all(e["actor"].startswith("cli:") for e in resent)
    [queued] = json.loads(run(b, report_runs.runs, week=week.label))
    assert (queued["mail"], queued["webhook"]) == ("pending/0", "pending/0")
    await scheduler.tick()  # serve sends what was queued
    assert await post(b) == 1
    assert len(box.received) == 2 and box.tls == [True, True]
    first, second = (e.original_content for e in box.received)
    assert isinstance(first, bytes) and isinstance(second, bytes)
    assert [p["event"] for p in received] == ["report.ready", "report.ready"]
    assert received[0]["manifest_sha256"] == received[1]["manifest_sha256"]
    assert received[1]["summary"] == received[0]["summary"]
    [done] = json.loads(run(b, report_runs.runs, week=None))
    assert (done["mail"], done["webhook"]) == ("done/1", "done/1")
    assert len(events(b, "report.built")) == 1  # sent again, never built again


async def test_a_pack_edited_since_it_was_built_is_not_sent_again(
    made: Bastion, box: Mailbox
) -> None:
    b = made
    week = first_week(b)
    await ReportScheduler(b.core, pack_builder(b.core)).tick()
    pack = b.config.paths.reports / week.label
    (pack / "report.html").write_bytes(b"<html>nothing to see</html>")
    with pytest.raises(Conflict, match=r"report\.html"):
        run(b, report_runs.resend, week=week.label, channel="mail")
    assert events(b, "report.resend") == []
    [row] = json.loads(run(b, report_runs.runs, week=week.label))
    assert row["mail"] == "done/1"


async def test_a_failed_mail_shows_its_attempts_and_last_error(made: Bastion, box: Mailbox) -> None:
    b = made
    box.answer = "451 4.3.0 try again later"
    week = first_week(b)
    await ReportScheduler(b.core, pack_builder(b.core)).tick()
    [row] = json.loads(run(b, report_runs.runs, week=None))
    assert row["mail"] == "pending/1" and row["next_attempt"] is not None
    assert row["last_error"].startswith("mail: the SMTP server answered: 451")
    assert row["channels"]["mail"]["attempts"] == 1
    text = run(b, report_runs.runs, week=None, as_json=False)
    assert len(text.splitlines()) == 2 and "451" in text and week.label in text


async def test_a_channel_that_is_not_configured_is_refused(tmp_path: Path) -> None:
    b = Bastion(tmp_path / "bare", '\n[reports]\ntimezone = "Europe/Amsterdam"\n')
    try:
        week = first_week(b)
        await ReportScheduler(b.core, pack_builder(b.core)).tick()
        with pytest.raises(UsageError, match="nothing to send the review with"):
            run(b, report_runs.resend, week=week.label, channel=None)
        with pytest.raises(UsageError, match="webhook_url"):
            run(b, report_runs.resend, week=week.label, channel="webhook")
    finally:
        b.release()


# -- as real processes -----------------------------------------------------------------------


def test_report_runs_and_resend_from_the_command_line(bst: test_cli.Bastion) -> None:
    assert "no review runs yet" in assert_ok(bst.run("report", "runs")).stdout
    assert json.loads(assert_ok(bst.run("report", "runs", "--json")).stdout) == []
    assert_error(bst.run("report", "runs", "--week", "2026-W99"), Exit.USAGE, "2026-W99")
    assert_error(bst.run("report", "resend", "2026-W47"), Exit.NOT_FOUND,
                 "week 2026-W47 has no built pack")  # fmt: skip
    assert_error(bst.run("report", "resend", "2026-W47", "--channel", "fax"), Exit.USAGE)
