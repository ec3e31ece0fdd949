"""Which live sessions must end now, and why: grant expired or revoked, user disabled, idle too
long, or at the longest a session may last (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.audit.records import Grant, OpenSession
from bastion.clock import iso
from bastion.durations import format_duration


@dataclass(frozen=True)
class Ending:
    """A session to end: its closing state and the one line its user is shown."""

    session_id: str
    state: str  # grant_expired, grant_revoked, user_disabled, ticket_revoked, outside_hours
    message: str


def covers(grant: Grant, session: OpenSession, now: datetime) -> bool:
    """A grant live now on the session's user and target, at least as wide as its mode."""
    if grant.user != session.user or grant.target != session.target or not grant.live_at(now):
        return False
    return session.mode is None or grant.mode in ("write", session.mode)


def uncovered(
    sessions: Iterable[OpenSession], live: Iterable[Grant], now: datetime
) -> list[OpenSession]:
    """The sessions that no live grant covers: only theirs need their own grant looked up."""
    by_pair: dict[tuple[str, str], list[Grant]] = {}
    for grant in live:
        by_pair.setdefault((grant.user, grant.target), []).append(grant)
    return [s for s in sessions
            if not any(covers(g, s, now) for g in by_pair.get((s.user, s.target), ()))]  # fmt: skip


def endings(
    sessions: Iterable[OpenSession],
    live: Iterable[Grant],
    grants_by_id: Mapping[int, Grant],
    now: datetime,
    closed: Mapping[str, str] | None = None,
    *,
    closed_sessions: Mapping[str, str] | None = None,
) -> list[Ending]:
    """The sessions that no live grant covers any more (a new grant keeps a session going).

    `live` holds the grants live now; `grants_by_id` the grants the sessions opened under,
    which say why access ended; `closed` the targets outside their allowed hours now, with
    the message their sessions end with; `closed_sessions` the same by session id.
    """
    sessions = list(sessions)
    lost = {s.session_id for s in uncovered(sessions, live, now)}
    found = []
    for session in sessions:
        if session.user_disabled:
            found.append(Ending(session.session_id, "user_disabled",
                                f"{session.user} was disabled; the session is over"))  # fmt: skip
            continue
        if session.ticket_revoked is not None:
            found.append(Ending(session.session_id, "ticket_revoked",
                                f"ticket {session.ticket_revoked}, which opened this session,"
                                " was revoked; the session is over"))  # fmt: skip
            continue
        shut = (closed_sessions or {}).get(session.session_id) or (closed or {}).get(session.target)
        if shut:
            found.append(Ending(session.session_id, "outside_hours", shut))
            continue
        if session.session_id in lost:
            found.append(_why(session, grants_by_id.get(session.grant_id or -1), now))
    return found


def _why(session: OpenSession, grant: Grant | None, now: datetime) -> Ending:
    where = f"access to {session.target}"
    if grant is None:
        return Ending(session.session_id, "grant_revoked", f"{where} ended: no grant covers it")
    if grant.revoked_at is not None:
        by = f" by {grant.revoked_by}" if grant.revoked_by else ""
        return Ending(session.session_id, "grant_revoked",
                      f"{where} ended: grant {grant.id} was revoked{by}")  # fmt: skip
    if now >= grant.ends_at:
        expired = f"{where} ended: grant {grant.id} expired at {iso(grant.ends_at)}"
        return Ending(session.session_id, "grant_expired", expired)
    return Ending(session.session_id, "grant_revoked",
                  f"{where} ended: grant {grant.id} no longer covers it")  # fmt: skip


def overstayed(
    target: str,
    opened: datetime,
    last_input: datetime,
    now: datetime,
    limits: tuple[timedelta, timedelta],
) -> tuple[str, str] | None:
    """(state, message) when a session has been idle too long or lasted too long, else None.

    `limits` is (idle timeout, longest session) for the session's target.
    """
    idle, longest = limits
    if now - opened >= longest:
        return "session_cap", f"sessions on {target} last at most {format_duration(longest)}"
    if now - last_input >= idle:
        return "idle_timeout", f"no input for {format_duration(idle)} on {target}; session ended"
    return None
