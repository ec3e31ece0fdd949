"""The `bastion report ...` commands' arguments: verify, key, weekly, runs, review, sign."""

from __future__ import annotations

import argparse
from pathlib import Path

from bastion.cli_common import Parser, command, decider, json_flag
from bastion.commands import report_pack, report_review, report_runs, report_weekly


def add_report_commands(sub: argparse._SubParsersAction[Parser]) -> None:
    group = sub.add_parser("report", help="the weekly access review and its signed packs")
    cmds = group.add_subparsers(dest="report_command", required=True, parser_class=Parser)
    verify = command(cmds, "verify", report_pack.report_verify,
                      "check a review pack: signature, files, and the store behind it")  # fmt: skip
    verify.add_argument("directory", metavar="DIR")
    verify.add_argument("--key", type=Path, metavar="PEM",
                        help="the public key to check with (default: this bastion's)")  # fmt: skip
    verify.add_argument("--no-store", action="store_true",
                        help="check the pack alone, not the chain and counts behind")  # fmt: skip
    json_flag(verify)
    key = command(cmds, "key", report_pack.report_key,
                   "print the public key that checks review packs, and how")  # fmt: skip
    json_flag(key)
    _add_report_review_commands(cmds)
    weekly = command(cmds, "weekly", report_weekly.weekly,
                      "build, sign and record a week's access review")  # fmt: skip
    weekly.add_argument("--week", metavar="WEEK", help="e.g. 2026-W47 (default: last week)")
    weekly.add_argument("--format", default="html,json,csv,sqlite", metavar="LIST",
                        help="formats in the pack (default: html,json,csv,sqlite)")  # fmt: skip
    weekly.add_argument("--out", type=Path, metavar="DIR",
                        help="write the pack here (default: paths.reports/WEEK)")  # fmt: skip
    json_flag(weekly)
    _add_report_run_commands(cmds)


def _add_report_run_commands(cmds: argparse._SubParsersAction[Parser]) -> None:
    runs = command(cmds, "runs", report_runs.runs,
                    "each week's build, mail and webhook: state, attempts, last error")  # fmt: skip
    runs.add_argument("--week", metavar="WEEK", help="e.g. 2026-W47 (default: every week)")
    json_flag(runs)
    resend = command(cmds, "resend", report_runs.resend,
                      "send a built week's review again (bastion serve delivers it)")  # fmt: skip
    resend.add_argument("week", metavar="WEEK", help="e.g. 2026-W47")
    resend.add_argument("--channel", choices=["mail", "webhook"],
                        help="only this one (default: every one configured)")  # fmt: skip
    json_flag(resend)


def _add_report_review_commands(cmds: argparse._SubParsersAction[Parser]) -> None:
    review = command(cmds, "review", report_review.review, "mark a finding of a week ok or flag")
    review.add_argument("week", metavar="WEEK", help="e.g. 2026-W47")
    review.add_argument("--finding", required=True, metavar="ID")
    verdict = review.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--ok", dest="verdict", action="store_const", const="ok")
    verdict.add_argument("--flag", dest="verdict", action="store_const", const="flag")
    review.add_argument("--note", required=True, help="what was looked at, and why")
    decider(review, "reviewing")
    sign = command(cmds, "sign", report_review.sign, "sign off a reviewed week and its pack")
    sign.add_argument("week", metavar="WEEK")
    decider(sign, "signing")
    listing = command(cmds, "findings", report_review.findings, "list a week's findings")
    listing.add_argument("week", metavar="WEEK")
    listing.add_argument("--state", choices=["open", "ok", "flag"])
    json_flag(listing)
