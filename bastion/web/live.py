"""The console's live sessions (every door's, kept current by server-sent events, with a kill
button for admins) and the break-glass grants waiting to be acknowledged.

What they list and do is bastion/console/live.py's (a kill is `bastion sessions kill`'s call,
an acknowledgement `bastion break-glass ack`'s), run in the core's thread; this module only
renders and streams. Reviewers watch the live list read-only; only admins kill."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bastion.access.requests import ACKNOWLEDGERS
from bastion.console import live, websessions
from bastion.console.live import MAX_REASON
from bastion.core import Core
from bastion.errors import BastionError
from bastion.web import websession
from bastion.web.api import V1, body_of, endpoint, schema
from bastion.web.html import Markup, el, table
from bastion.web.layout import form, page
from bastion.web.routes import ADMIN, Routes
from bastion.web.state import core_of, session_of

WATCHERS = frozenset({"admin", "reviewer"})  # who sees the live list; only admins kill
REFRESH = 5.0  # seconds between lists on a quiet stream (idle times move on)
KILL = schema("session_id", "reason")
ACK = schema("grant_id", optional=("note",))
HEADERS = ("who", "target", "door", "node", "from", "since", "idle", "grant")


async def live_rows(core: Core) -> list[dict[str, Any]]:
    """Every open session on every door, as the page, the stream and the API show it."""
    found = await core.live_sessions()
    return await core.run(live.rows, core, found)


async def kill(core: Core, actor: str, session_id: str, reason: str) -> dict[str, Any]:
    done = await core.run(live.kill, core, actor, session_id, reason)
    core.sessions_changed()
    return done


# -- pages -------------------------------------------------------------------------------


def _kill_form(csrf: str, session_id: str) -> Markup:
    return el("form", {"method": "post", "action": "/live/kill", "class": "inline kill"},
              el("input", {"type": "hidden", "name": "csrf", "value": csrf}),
              el("input", {"type": "hidden", "name": "session_id", "value": session_id}),
              el("input", {"type": "text", "name": "reason", "required": True,
                           "placeholder": "reason", "aria-label": "reason",
                           "maxlength": MAX_REASON, "autocomplete": "off"}),
              el("button", {"type": "submit", "class": "kill"}, "Kill"))  # fmt: skip


def _live_table(rows: list[dict[str, Any]], csrf: str | None) -> Markup:
    """The list as the page first shows it; live.js keeps it current (same cells)."""
    head = el("tr", None, *(el("th", {"scope": "col"}, h) for h in HEADERS),
              el("th", {"scope": "col"}, "" if csrf is None else "end it"))  # fmt: skip
    body = []
    for r in rows:
        cells = (r["user"], r["target"], r["door"], r["node"], r["client"], r["since"], r["idle"],
                 r["grant"])  # fmt: skip
        last: object = ""
        if r["kill_requested"]:
            last = "kill requested"
        elif csrf is not None:
            last = _kill_form(csrf, r["id"])
        body.append(el("tr", {"data-session": r["id"]}, *(el("td", None, c) for c in cells),
                       el("td", None, last)))  # fmt: skip
    attrs = {"id": "live", "data-events": "/live/events", "data-csrf": csrf}
    return el("table", attrs, el("thead", None, head), el("tbody", None, *body))


async def live_page(request: web.Request, notice: str | None = None,
                    error: str | None = None) -> web.Response:  # fmt: skip
    session, core = session_of(request), core_of(request)
    rows = await live_rows(core)
    csrf = session.csrf_token if session.role in ADMIN else None
    killed = request.query.get("killed", "")
    if notice is None and killed:
        notice = await core.run(live.kill_notice, core, killed)
    status = el(
        "p",
        {"id": "live-status", "class": "empty", "role": "status"},
        "Updates as sessions open and end." if rows else "No open sessions.",
    )
    return page("Live sessions", session, status, _live_table(rows, csrf),
                el("script", {"src": "/static/live.js", "defer": True}),
                notice=notice, error=error, status=400 if error else 200)  # fmt: skip


async def live_kill(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    data = {k: v for k, v in posted.items() if isinstance(v, str)}
    session_id = data.get("session_id", "")
    try:
        await kill(core_of(request), session_of(request).user, session_id, data.get("reason", ""))
    except BastionError as exc:
        return await live_page(request, error=exc.message)
    raise web.HTTPSeeOther(f"/live?killed={session_id}")


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _still_allowed(core: Core, request: web.Request) -> bool:
    """The web session behind the stream is still live and still a watcher's (looked up
    without counting as activity: an open page keeps no one signed in)."""
    found = await core.run(websessions.peek, core, websession.token_of(request))
    return found is not None and found.role in WATCHERS


async def live_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the whole list at once, again whenever a session opens, ends or
    is asked to end, and every REFRESH seconds while idle times move on."""
    core = core_of(request)
    response = web.StreamResponse(headers={"X-Accel-Buffering": "no"})
    response.content_type = "text/event-stream"
    await response.prepare(request)
    feed = core.subscribe_sessions()
    last: list[dict[str, Any]] | None = None
    try:
        await response.write(b"retry: 3000\n\n")
        while not feed.closed:
            if not await _still_allowed(core, request):
                await response.write(_sse("signedout", "sign in again to watch"))
                break
            rows = await live_rows(core)
            await response.write(_sse("sessions", rows) if rows != last else b": still here\n\n")
            last = rows
            await feed.wait(REFRESH)
    except ConnectionError:
        pass  # the browser went away
    finally:
        core.unsubscribe_sessions(feed)
    return response


