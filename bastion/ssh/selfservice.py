"""Commands an engineer runs on the bastion itself (`ssh alice@bastion access`): no shell there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bastion.audit.records import Grant
from bastion.clock import iso
from bastion.core import Core

COMMANDS = ("access",)
USAGE = "bastion commands: access (your grants now and to come)"


@dataclass(frozen=True)
class Reply:
    status: int
    out: str = ""
    err: str = ""


def is_command(command: str | None) -> bool:
    """Whether an exec request without a target names one of these commands."""
    words = (command or "").split()
    return bool(words) and words[0] in COMMANDS


async def run(core: Core, user: str, command: str) -> Reply:
    """Run one self-service command line for `user` (see is_command)."""
    if not is_command(command):
        return Reply(2, err=f"bastion: unknown command {command!r}; {USAGE}\n")
    grants = await core.run(core.access.upcoming, user)
    return Reply(0, out=render_access(user, grants, core.clock.now()))


def render_access(user: str, grants: list[Grant], now: datetime) -> str:
    """One line a grant: target, mode, now or from when, until when, why."""
    if not grants:
        return f"{user} has no grants now or to come; ask an admin, or request access\n"
    lines = [f"grants for {user}:"]
    for grant in grants:
        when = "now" if grant.starts_at <= now else f"from {iso(grant.starts_at)}"
        ticket = f" [{grant.ticket_ref}]" if grant.ticket_ref else ""
        lines.append(f"  {grant.target:<20} {grant.mode:<5} {when} until {iso(grant.ends_at)}"
                     f"  ({grant.reason}){ticket}")  # fmt: skip
    return "\n".join(lines) + "\n"
