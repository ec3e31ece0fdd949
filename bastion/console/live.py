"""The live sessions as the console lists them, an admin's kill, and break-glass to acknowledge.

A kill is `bastion sessions kill`: the same store call (one `session.kill_requested` event,
the admin as its actor) and the same watcher ending the session with the same words. An
acknowledgement is `bastion break-glass ack`: the same access call and its rules. All are
blocking: the web door runs them with Core.run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bastion.clock import iso
from bastion.core import Core
from bastion.errors import NotFound, UsageError
from bastion.live import LiveSession, kill_asked

MAX_REASON = 300


def clean_reason(reason: str) -> str:
    """The kill's reason as the person whose session ends will read it: one line of
    printable text (no escape sequence reaches their terminal), and not empty."""
    text = " ".join(reason.split())
    if not text:
        raise UsageError("give a reason: the person whose session ends is shown it")
    if not text.isprintable() or len(text) > MAX_REASON:
        raise UsageError(f"the reason must be printable text of at most {MAX_REASON} characters")
    return text


def _idle(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _since(when: datetime) -> str:
    return iso(when).replace("T", " ")[:19] + " UTC"


def _grant_text(core: Core, grant_id: int | None) -> str:
    if grant_id is None:
        return "-"
    try:
        grant = core.store.grant(grant_id)
    except NotFound:
        return f"#{grant_id}"
    glass = " BREAK-GLASS" if grant.break_glass else ""
    return f"#{grant.id} {grant.mode}{glass} until {_since(grant.ends_at)}"


def _row(core: Core, live: LiveSession) -> dict[str, Any]:
    s = live.record
    return {"id": s.id, "user": s.user, "target": s.target, "door": s.protocol,
            "node": s.node or "-", "client": s.client_addr, "started_at": iso(s.started_at),
            "since": _since(s.started_at),
            "idle_seconds": live.idle_seconds, "idle": _idle(live.idle_seconds),
            "grant_id": s.grant_id, "grant": _grant_text(core, s.grant_id),
            "kill_requested": live.kill_requested}  # fmt: skip


def rows(core: Core, found: Sequence[LiveSession]) -> list[dict[str, Any]]:
    """The open sessions (Core.live_sessions) as the page, the stream and the API show them."""
    return [_row(core, live) for live in found]


def kill(core: Core, actor: str, session_id: str, reason: str) -> dict[str, Any]:
    """`bastion sessions kill`'s call: the serving door ends it within a moment."""
    done = core.store.request_kill(session_id, actor, clean_reason(reason))
    return {**done.public(), "kill_requested": True}


def kill_notice(core: Core, session_id: str) -> str | None:
    """What the admin is told after a kill, in `bastion sessions kill`'s words (which node
    was asked, and when that node is gone); None unless a kill of that session was asked for
    (a link made up to claim one shows nothing)."""
    pending = {kill[0] for kill in core.store.pending_kills()}  # first: a kill pending now
    try:  # has ended as "killed" by the time the session is read, never neither
        found = core.store.session(session_id)
    except NotFound:
        return None
    if found.state != "killed" and found.id not in pending:
        return None
    return kill_asked(found, core.store.live_nodes())[0]


def acknowledge(core: Core, actor: str, grant_id: str, note: str) -> dict[str, Any]:
    """`bastion break-glass ack`'s call (who may, and never one's own, decided there)."""
    if not grant_id.isascii() or not grant_id.isdigit() or len(grant_id) > 12:
        raise UsageError("grant_id must be a grant's number")
    done = core.requests.acknowledge(int(grant_id), actor, note)
    return done.public(core.clock.now())


def break_glass(core: Core) -> list[dict[str, Any]]:
    now = core.clock.now()
    return [g.public(now) for g in core.store.break_glass_grants()]
