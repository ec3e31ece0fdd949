"""Session search and a session's command index, with each entry's moment in the recording."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bastion.access.viewing import SEES_EVERYONE, Viewer, may_read, whose
from bastion.audit import SessionFilter, Store
from bastion.audit.records import SessionRecord
from bastion.audit.sessions import ROW_SLACK
from bastion.clock import iso, parse_iso
from bastion.errors import NotFound, UsageError
from bastion.recording.container import valid_session_id
from bastion.reviewing.audited import record_reading

MAX_PAGE = 500
MAX_TEXT = 500  # characters of a text search: what a command or statement could be looked up by
PROTOCOLS = ("ssh", "postgres")


@dataclass(frozen=True)
class Page:
    """One page of a listing: its items, and the cursor of the next page (None: the last)."""

    items: list[dict[str, Any]]
    next: str | None

    def public(self) -> dict[str, Any]:
        return {"items": self.items, "next": self.next}


def page_size(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"a page holds 1 to {MAX_PAGE} rows, not {limit}")
    return limit


def search_text(text: str | None) -> str | None:
    """The text to search for (None: no text filter); refused when longer than MAX_TEXT."""
    if text and len(text) > MAX_TEXT:
        raise UsageError(f"a search text is at most {MAX_TEXT} characters")
    return text or None


def session_item(session: SessionRecord) -> dict[str, Any]:
    """A session as listings show it: where its recording lies on disk is not for the page."""
    data = session.public()
    data.pop("recording_path")
    data["recorded"] = session.recording_path is not None
    return data


def search_sessions(
    store: Store, viewer: Viewer, wanted: SessionFilter, *, cursor: str | None = None,
    limit: int = 50,
) -> Page:  # fmt: skip
    """Sessions matching every filter, newest first; an engineer's only their own."""
    if wanted.protocol is not None and wanted.protocol not in PROTOCOLS:
        raise UsageError(f"protocol is one of {', '.join(PROTOCOLS)}")
    if wanted.since and wanted.until and wanted.until <= wanted.since:
        raise UsageError("the end of the date range must come after its start")
    wanted = replace(wanted, user=whose(viewer, wanted.user), text=search_text(wanted.text))
    size = page_size(limit)
    found = store.search_sessions(wanted, after=_session_cursor(cursor), limit=size + 1)
    more = len(found) > size
    found = found[:size]
    if wanted.text:  # which sessions ran a statement holding the text: a reading of the log
        record_reading(store, viewer.actor, {"via": "sessions search", "user": wanted.user,
                       "target": wanted.target, "grep": wanted.text}, len(found),
                       unit="sessions", span=None)  # fmt: skip
    last = found[-1] if found else None
    following = f"{iso(last.started_at)}~{last.id}" if more and last else None
    return Page([session_item(s) for s in found], following)


def _session_cursor(cursor: str | None) -> tuple[str, str] | None:
    if not cursor:
        return None
    when, _, session_id = cursor.partition("~")
    try:
        parse_iso(when)
    except ValueError:
        raise UsageError("not a cursor this listing gave") from None
    if not valid_session_id(session_id):
        raise UsageError("not a cursor this listing gave")
    return when, session_id


def readable_session(store: Store, viewer: Viewer, session_id: str) -> SessionRecord:
    """The session, if the viewer may read it; NotFound alike for a missing one and for
    someone else's (an engineer cannot probe other people's session ids)."""
    try:
        session = store.session(session_id)
    except NotFound:
        session = None
    if session is None or not may_read(viewer, session.user) or not _owned(store, viewer, session):
        raise NotFound(f"no session with id {session_id}")
    return session


def _owned(store: Store, viewer: Viewer, session: SessionRecord) -> bool:
    """Those who see everyone may read it; anyone else only when the chain's own
    session.opened event names them: a sessions row edited by an admin with the files
    does not hand someone else's recording to an engineer."""
    if viewer.role in SEES_EVERYONE:
        return True
    start = session.started_at
    owner = store.session_owner(session.id, iso(start), iso(start + ROW_SLACK))
    return owner is not None and owner == viewer.person


def offset_of(at: datetime, started: datetime) -> float:
    """Seconds into the session (and its recording, which starts as the session opens),
    as the weekly review's evidence gives them."""
    return round(max((at - started).total_seconds(), 0.0), 3)


def command_index(
    store: Store, viewer: Viewer, session_id: str, *, cursor: str | None = None,
    limit: int = MAX_PAGE,
) -> dict[str, Any]:  # fmt: skip
    """The session, and its commands (SSH) or statements (PostgreSQL) in order, each with
    its offset into the session in seconds: a click on one plays the recording from there."""
    session = readable_session(store, viewer, session_id)
    size = page_size(limit)
    after = id_cursor(cursor) or 0
    if session.protocol == "postgres":
        rows = store.session_statements_page(session.id, after, size + 1)
        kind = "statement"
    else:
        rows = store.session_commands_page(session.id, after, size + 1)
        kind = "command"
    more = len(rows) > size
    rows = rows[:size]
    if kind == "statement":  # reading statements is `queries.listed`, however it is done
        ids = [int(row["id"]) for row in rows]
        record_reading(store, viewer.actor, {"via": "sessions index", "user": session.user,
                       "session": session.id, "after": after or None, "limit": size},
                       len(rows), unit="ids",
                       span=(min(ids), max(ids)) if ids else None)  # fmt: skip
    entries = [_entry(kind, row, session.started_at) for row in rows]
    following = str(rows[-1]["id"]) if more else None
    return {"session": session_item(session), "entries": entries, "next": following}


def _entry(kind: str, row: dict[str, Any], started: datetime) -> dict[str, Any]:
    at = parse_iso(row["at"])
    entry = {**row, "kind": kind, "at": iso(at), "offset": offset_of(at, started)}
    if kind == "command":
        entry["reconstructed"] = bool(row["reconstructed"])
    return entry


def id_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise UsageError("not a cursor this listing gave")
    return int(cursor)
