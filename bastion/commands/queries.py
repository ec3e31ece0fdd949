"""`bastion ticket TARGET` (a one-time database login after TOTP) and `bastion queries list`."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from bastion.commands.app import App
from bastion.commands.sessions import since_arg
from bastion.errors import Denied, UsageError


def ticket(app: App, args: argparse.Namespace) -> int:
    """Check the user's TOTP code, then mint a single-use ticket for one database target."""
    target = app.store.target(args.target)
    if target.kind != "postgres":
        raise UsageError(f"{args.target} is not a database target")
    decision = app.access.decide(args.user, args.target)
    if not decision.allowed:
        raise Denied(decision.reason)
    code = sys.stdin.readline().strip() if not sys.stdin.isatty() else getpass.getpass(
        "Verification code: ")  # fmt: skip
    token, expires = app.identity.issue_ticket(
        args.user, args.target, code, f"cli:ticket:{app.actor}", app.config.audit.ticket_valid_for
    )
    app.emit({"ticket": token, "target": args.target, "expires_at": expires.isoformat()},
             f"{token}\n(use it once as the password for {args.target} before"
             f" {expires:%H:%M} UTC)")  # fmt: skip
    return 0


def queries_list(app: App, args: argparse.Namespace) -> int:
    found = app.store.queries(user=args.user, target=args.target, since=since_arg(args.since, app),
                              grep=args.grep, limit=args.limit)  # fmt: skip
    rows = [q.public() for q in found]
    for row in rows:
        note = json.loads(row["masking"]) if row["masking"] else {}
        row["masking"] = note or None
        row["masked"] = ",".join(note.get("masked", []) + list(note.get("detected", {})))
    # kept_whole flags a text logged as sent: its code could not be parsed for redaction.
    app.table(rows, ["at", "user", "target", "tag", "rows", "sqlstate", "refused", "masked",
                     "kept_whole", "sql"], "no queries match")  # fmt: skip
    return 0
