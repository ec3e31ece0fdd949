"""What the reviewer's pages and API read and do, one call each, for both alike.

The weekly review goes through bastion/reports/signoff.py (the CLI's `report review` and
`report sign` calls); sessions, a session's commands, a recording, the query log and the
consent ledger through the shared reads in bastion/reviewing, with the signed-in person as
the Viewer: an engineer's are narrowed to their own there. All calls block: run them with
Core.run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from bastion.access.reviews import Reviews
from bastion.access.viewing import Viewer
from bastion.audit import SessionFilter, WebSession
from bastion.audit.records import SessionRecord
from bastion.clock import parse_iso
from bastion.core import Core
from bastion.errors import UsageError
from bastion.reports import signoff
from bastion.reviewing.logs import QueryFilter, consent_ledger, search_queries
from bastion.reviewing.recordings import open_recording
from bastion.reviewing.sessions import command_index, readable_session, search_sessions

REVIEWERS = frozenset({"admin", "reviewer"})
SESSION_QUERY = ("user", "target", "since", "until", "text", "protocol", "cursor")
QUERY_QUERY = ("user", "target", "since", "until", "text", "session", "cursor")
CONSENT_QUERY = ("user", "target", "state", "cursor")
MAX_BROWSER_RECORDING = 64 * 2**20  # bytes on disk: sent whole, as JSON, to the player


def viewer(session: WebSession) -> Viewer:
    """The signed-in person as the shared reads know a reader."""
    return Viewer.user(session.user, session.role)


def _reviews(core: Core) -> Reviews:
    return Reviews(core.store, core.config, core.clock)


def weeks(core: Core) -> list[dict[str, Any]]:
    return signoff.weeks(_reviews(core))


def week_findings(core: Core, label: str) -> dict[str, Any]:
    return signoff.week_findings(_reviews(core), label).public()


def review(core: Core, user: str, *, week: str, finding: str, verdict: str,
           note: str) -> dict[str, Any]:  # fmt: skip
    """Pass (ok) or flag one finding with a note, as the signed-in person (proven by TOTP at
    sign-in, within the session's idle and absolute lifetimes)."""
    done = signoff.review(_reviews(core), core.identity, week, finding, reviewer=user,
                          verdict=verdict, note=note, code=None, via=f"web:{user}")  # fmt: skip
    return done.public()


def sign(core: Core, user: str, label: str, code: str) -> dict[str, Any]:
    """Sign a week off: a decision bound to the pack, so it costs a fresh TOTP code."""
    if not code.strip():
        raise UsageError("a fresh verification code is needed to sign")
    done = signoff.sign(_reviews(core), core.identity, label, user, code=code.strip(),
                        via=f"web:{user}:sign")  # fmt: skip
    return done.public()


def moment(text: str | None, what: str, *, end: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD; as an end, the day is included) or an ISO moment; None if empty."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            day = datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time(), UTC)
            return day + timedelta(days=1) if end else day
        return parse_iso(text)
    except (ValueError, OverflowError):
        raise UsageError(f"{what}: give a date as YYYY-MM-DD") from None


def _text(asked: Mapping[str, str], name: str) -> str | None:
    value = asked.get(name, "").strip()
    return value or None


def sessions(core: Core, who: Viewer, asked: Mapping[str, str]) -> dict[str, Any]:
    """Sessions by person, target, date and command text, newest first, a page at a time."""
    wanted = SessionFilter(user=_text(asked, "user"), target=_text(asked, "target"),
                           since=moment(asked.get("since"), "since"),
                           until=moment(asked.get("until"), "until", end=True),
                           text=_text(asked, "text"),
                           protocol=_text(asked, "protocol"))  # fmt: skip
    return search_sessions(core.store, who, wanted, cursor=_text(asked, "cursor")).public()


def commands(core: Core, who: Viewer, session_id: str,
             cursor: str | None = None) -> dict[str, Any]:  # fmt: skip
    return command_index(core.store, who, session_id, cursor=cursor or None)


def recording_to_fetch(core: Core, who: Viewer, session_id: str) -> Path | None:
    """The recorded path of a recording the viewer may read, to be found (the spool's file,
    or a copy from the object store) off the store's thread first; None without an object
    store. Whether the spool still holds it is not asked here: the uploader may remove it
    at any moment, and the store's thread never downloads."""
    session = readable_session(core.store, who, session_id)
    refuse_too_large(session)  # before any download: the row holds the size
    if not session.recording_path or not core.config.recordings.url:
        return None
    return Path(session.recording_path)


def recording_fetch(core: Core, who: Viewer, session_id: str) -> tuple[Path, int] | None:
    """recording_to_fetch's path with the most bytes a copy of it may hold: the size the
    session row holds (once closed), never more than the browser's player takes."""
    path = recording_to_fetch(core, who, session_id)
    if path is None:
        return None
    row = readable_session(core.store, who, session_id).recording_size
    return path, min(row, MAX_BROWSER_RECORDING) if row is not None else MAX_BROWSER_RECORDING


def recording(
    core: Core,
    who: Viewer,
    session_id: str,
    locate: Callable[[Path, int | None], Path] | None = None,
) -> dict[str, Any]:
    """The recording as asciicast v2 text, only after `recording.replayed` is in the chain
    (read back); with the warnings to show before it. One too large to hold in memory and
    send whole is refused before anything is chained or read. locate finds a recording the
    spool no longer holds without downloading it (see recording_to_fetch)."""
    session = readable_session(core.store, who, session_id)
    refuse_too_large(session)
    opened = open_recording(core.store, core.box, who, session_id,
                            detail={"via": "web console"}, locate=locate)  # fmt: skip
    return {**opened.public(), "asciicast": opened.asciicast()}


def refuse_too_large(session: SessionRecord) -> None:
    """UsageError for a recording larger than the browser's player takes, by the size the
    session row holds or the spool's file has, whichever is larger (no download needed)."""
    size = max(_stored_size(session.recording_path), session.recording_size or 0)
    if size > MAX_BROWSER_RECORDING:
        raise UsageError(f"the recording is {size // 2**20} MiB, more than the browser's player"
                         f" takes ({MAX_BROWSER_RECORDING // 2**20} MiB): replay it with"
                         f" `bastion replay {session.id}` on the bastion host")  # fmt: skip


def _stored_size(path: str | None) -> int:
    """The recording file's size (0 when there is none: open_recording says so)."""
    try:
        return Path(path).stat().st_size if path else 0
    except OSError:
        return 0


def queries(core: Core, who: Viewer, asked: Mapping[str, str]) -> dict[str, Any]:
    wanted = QueryFilter(user=_text(asked, "user"), target=_text(asked, "target"),
                         since=moment(asked.get("since"), "since"),
                         until=moment(asked.get("until"), "until", end=True),
                         text=_text(asked, "text"), session=_text(asked, "session"))  # fmt: skip
    return search_queries(core.store, who, wanted, cursor=_text(asked, "cursor"),
                          limit=100).public()  # fmt: skip


def consents(core: Core, who: Viewer, asked: Mapping[str, str]) -> dict[str, Any]:
    return consent_ledger(core.store, who, core.clock.now(), user=_text(asked, "user"),
                          target=_text(asked, "target"), state=_text(asked, "state"),
                          cursor=_text(asked, "cursor")).public()  # fmt: skip
