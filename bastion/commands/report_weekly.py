"""`bastion report weekly [--week 2026-W47] [--format html,json,csv,sqlite] [--out DIR]`."""

from __future__ import annotations

import argparse
import json
import sys

from bastion.commands.app import App
from bastion.errors import Exit, UsageError
from bastion.progress import terminal_progress
from bastion.reports.week import Week, last_complete_week, parse_week


def _week(app: App, label: str | None) -> Week:
    policy = app.config.reports
    try:
        if label is None:
            return last_complete_week(app.clock.now(), policy.timezone, policy.week_starts)
        week = parse_week(label, policy.timezone, policy.week_starts)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if week.end > app.clock.now():
        raise UsageError(f"week {week.label} has not ended yet (it ends {week.local_end})")
    return week


def weekly(app: App, args: argparse.Namespace) -> int:
    """Build one week's review: verified, gathered, rendered, signed, recorded."""
    from bastion.reports.build import build_week  # noqa: PLC0415 - heavy

    week = _week(app, args.week)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    progress = (lambda _line: None) if args.json else terminal_progress()
    built = build_week(app, week, actor=app.actor, out=args.out, formats=formats,
                       progress=progress)  # fmt: skip
    if args.json:
        print(json.dumps({"week": built.week, "directory": str(built.directory),
                          "manifest_sha256": built.manifest_sha256,
                          "findings": built.findings, "summary": built.summary_line}))  # fmt: skip
    else:
        print(f"{built.summary_line}; pack {built.directory} (manifest {built.manifest_sha256})")
    sys.stdout.flush()
    return Exit.OK
