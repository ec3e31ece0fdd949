"""`bastion report runs [--week W]` and `bastion report resend WEEK [--channel mail|webhook]`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bastion.audit.report_runs import ReportRun
from bastion.commands.app import App
from bastion.errors import NotFound, UsageError
from bastion.reports.deliver import SmtpSettings, compose, ready_notice, spool, spool_path
from bastion.reports.resend import read_pack
from bastion.reports.signing import load_private_key
from bastion.reports.week import parse_week

RUN_COLUMNS = ["week", "build", "mail", "webhook", "next_attempt", "last_error"]


def _label(app: App, text: str) -> str:
    policy = app.config.reports
    try:
        return parse_week(text, policy.timezone, policy.week_starts).label
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _cell(run: ReportRun | None) -> str:
    """One channel as `state/attempts`, e.g. done/1, pending/2, failed/6, skipped/0."""
    return "-" if run is None else f"{run.state}/{run.attempts}"


def week_line(week: str, runs: list[ReportRun]) -> dict[str, Any]:
    by = {r.channel: r for r in runs}
    pending = [r.next_attempt_at for r in runs if r.state == "pending" and r.next_attempt_at]
    failed = [r for r in runs if r.last_error]
    last = failed[-1] if failed else None
    return {
        "week": week, **{c: _cell(by.get(c)) for c in ("build", "mail", "webhook")},
        "next_attempt": min(pending).isoformat() if pending else None,
        "last_error": f"{last.channel}: {last.last_error}" if last else None,
        "channels": {r.channel: r.public() for r in runs},
    }  # fmt: skip


def runs(app: App, args: argparse.Namespace) -> int:
    """Each week's build, mail and webhook: state, attempts, next try, last error."""
    week = _label(app, args.week) if args.week else None
    weeks: dict[str, list[ReportRun]] = {}
    for run in app.store.report_runs(week):
        weeks.setdefault(run.week, []).append(run)
    rows = [week_line(w, r) for w, r in weeks.items()]
    if not app.as_json:
        for row in rows:
            row.pop("channels")
    app.table(
        rows, RUN_COLUMNS, f"no review runs for week {week}" if week else "no review runs yet"
    )
    return 0


def _channels(app: App, asked: str | None, smtp: SmtpSettings) -> list[str]:
    hook = "" if app.config.notify.webhook_url else "no [notify] webhook_url"
    why = {"mail": smtp.missing(), "webhook": hook}
    if asked is not None:
        if why[asked]:
            raise UsageError(f"cannot send the review by {asked}: {why[asked]}")
        return [asked]
    ready = [c for c in ("mail", "webhook") if not why[c]]
    if not ready:
        raise UsageError(f"nothing to send the review with ({why['mail']}; {why['webhook']})")
    return ready


def resend(app: App, args: argparse.Namespace) -> int:
    """Queue a built week's review again, by mail and/or the webhook; `bastion serve` sends it
    (retried, each failure audited). The pack must still verify as built."""
    week = _label(app, args.week)
    built = app.store.report_run(week, "build")
    if built is None or built.state != "done" or not built.directory or not built.manifest_sha256:
        raise NotFound(f"week {week} has no built pack to send again (the schedule in"
                       " `bastion serve` builds and records it)")  # fmt: skip
    smtp = SmtpSettings.of(app.config)
    channels = _channels(app, args.channel, smtp)
    key = load_private_key(app.config.paths.report_signing_key).public_key()
    pack = read_pack(Path(built.directory), week, built.manifest_sha256, key)
    for channel in channels:
        if channel == "mail":
            message = compose(pack, smtp, app.clock.now()).as_bytes()
            sha = spool(spool_path(app.config.paths.reports, week), message)
            app.store.report_resend(week, "mail", app.actor, mail_sha256=sha)
        else:
            app.store.report_resend(week, "webhook", app.actor, notice=ready_notice(pack))
    text = f"week {week}: queued again by {' and '.join(channels)}; `bastion serve` sends it"
    app.emit({"week": week, "channels": channels, "manifest_sha256": pack.manifest_sha256}, text)
    return 0
