"""What a person does for themselves on the bastion over SSH (`ssh you@bastion request ...`).

The use cases behind the SSH door's commands (bastion/ssh/selfservice.py parses the command
line and prints the answer): each takes Core and the person who just logged in with TOTP,
and goes through the services the CLI and the web console use (Access, Requests, Unmasking,
Tickets, Identity), whose rules they are. All are blocking: run them with Core.run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.access.tickets import DEFAULT_REUSABLE_FOR, reusable_note
from bastion.audit.records import AccessRequest, Grant
from bastion.audit.unmask import UnmaskGrant
from bastion.core import Core

RECENT = 20  # the person's own requests listed, newest last


@dataclass(frozen=True)
class Described:
    """A request after a change, and the line Requests.describe gives it."""

    request: AccessRequest
    text: str


@dataclass(frozen=True)
class Listing:
    """The person's recent requests, and the pending ones they may decide, each described
    (with its reason, for those to decide)."""

    mine: list[str]
    to_decide: list[tuple[str, str]]


def upcoming(core: Core, user: str) -> tuple[list[Grant], datetime]:
    """The person's grants now and to come, and the time they were read at."""
    return core.access.upcoming(user), core.clock.now()


def request_access(core: Core, user: str, *, target: str, duration: timedelta, reason: str,
                   mode: str, ticket: str | None) -> Described:  # fmt: skip
    made = core.requests.request(user=user, target=target, duration=duration, reason=reason,
                                 requested_by=user, mode=mode, ticket_ref=ticket)  # fmt: skip
    return Described(made, core.requests.describe(made))


def requests(core: Core, user: str) -> Listing:
    rules = core.requests
    mine = [rules.describe(r) for r in rules.of(user)[-RECENT:]]
    return Listing(mine, [(rules.describe(r), r.reason) for r in rules.decidable_by(user)])


def cancel(core: Core, user: str, request_id: int) -> Described:
    done = core.requests.cancel(request_id, user)
    return Described(done, core.requests.describe(done))


def approve(core: Core, user: str, request_id: int, duration: timedelta | None, *, code: str,
            via: str) -> Described:  # fmt: skip
    """An admin's approval, proven by the decider's own fresh TOTP code (the shared check:
    single use, lockout, audited), as the web console and the CLI ask for it."""
    core.identity.require_totp(user, code.strip(), via)
    done = core.requests.approve(request_id, user, duration)
    return Described(done, core.requests.describe(done))


def deny(core: Core, user: str, request_id: int, reason: str, *, code: str,
         via: str) -> Described:  # fmt: skip
    """An admin's refusal, after the decider's own fresh TOTP code."""
    core.identity.require_totp(user, code.strip(), via)
    done = core.requests.deny(request_id, user, reason)
    return Described(done, core.requests.describe(done))


def break_glass(core: Core, user: str, *, target: str, reason: str, duration: timedelta | None,
                mode: str, code: str, via: str) -> Grant:  # fmt: skip
    """Break-glass access, after the person's own fresh TOTP code."""
    core.identity.require_totp(user, code.strip(), via)
    return core.requests.break_glass(user=user, target=target, reason=reason,
                                     duration=duration, mode=mode)  # fmt: skip


def request_unmask(core: Core, user: str, *, target: str, columns: list[str], subject: str,
                   reason: str, consent_ref: str,
                   duration: timedelta | None) -> UnmaskGrant:  # fmt: skip
    return core.unmasking.request(user=user, target=target, columns=columns, subject=subject,
                                  reason=reason, consent_ref=consent_ref, requested_by=user,
                                  duration=duration)  # fmt: skip


def my_tickets(core: Core, user: str) -> list[str]:
    """The person's live tickets, each described (never the secret)."""
    return [core.tickets.describe(t) for t in core.tickets.live(user)]


def revoke_ticket(core: Core, user: str, ticket_id: int) -> tuple[int, int]:
    """Revoke one of the person's own tickets: its id, and how many live sessions end."""
    row, sessions = core.tickets.revoke(ticket_id, user, "revoked by its owner", owner=user)
    return row.id, len(sessions)


def one_time_ticket(core: Core, user: str, target: str, code: str,
                    via: str) -> tuple[str, datetime]:  # fmt: skip
    """A single-use database password after a fresh TOTP code; refused before the code is
    spent when the person may not reach the target."""
    core.tickets.check_mintable(user, target)
    return core.identity.issue_ticket(user, target, code, via,
                                      core.config.audit.ticket_valid_for)  # fmt: skip


def reusable_ticket(core: Core, user: str, target: str, code: str, *,
                    duration: timedelta | None, bind: str,
                    via: str) -> tuple[str, str]:  # fmt: skip
    """A reusable (`btr_`) ticket after a fresh TOTP code: the secret, and the note on it."""
    token, row, capped_by = core.tickets.mint(user, target, code,
                                              duration=duration or DEFAULT_REUSABLE_FOR,
                                              bind=bind, via=via)  # fmt: skip
    return token, reusable_note(core.tickets.describe(row), capped_by)
