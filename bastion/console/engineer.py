"""What a signed-in person may do for themselves, for the console's pages and API alike.

Each call takes the person from their web session, never from the request, and goes through
the same core calls the CLI and the SSH self-service use (Requests, Unmasking, Tickets and
Identity); nothing here decides anything those do not. All are blocking: run them with
Core.run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bastion.access.viewing import Viewer
from bastion.audit import SessionFilter
from bastion.clock import iso
from bastion.console import websessions
from bastion.core import Core
from bastion.durations import parse_duration
from bastion.errors import UsageError
from bastion.reviewing.sessions import search_sessions

MODES = ("read", "write")


def duration(text: str, what: str) -> timedelta:
    try:
        return parse_duration(text.strip())
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from exc


def my_access(core: Core, user: str) -> list[dict[str, Any]]:
    """The person's grants now and to come, each with the seconds it has left."""
    now = core.clock.now()
    out = []
    for grant in core.access.upcoming(user):
        data = grant.public(now)
        data["seconds_left"] = max(0, int((grant.ends_at - max(now, grant.starts_at))
                                          .total_seconds()))  # fmt: skip
        out.append(data)
    return out


def request_access(core: Core, user: str, *, target: str, for_: str, reason: str,
                   mode: str = "read", ticket: str | None = None) -> dict[str, Any]:  # fmt: skip
    """File a request for oneself (`ssh bastion request`, `bastion request`)."""
    if mode not in MODES:
        raise UsageError("mode: choose read or write")
    rules = core.requests
    made = rules.request(user=user, target=target.strip(), duration=duration(for_, "for"),
                         reason=reason, requested_by=user, mode=mode,
                         ticket_ref=ticket or None)  # fmt: skip
    return {**made.public(), "text": rules.describe(made)}


def my_requests(core: Core, user: str) -> list[dict[str, Any]]:
    core.store.expire_requests()
    rules = core.requests
    return [{**r.public(), "text": rules.describe(r)} for r in core.store.requests(user=user)]


def request_unmask(core: Core, user: str, *, target: str, columns: str, subject: str,
                   reason: str, consent_ref: str, consent_sha256: str | None = None,
                   for_: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Ask to see one subject's values, with the consent's reference (and document's hash)."""
    made = core.unmasking.request(
        user=user, target=target.strip(), columns=columns.split(","), subject=subject,
        reason=reason, consent_ref=consent_ref, requested_by=user,
        consent_sha256=consent_sha256 or None,
        duration=duration(for_, "for") if for_ else None)  # fmt: skip
    return made.public(core.clock.now())


def my_unmasks(core: Core, user: str) -> list[dict[str, Any]]:
    now = core.clock.now()
    return [g.public(now) for g in core.store.unmasks(user=user)]


def my_sessions(core: Core, user: str) -> list[dict[str, Any]]:
    """The person's own sessions through the SSH and database doors, newest first, as the
    shared read shows them (where a recording lies on disk is not for the page); narrowed
    to their own whatever their role."""
    mine = Viewer.user(user, "engineer")
    return search_sessions(core.store, mine, SessionFilter(user=user), limit=100).items


def my_web_sessions(core: Core, user: str) -> list[dict[str, Any]]:
    return [s.public() for s in websessions.listed(core, user)]


def mint_ticket(core: Core, user: str, *, target: str, code: str, client: str,
                host: str) -> dict[str, Any]:  # fmt: skip
    """A one-time database password after a fresh TOTP code, as `ssh bastion ticket` mints
    it, and the psql command that uses it."""
    target = target.strip()
    core.tickets.check_mintable(user, target)  # refused before a code is spent
    token, expires = core.identity.issue_ticket(user, target, code, f"web:{client}:ticket",
                                                core.config.audit.ticket_valid_for)  # fmt: skip
    return {"ticket": token, "target": target, "expires_at": iso(expires),
            "psql": psql_command(core, host, user, target, token)}  # fmt: skip


def psql_command(core: Core, host: str, user: str, target: str, token: str) -> str:
    """Ready to paste: the bastion's database door at the host the console was reached by,
    verified against the bastion's CA (served at /bastion-ca.pem)."""
    port = core.config.listeners.postgres.port
    return (f"psql \"host={host} port={port} user={user} dbname={target}"
            f" sslmode=verify-full sslrootcert=bastion-ca.pem password={token}\"")  # fmt: skip