async def break_glass_page(request: web.Request, notice: str | None = None,
                           error: str | None = None) -> web.Response:  # fmt: skip
    session, core = session_of(request), core_of(request)
    found = await core.run(live.break_glass, core)
    done = request.query.get("acknowledged", "")
    if notice is None and any(str(g["id"]) == done for g in found):
        notice = f"break-glass grant {done} acknowledged"
    rows = []
    for g in sorted(reversed(found), key=lambda g: g["acknowledged_at"] is not None):
        ack: object = f"by {g['acknowledged_by']} at {g['acknowledged_at']}"
        if g["acknowledged_at"] is None:
            ack = form("/break-glass/ack", session,
                       el("input", {"type": "hidden", "name": "grant_id", "value": g["id"]}),
                       el("input", {"type": "text", "name": "note", "placeholder": "note",
                                    "aria-label": "note", "autocomplete": "off"}),
                       button="Acknowledge")  # fmt: skip
        rows.append((g["id"], g["user"], g["target"], g["mode"], g["state"], g["starts_at"],
                     g["ends_at"], g["reason"], ack))  # fmt: skip
    return page("Break-glass", session,
                table(["id", "who", "target", "mode", "state", "from", "until", "reason",
                       "acknowledged"], rows, "No one has used break-glass access."),
                notice=notice, error=error, status=400 if error else 200)  # fmt: skip


async def break_glass_ack(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    data = {k: v for k, v in posted.items() if isinstance(v, str)}
    core, actor = core_of(request), session_of(request).user
    try:
        done = await core.run(
            live.acknowledge, core, actor, data.get("grant_id", ""), data.get("note", "")
        )
    except BastionError as exc:
        return await break_glass_page(request, error=exc.message)
    raise web.HTTPSeeOther(f"/break-glass?acknowledged={done['id']}")


# -- API ---------------------------------------------------------------------------------


async def _api_live(request: web.Request) -> Any:
    return await live_rows(core_of(request))


async def _api_kill(request: web.Request) -> Any:
    data = await body_of(request, KILL)
    return await kill(core_of(request), session_of(request).user, data["session_id"],
                      data["reason"])  # fmt: skip


async def _api_break_glass(request: web.Request) -> Any:
    core = core_of(request)
    return await core.run(live.break_glass, core)


async def _api_ack(request: web.Request) -> Any:
    data = await body_of(request, ACK)
    core = core_of(request)
    return await core.run(live.acknowledge, core, session_of(request).user, data["grant_id"],
                          data.get("note", ""))  # fmt: skip


def add_live(routes: Routes) -> None:
    """The live sessions and break-glass pages, their stream, and their API."""
    add = routes.add
    add("GET", "/live", live_page, WATCHERS, summary="live sessions")
    add("GET", "/live/events", live_events, WATCHERS, summary="live sessions (events)")
    add("POST", "/live/kill", live_kill, ADMIN, summary="end a live session")
    add("GET", "/break-glass", break_glass_page, ACKNOWLEDGERS, summary="break-glass")
    add("POST", "/break-glass/ack", break_glass_ack, ACKNOWLEDGERS, step_up=True,
        summary="acknowledge a break-glass grant")  # fmt: skip
    add(
        "GET",
        f"{V1}/live-sessions",
        endpoint(_api_live),
        WATCHERS,
        summary="Every open session on every door, with its idle time and grant",
    )
    add(
        "POST",
        f"{V1}/live-sessions/kill",
        endpoint(_api_kill),
        ADMIN,
        body=KILL,
        summary="End a live session with a reason the person is shown (as `sessions kill`)",
    )
    add(
        "GET",
        f"{V1}/break-glass",
        endpoint(_api_break_glass),
        ACKNOWLEDGERS,
        summary="Break-glass grants, acknowledged or not",
    )
    add("POST", f"{V1}/break-glass/ack", endpoint(_api_ack), ACKNOWLEDGERS, body=ACK,
        step_up=True, summary="Acknowledge a break-glass grant (as `break-glass ack`)")  # fmt: skip
