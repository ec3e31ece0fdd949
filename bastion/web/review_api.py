"""The reviewer's JSON API under /api/v1/review/: the same calls as the reviewer's pages.

Weekly reviews (list, findings, pass or flag, sign) for admins and reviewers; sessions, a
session's commands and its recording for everyone signed in, narrowed to an engineer's own
by the shared reads; the query log and the consent ledger for admins and reviewers. Writes
carry the CSRF token like every write (the guard checks it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from bastion.access.viewing import Viewer
from bastion.console import reviewer
from bastion.core import Core
from bastion.recording.fetch import fetched
from bastion.recording.model import RecordingError
from bastion.web.api import V1, body_of, endpoint, schema
from bastion.web.routes import ANYONE, Routes
from bastion.web.state import core_of, session_of

REVIEWERS = reviewer.REVIEWERS
FINDING = schema("week", "finding", "verdict", "note")
SIGNOFF = schema("week", "code")
Read = Callable[[Core, Viewer, Mapping[str, str]], Any]


def _query(request: web.Request) -> dict[str, str]:
    return {name: value for name, value in request.query.items()}


def _read(fn: Read) -> Callable[[web.Request], Any]:
    async def call(request: web.Request) -> Any:
        core, who = core_of(request), reviewer.viewer(session_of(request))
        asked = _query(request)
        return await core.run(fn, core, who, asked)

    return call


async def _weeks(request: web.Request) -> Any:
    core = core_of(request)
    return await core.run(reviewer.weeks, core)


async def _week(request: web.Request) -> Any:
    core = core_of(request)
    return await core.run(reviewer.week_findings, core, request.query.get("week", ""))


async def _review(request: web.Request) -> Any:
    data = await body_of(request, FINDING)
    core, user = core_of(request), session_of(request).user
    return await core.run(lambda: reviewer.review(
        core, user, week=data["week"], finding=data["finding"], verdict=data["verdict"],
        note=data["note"]))  # fmt: skip


async def _sign(request: web.Request) -> Any:
    data = await body_of(request, SIGNOFF)
    core, user = core_of(request), session_of(request).user
    return await core.run(reviewer.sign, core, user, data["week"], data["code"])


def _commands(core: Core, who: Viewer, asked: Mapping[str, str]) -> Any:
    return reviewer.commands(core, who, asked.get("session", ""), asked.get("cursor"))


async def _recording(request: web.Request) -> Any:
    """The viewer's right is checked first; the recording is then found (the spool's file,
    or one only in the object store downloaded) in a worker thread, never the store's: the
    doors wait on that one, so what runs there only looks up what the worker found (see
    recording.fetch.fetched: a bounded number at once, each waited for a bounded time). It
    is shown as a local one is, once its viewing is chained."""
    core, who = core_of(request), reviewer.viewer(session_of(request))
    session_id = request.query.get("session", "")
    fetch = await core.run(reviewer.recording_fetch, core, who, session_id)
    path, limit = fetch if fetch is not None else (None, 0)
    for again in (True, False):
        async with fetched(core.config, path, limit, who.actor) as found:
            try:
                return await core.run(reviewer.recording, core, who, session_id, found)
            except RecordingError:
                # the spool's file, found in the worker, removed by the uploader just after:
                # once more, from the bucket (in the worker again)
                if not again or path is None or found(path, None) != path or path.exists():
                    raise
    raise AssertionError("unreachable")


Route = tuple[str, str, Callable[[web.Request], Any], frozenset[str], tuple[str, ...], str]
API: tuple[Route, ...] = (
    ("GET", "/weeks", _weeks, REVIEWERS, (),
     "The built weekly reviews, newest first, with their open findings (reviewers)"),
    ("GET", "/findings", _week, REVIEWERS, ("week",),
     "One week's findings and the decisions on them (?week=2026-W47)"),
    ("POST", "/findings", _review, REVIEWERS, (),
     "Pass (verdict ok) or flag one finding of a week, with a note"),
    ("POST", "/signoffs", _sign, REVIEWERS, (),
     "Sign a fully reviewed week off, with a fresh TOTP code"),
    ("GET", "/sessions", _read(reviewer.sessions), ANYONE, reviewer.SESSION_QUERY,
     "Sessions by person, target, date and command text (an engineer: their own)"),
    ("GET", "/commands", _read(_commands), ANYONE, ("session", "cursor"),
     "A session's commands or statements, each with its offset in the recording"),
    ("GET", "/recording", _recording, ANYONE, ("session",),
     "A session's recording as asciicast v2, after recording.replayed is chained"),
    ("GET", "/queries", _read(reviewer.queries), REVIEWERS, reviewer.QUERY_QUERY,
     "The query log, searched (reviewers)"),
    ("GET", "/consents", _read(reviewer.consents), REVIEWERS, reviewer.CONSENT_QUERY,
     "The consent ledger: unmask grants with their consent (reviewers)"),
)  # fmt: skip
BODIES = {"/findings": FINDING, "/signoffs": SIGNOFF}
OWN_CODE = frozenset({"/signoffs"})  # signing asks for a code of its own: no step-up


def add_review_api(routes: Routes) -> None:
    """Every reviewer API route with its roles, the query parameters it takes and, for
    writes, its body's schema."""
    for method, path, call, roles, query, summary in API:
        body = BODIES.get(path) if method == "POST" else None
        routes.add(method, f"{V1}/review{path}", endpoint(call), roles, summary=summary,
                   body=body, query=query, step_up=False if path in OWN_CODE else None)  # fmt: skip
