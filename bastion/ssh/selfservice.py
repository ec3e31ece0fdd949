"""Commands an engineer runs on the bastion itself (`ssh alice@bastion request ...`): no shell
there, the same rules as the CLI, and the person is the one who just logged in with TOTP.

This module only parses the command line and prints the answer; what each command does is
bastion/console/selfservice.py's, run in the core's thread."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from bastion.audit.records import Grant
from bastion.clock import iso
from bastion.console import selfservice as use
from bastion.core import Core
from bastion.durations import parse_duration
from bastion.errors import BastionError, UsageError

USAGE = """bastion commands (ssh -p PORT you@bastion COMMAND):
  access                                       your grants now and to come
  request TARGET --for 2h --reason "..." [--mode read|write] [--ticket ID]
  requests                                     your requests; admins also see pending ones
  cancel ID                                    take back a pending request of yours
  approve ID [--for 1h]                        admins: approve someone else's request
  deny ID --reason "..."                       admins: deny someone else's request
  break-glass TARGET --reason "..." [--for 30m] [--mode read|write]
                                 each decision asks for a fresh code on stdin
  unmask TARGET --columns customers.email --subject customers.id=4711 --reason "..."
         --consent SUP-1234 [--for 1h]      see one customer's values, with their consent
  ticket TARGET [--reusable --for 4h [--bind-address [ADDR]]]
                                 a database password (asks for a fresh code on stdin);
                                 --reusable: for tools that open several connections
  ticket list                                  your live tickets
  ticket revoke ID                             revoke one of your tickets
"""


@dataclass(frozen=True)
class Reply:
    status: int
    out: str = ""
    err: str = ""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting: the reply goes to the channel."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog.removeprefix('bastion ')}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message or USAGE)


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> _Parser:
    root = _Parser(prog="bastion", add_help=False)
    sub = root.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("access", add_help=False)
    sub.add_parser("requests", add_help=False)
    req = sub.add_parser("request", add_help=False)
    req.add_argument("target")
    req.add_argument("--for", dest="duration", type=_duration, required=True)
    req.add_argument("--reason", required=True)
    req.add_argument("--mode", choices=["read", "write"], default="read")
    req.add_argument("--ticket")
    for name in ("approve", "deny", "cancel"):
        cmd = sub.add_parser(name, add_help=False)
        cmd.add_argument("request_id", type=int)
        if name == "approve":
            cmd.add_argument("--for", dest="duration", type=_duration)
        if name == "deny":
            cmd.add_argument("--reason", required=True)
    glass = sub.add_parser("break-glass", add_help=False)
    glass.add_argument("target")
    glass.add_argument("--reason", required=True)
    glass.add_argument("--for", dest="duration", type=_duration)
    glass.add_argument("--mode", choices=["read", "write"], default="read")
    unmask = sub.add_parser("unmask", add_help=False)
    unmask.add_argument("target")
    for flag in ("--columns", "--subject", "--reason", "--consent"):
        unmask.add_argument(flag, required=True)
    unmask.add_argument("--for", dest="duration", type=_duration)
    ticket = sub.add_parser("ticket", add_help=False)
    ticket.add_argument("target")
    ticket.add_argument("ticket_id", nargs="?", type=int)
    ticket.add_argument("--reusable", action="store_true")
    ticket.add_argument("--for", dest="duration", type=_duration)
    ticket.add_argument("--bind-address", nargs="?", const="")  # bare: this login's address
    return root


COMMANDS = (
    "access",
    "request",
    "requests",
    "cancel",
    "approve",
    "deny",
    "break-glass",
    "unmask",
    "ticket",
    "help",
)


def is_command(command: str | None) -> bool:
    """Whether an exec request without a target names one of these commands."""
    words = (command or "").split()
    return bool(words) and words[0] in COMMANDS


DECISIONS = ("approve", "deny", "break-glass")  # each one proven by its own fresh code


def needs_code(command: str | None) -> bool:
    """Whether the command is a decision or mints a ticket, and so reads a fresh TOTP code from
    stdin first: the login's code proved the connection, and a multiplexed connection
    (OpenSSH ControlPersist) lives for hours, so it never stands for a decision."""
    words = (command or "").split()
    if words and words[0] in DECISIONS:
        return True
    return len(words) >= 2 and words[0] == "ticket" and words[1] not in ("list", "revoke")


def _fresh_code(args: argparse.Namespace) -> tuple[str, str]:
    """The decision's own code and how the trail names where it came from; refused without."""
    if not args.code:
        raise UsageError(f"{args.command} needs a fresh verification code, on stdin:"
                         f" echo CODE | ssh ... {args.command} ...")  # fmt: skip
    return args.code, f"ssh:{args.source}:{args.command}"


async def run(
    core: Core, user: str, command: str, *, code: str | None = None, source: str = ""
) -> Reply:
    """Run one command line for `user` (logged in from `source`; `code` is a fresh TOTP
    code read from stdin, for the commands that need one); every refusal is one line."""
    try:
        words = shlex.split(command)
        if not words or words[0] == "help":
            return Reply(0, out=USAGE)
        args = _parser().parse_args(words)
        args.code, args.source = code, source
        text = await core.run(_handler(args.command), core, user, args)
    except ValueError as exc:  # shlex: unbalanced quotes
        return Reply(2, err=f"bastion: {exc}\n")
    except BastionError as exc:
        message = exc.message if exc.message.endswith("\n") else exc.message + "\n"
        return Reply(int(exc.exit_code), err=("" if message == USAGE else "bastion: ") + message)
    return Reply(0, out=text)


