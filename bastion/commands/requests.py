"""`bastion group`, `request`, `requests list`, `approve`, `deny` and `break-glass`."""

from __future__ import annotations

import argparse
from datetime import timedelta

from bastion.access.requests import Requests
from bastion.commands.app import App, proven
from bastion.durations import parse_duration
from bastion.errors import UsageError

REQUEST_COLUMNS = ["id", "user", "target", "mode", "duration", "state", "approvers",
                   "approvals_needed", "expires_at", "requested_by", "reason"]  # fmt: skip


def _requests(app: App) -> Requests:
    return Requests(app.store, app.config, app.clock)


def duration_arg(flag: str, text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from exc


def group_add(app: App, args: argparse.Namespace) -> int:
    made = app.store.add_group(args.name, app.actor)
    app.emit(made.public(), f"group {made.name} added")
    return 0


def group_members(app: App, args: argparse.Namespace) -> int:
    """Show a group's members, adding and removing any named first."""
    for user in args.add or ():
        app.store.set_membership(args.name, user, app.actor, member=True)
    for user in args.remove or ():
        app.store.set_membership(args.name, user, app.actor, member=False)
    group = app.store.group(args.name)
    app.emit(group.public(), f"{group.name}: {', '.join(group.members) or '(no members)'}")
    return 0


def group_list(app: App, args: argparse.Namespace) -> int:
    rows = [g.public() for g in app.store.groups()]
    for row in rows:
        row["members"] = ",".join(row["members"])
    app.table(rows, ["name", "members", "created_by", "created_at"],
              "no groups yet: bastion group add NAME")  # fmt: skip
    return 0


def request(app: App, args: argparse.Namespace) -> int:
    """A proven person files a request (for themselves, or an admin for someone else); others
    must approve it."""
    filer = proven(app, args.as_user, "files it")
    made = _requests(app).request(
        user=args.user, target=args.target, duration=duration_arg("--for", args.duration)
        or timedelta(0), reason=args.reason, requested_by=filer, mode=args.mode,
        ticket_ref=args.ticket)  # fmt: skip
    app.emit(made.public(), _requests(app).describe(made))
    return 0


def requests_list(app: App, args: argparse.Namespace) -> int:
    app.store.expire_requests()
    found = app.store.requests(state=args.state, user=args.user, target=args.target)
    rows = [r.public() for r in found]
    if not app.as_json:
        for row in rows:
            row["approvers"] = ",".join(row["approvers"])
    app.table(rows, REQUEST_COLUMNS, "no requests match")
    return 0


def approve(app: App, args: argparse.Namespace) -> int:
    approver = proven(app, args.as_user)
    done = _requests(app).approve(args.request_id, approver, duration_arg("--for", args.duration))
    app.emit(done.public(), _requests(app).describe(done))
    return 0


def deny(app: App, args: argparse.Namespace) -> int:
    actor = proven(app, args.as_user)
    done = _requests(app).deny(args.request_id, actor, args.reason)
    app.emit(done.public(), _requests(app).describe(done))
    return 0


def break_glass_list(app: App, args: argparse.Namespace) -> int:
    now = app.clock.now()
    rows = [g.public(now) for g in app.store.break_glass_grants(unacknowledged=args.unacknowledged)]
    app.table(rows, ["id", "user", "target", "mode", "state", "starts_at", "ends_at",
                     "acknowledged_by", "reason"], "no break-glass access")  # fmt: skip
    return 0


def break_glass_ack(app: App, args: argparse.Namespace) -> int:
    actor = proven(app, args.as_user)
    done = _requests(app).acknowledge(args.grant_id, actor, args.note or "")
    text = f"break-glass grant {done.id} ({done.user} on {done.target}) acknowledged"
    app.emit(done.public(app.clock.now()), text)
    return 0
