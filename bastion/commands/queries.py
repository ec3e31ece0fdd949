"""`bastion ticket TARGET` (a one-time database login after TOTP) and `bastion queries list`."""

from __future__ import annotations

import argparse
import getpass
import sys

from bastion.access.tickets import DEFAULT_REUSABLE_FOR, reusable_note
from bastion.commands.app import App, actor_of
from bastion.commands.requests import duration_arg
from bastion.commands.sessions import more_note, since_arg
from bastion.errors import Denied, UsageError
from bastion.reviewing.logs import QueryFilter, search_queries


def ticket(app: App, args: argparse.Namespace) -> int:
    """`ticket TARGET --user U [--reusable ...]`, `ticket list`, `ticket revoke ID`."""
    if args.target == "list":
        return _ticket_list(app, args)
    if args.target == "revoke":
        return _ticket_revoke(app, args)
    if args.ticket_id is not None:
        raise UsageError("ticket TARGET takes no id (did you mean `ticket revoke ID`?)")
    if not args.user:
        raise UsageError("say whose ticket it is with --user NAME; their TOTP code is asked for")
    if args.reusable:
        return _reusable(app, args)
    if args.duration or args.bind_address:
        raise UsageError("--for and --bind-address go with --reusable")
    target = app.store.target(args.target)
    if target.kind != "postgres":
        raise UsageError(f"{args.target} is not a database target")
    decision = app.access.decide(args.user, args.target)
    if not decision.allowed:
        raise Denied(decision.reason)
    token, expires = app.identity.issue_ticket(
        args.user, args.target, _code(), f"cli:ticket:{app.actor}",
        app.config.audit.ticket_valid_for,
    )  # fmt: skip
    app.emit({"ticket": token, "target": args.target, "expires_at": expires.isoformat()},
             f"{token}\n(use it once as the password for {args.target} before"
             f" {expires:%H:%M} UTC)")  # fmt: skip
    return 0


def _code() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Verification code: ")
    return sys.stdin.readline().strip()


def _reusable(app: App, args: argparse.Namespace) -> int:
    """After the user's code: a ticket for many connections, printed this once only."""
    duration = duration_arg("--for", args.duration) or DEFAULT_REUSABLE_FOR
    app.tickets.check_mintable(args.user, args.target)  # refused before a code is spent
    token, row, capped_by = app.tickets.mint(
        args.user, args.target, _code(), duration=duration, bind=args.bind_address,
        via=f"cli:ticket:{app.actor}",
    )  # fmt: skip
    data = {"ticket": token, **row.public(app.clock.now()), "capped_by": capped_by}
    app.emit(data, f"{token}\n{reusable_note(app.tickets.describe(row), capped_by)}")
    return 0


def _ticket_list(app: App, args: argparse.Namespace) -> int:
    now = app.clock.now()
    found = app.store.tickets(user=args.user, live_at=None if args.all else now)
    rows = [t.public(now) for t in found]
    app.table(rows, ["id", "user", "target", "kind", "state", "expires_at", "bind_address",
                     "uses", "used_at", "created_by"], "no tickets")  # fmt: skip
    return 0


def _ticket_revoke(app: App, args: argparse.Namespace) -> int:
    if args.ticket_id is None:
        raise UsageError("ticket revoke takes the ticket's id: bastion ticket revoke ID")
    row, sessions = app.tickets.revoke(args.ticket_id, actor_of(app, args), args.reason)
    app.emit({**row.public(app.clock.now()), "sessions_ending": sessions},
             f"ticket {row.id} revoked; {len(sessions)} live session(s) opened with it end"
             " within seconds")  # fmt: skip
    return 0


def queries_list(app: App, args: argparse.Namespace) -> int:
    """The query log, newest first; the reading is chained before a row is shown."""
    wanted = QueryFilter(user=args.user, target=args.target, since=since_arg(args.since, app),
                         until=since_arg(args.until, app, "--until"), text=args.grep,
                         session=args.session)  # fmt: skip
    page = search_queries(app.store, app.viewer, wanted, cursor=args.cursor, limit=args.limit)
    rows = page.items
    if not app.as_json:
        for row in rows:
            row["masked"] = ",".join(row["masked"])
    # kept_whole flags a text logged as sent: its code could not be parsed for redaction.
    app.table(rows, ["at", "user", "target", "tag", "rows", "sqlstate", "refused", "masked",
                     "kept_whole", "sql"], "no queries match")  # fmt: skip
    more_note(page.next, "statements")
    return 0