Handler = Callable[[Core, str, argparse.Namespace], str]


def _handler(name: str) -> Handler:
    return {"access": _access, "request": _request, "requests": _requests, "cancel": _cancel,
            "approve": _approve, "deny": _deny, "break-glass": _break_glass,
            "unmask": _unmask, "ticket": _ticket}[name]  # fmt: skip


def _access(core: Core, user: str, args: argparse.Namespace) -> str:
    grants, now = use.upcoming(core, user)
    return render_access(user, grants, now)


def _request(core: Core, user: str, args: argparse.Namespace) -> str:
    made = use.request_access(core, user, target=args.target, duration=args.duration,
                              reason=args.reason, mode=args.mode, ticket=args.ticket)  # fmt: skip
    if made.request.state == "approved":
        return made.text + f"\naccess is open: ssh {user}+{args.target}@...\n"
    return made.text + f"\nwaiting for {made.request.approvals_needed} approval(s) from admins\n"


def _requests(core: Core, user: str, args: argparse.Namespace) -> str:
    found = use.requests(core, user)
    lines = found.mine or [f"{user} has no requests"]
    if found.to_decide:
        lines += ["", "pending, for you to decide:"]
        lines += [f"{text} -- {reason}" for text, reason in found.to_decide]
    return "\n".join(lines) + "\n"


def _cancel(core: Core, user: str, args: argparse.Namespace) -> str:
    return use.cancel(core, user, args.request_id).text + "\n"


def _approve(core: Core, user: str, args: argparse.Namespace) -> str:
    code, via = _fresh_code(args)
    return use.approve(core, user, args.request_id, args.duration, code=code, via=via).text + "\n"


def _deny(core: Core, user: str, args: argparse.Namespace) -> str:
    code, via = _fresh_code(args)
    return use.deny(core, user, args.request_id, args.reason, code=code, via=via).text + "\n"


def _break_glass(core: Core, user: str, args: argparse.Namespace) -> str:
    code, via = _fresh_code(args)
    grant = use.break_glass(core, user, target=args.target, reason=args.reason,
                            duration=args.duration, mode=args.mode, code=code,
                            via=via)  # fmt: skip
    return (f"BREAK-GLASS grant {grant.id}: {user} may reach {grant.target} ({grant.mode})"
            f" until {iso(grant.ends_at)}.\nIt is announced now and flagged to reviewers"
            " until one acknowledges it.\n")  # fmt: skip


def _unmask(core: Core, user: str, args: argparse.Namespace) -> str:
    made = use.request_unmask(
        core, user, target=args.target, columns=args.columns.split(","), subject=args.subject,
        reason=args.reason, consent_ref=args.consent, duration=args.duration)  # fmt: skip
    return (f"unmask request {made.id}: {', '.join(made.columns)} of {made.target} for"
            f" {made.subject_key}={made.subject_value}, waiting for an admin or reviewer"
            " to confirm the consent\n")  # fmt: skip


def _ticket(core: Core, user: str, args: argparse.Namespace) -> str:
    """`ticket TARGET [--reusable ...]`, `ticket list`, `ticket revoke ID`: the person's own."""
    if args.target == "list":
        found = use.my_tickets(core, user)
        return "\n".join(found) + "\n" if found else f"{user} has no live tickets\n"
    if args.target == "revoke":
        if args.ticket_id is None:
            raise UsageError("ticket revoke takes the ticket's id: ticket revoke ID")
        ticket_id, ended = use.revoke_ticket(core, user, args.ticket_id)
        return f"ticket {ticket_id} revoked; {ended} live session(s) opened with it end\n"
    if args.ticket_id is not None:
        raise UsageError("ticket TARGET takes no id (did you mean `ticket revoke ID`?)")
    if not args.code:
        raise UsageError("send your verification code on stdin: echo CODE | ssh ... ticket ...")
    via = f"ssh:{args.source}:ticket"
    if not args.reusable:
        if args.duration or args.bind_address is not None:
            raise UsageError("--for and --bind-address go with --reusable")
        token, expires = use.one_time_ticket(core, user, args.target, args.code, via)
        return f"{token}\n(use it once as the password for {args.target} before {iso(expires)})\n"
    bind = args.bind_address if args.bind_address != "" else args.source
    token, note = use.reusable_ticket(core, user, args.target, args.code,
                                      duration=args.duration, bind=bind, via=via)  # fmt: skip
    return f"{token}\n{note}\n"


def render_access(user: str, grants: list[Grant], now: datetime) -> str:
    """One line a grant: target, mode, now or from when, until when, why."""
    if not grants:
        return f"{user} has no grants now or to come; ask an admin, or request access\n"
    lines = [f"grants for {user}:"]
    for grant in grants:
        when = "now" if grant.starts_at <= now else f"from {iso(grant.starts_at)}"
        ticket = f" [{grant.ticket_ref}]" if grant.ticket_ref else ""
        via = f" via group {grant.group}" if grant.group else ""
        glass = " BREAK-GLASS" if grant.break_glass else ""
        lines.append(f"  {grant.target:<20} {grant.mode:<5} {when} until {iso(grant.ends_at)}"
                     f"  ({grant.reason}){ticket}{via}{glass}")  # fmt: skip
    return "\n".join(lines) + "\n"
