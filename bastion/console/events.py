"""The audit log as the console's page and API read it: a search of the chain, and its state.

For those who see everyone (admins, reviewers): a search by time, kind (exact, or a prefix
ending in "."), actor, subject, session and least severity, newest first, a page at a time
(the cursor is the seq to continue below). Each search is chained as `queries.listed` (the
filters, the count and the seqs shown) and read back before an event is returned, as every
reviewer's reading is. The chain's state is its head and the last verification recorded in
it (`audit verify`, `report verify`): it is never walked here, that costs the whole history.
Calls block: run them off the event loop."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

from bastion.access.viewing import Viewer, may_read, may_read_everything
from bastion.audit import ChainedEvent, EventFilter, EventPage
from bastion.audit.chain import SEVERITIES
from bastion.clock import iso, parse_iso
from bastion.core import Core
from bastion.errors import UsageError
from bastion.recording.container import SESSION_ID_RE
from bastion.reports.week import zone
from bastion.reviewing.audited import record_reading

EVENT_QUERY = ("since", "until", "kind", "actor", "subject", "session", "severity", "cursor",
               "limit")  # fmt: skip
KIND_RE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*\.?")  # "session.closed", "session."
MAX_KIND = 64
MAX_NAME = 256  # characters of an actor or a subject looked for
PAGE = 50  # events a page shows unless asked
MAX_PAGE = 200
LIMIT_RE = re.compile(r"[1-9][0-9]{0,2}")
LOCAL_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?")


def moment(text: str | None, what: str, tz: str, *, end: bool = False) -> datetime | None:
    """A date or a date and time in the zone `tz` (as an end, a date includes its day), or an
    instant in UTC as the store writes them (…Z); None when empty."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        if text.endswith("Z"):
            return parse_iso(text)
        if LOCAL_RE.fullmatch(text) is None:
            raise ValueError(text)
        if len(text) == 10:
            day = datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time(),
                                   zone(tz))  # fmt: skip
            return (day + timedelta(days=1) if end else day).astimezone(UTC)
        return datetime.fromisoformat(text).replace(tzinfo=zone(tz)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise UsageError(f"{what}: give a date (YYYY-MM-DD) or a date and time"
                         f" (YYYY-MM-DDTHH:MM) in {tz}") from None  # fmt: skip


def _name(asked: Mapping[str, str], key: str, limit: int = MAX_NAME) -> str | None:
    value = asked.get(key, "").strip()
    if len(value) > limit:
        raise UsageError(f"{key} is at most {limit} characters")
    return value or None


def _kind(asked: Mapping[str, str]) -> str | None:
    kind = _name(asked, "kind", MAX_KIND)
    if kind is not None and KIND_RE.fullmatch(kind) is None:
        raise UsageError("kind is an event kind (session.closed) or a prefix (session.)")
    return kind


def _severities(asked: Mapping[str, str]) -> tuple[str, ...] | None:
    least = _name(asked, "severity", 16)
    if least is None:
        return None
    if least not in SEVERITIES:
        raise UsageError(f"severity is one of {', '.join(SEVERITIES)}")
    return SEVERITIES[SEVERITIES.index(least) :]


def _session(asked: Mapping[str, str]) -> str | None:
    session = _name(asked, "session", 128)
    if session is not None and SESSION_ID_RE.fullmatch(session) is None:
        raise UsageError("session is not a session id")
    return session


def wanted(asked: Mapping[str, str], tz: str) -> EventFilter:
    """The filter a search asks for; UsageError, in one line, for a value out of shape."""
    return EventFilter(since=moment(asked.get("since"), "since", tz),
                       until=moment(asked.get("until"), "until", tz, end=True),
                       kind=_kind(asked), actor=_name(asked, "actor"),
                       subject=_name(asked, "subject"), session_id=_session(asked),
                       severities=_severities(asked))  # fmt: skip


def paging(asked: Mapping[str, str]) -> tuple[int | None, int]:
    """(the seq to continue below or None, the page's size)."""
    cursor, limit = _name(asked, "cursor", 18), _name(asked, "limit", 3)
    if cursor is not None and not (cursor.isascii() and cursor.isdigit()):
        raise UsageError("not a cursor this listing gave")
    if limit is not None and (LIMIT_RE.fullmatch(limit) is None or int(limit) > MAX_PAGE):
        raise UsageError(f"a page holds 1 to {MAX_PAGE} events")
    return (None if cursor is None else int(cursor)), (PAGE if limit is None else int(limit))


def parsed(detail: object) -> Any:
    """An event's detail as JSON; as the text found when it is not (a row edited by hand)."""
    try:
        return json.loads(detail)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(detail)


def item(event: ChainedEvent, replay: bool) -> dict[str, Any]:
    """An event as the log shows it: its detail parsed, whether its session can be replayed."""
    return {"seq": event.seq, "at": event.at, "kind": event.kind, "severity": event.severity,
            "actor": event.actor, "subject": event.subject, "session_id": event.session_id,
            "detail": parsed(event.detail), "replay": replay}  # fmt: skip


def _record(core: Core, who: Viewer, found: EventFilter, page: EventPage, *,
            before: int | None, limit: int) -> None:  # fmt: skip
    filters = {"via": "audit log", "since": iso(found.since) if found.since else None,
               "until": iso(found.until) if found.until else None, "kind": found.kind,
               "actor": found.actor, "subject": found.subject, "session": found.session_id,
               "severity": found.severities[0] if found.severities else None,
               "before": before, "limit": limit}  # fmt: skip
    seqs = [e.seq for e in page.events]
    record_reading(core.store, who.actor, filters, len(seqs), unit="seqs",
                   span=(min(seqs), max(seqs)) if seqs else None,
                   what="the audit log")  # fmt: skip


def search(core: Core, who: Viewer, asked: Mapping[str, str], tz: str = "UTC") -> dict[str, Any]:
    """One page of the audit log, newest first; `tz` is the zone of dates and times given
    without a Z. The reading is chained (and read back) before the page is returned."""
    may_read_everything(who)
    found = wanted(asked, tz)
    before, limit = paging(asked)
    page = core.store.search_events(found, before=before, limit=limit)
    _record(core, who, found, page, before=before, limit=limit)
    sessions = {e.session_id for e in page.events if e.session_id}
    recorded = core.store.recorded_sessions(sessions) if sessions else set()
    items = [item(e, e.session_id in recorded and may_read(who, None)) for e in page.events]
    return {"items": items, "next": None if page.next is None else str(page.next),
            "looked_at": {"from_seq": page.looked_from, "to_seq": page.looked_to}}  # fmt: skip


def chain_state(core: Core, who: Viewer) -> dict[str, Any]:
    """The chain's head and the last verification recorded in it (not walked here)."""
    may_read_everything(who)
    head_seq, head_at = core.store.chain_top()
    last = core.store.last_verification()
    verified = None
    if last is not None:
        detail = parsed(last.detail)
        detail = detail if isinstance(detail, dict) else {}
        walked = detail.get("chain_walked_to", detail.get("to_seq"))  # report verify: the walk
        to_seq = walked if isinstance(walked, int) else None
        verified = {"seq": last.seq, "at": last.at, "by": last.actor,
                    "command": detail.get("command"), "ok": detail.get("ok") is True,
                    "result": detail.get("result"), "to_seq": to_seq,
                    "since_then": head_seq - last.seq}  # fmt: skip
    return {"head_seq": head_seq, "head_at": head_at, "verified": verified}
