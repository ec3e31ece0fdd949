"""The reviewer's session pages: search, replay in the browser, the query log, the consent ledger.

The replay page lists the session's commands beside the asciinema player (served from
vendor/ where the set-up installs it, never from the repository); its own script
(static/replay.js) fetches the recording from the API, which chains `recording.replayed`
before the first byte, and seeks when a command is clicked. That page alone lets the player
instantiate its WebAssembly (security.CSP_WASM)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from bastion.console import reviewer
from bastion.errors import BastionError, NotFound
from bastion.reviewing.player import player_assets
from bastion.web.html import Markup, el, join, table
from bastion.web.layout import field, page
from bastion.web.routes import ANYONE, Routes
from bastion.web.security import CSP_HEADER, CSP_WASM
from bastion.web.state import core_of, session_of

PLAYER = "/player"


def _asked(request: web.Request, names: tuple[str, ...]) -> dict[str, str]:
    return {n: request.query[n] for n in names if request.query.get(n)}


def _search(action: str, asked: Mapping[str, str], *fields: tuple[str, str, str]) -> Markup:
    """A GET form (no CSRF token: it changes nothing) of optional fields."""
    controls = [field(label, name, kind, required=False, value=asked.get(name))
                for label, name, kind in fields]  # fmt: skip
    return el("form", {"method": "get", "action": action, "class": "search"}, *controls,
              el("button", {"type": "submit", "id": "search"}, "Search"))  # fmt: skip


def _more(path: str, asked: Mapping[str, str], following: str | None) -> Markup:
    if following is None:
        return join()
    query = urllib.parse.urlencode({**asked, "cursor": following})
    return el("p", None, el("a", {"href": f"{path}?{query}", "id": "next"}, "Next page"))


def session_url(session_id: str) -> str:
    return f"/review/sessions/{urllib.parse.quote(session_id, safe='')}"


async def sessions_page(request: web.Request) -> web.Response:
    core, session = core_of(request), session_of(request)
    asked = _asked(request, reviewer.SESSION_QUERY)
    form = _search("/review/sessions", asked, ("Person", "user", "text"),
                   ("Target", "target", "text"), ("From (YYYY-MM-DD)", "since", "date"),
                   ("To (YYYY-MM-DD)", "until", "date"),
                   ("Command or statement text", "text", "search"))  # fmt: skip
    try:
        found = await core.run(reviewer.sessions, core, reviewer.viewer(session), asked)
    except BastionError as exc:
        return page("Sessions", session, form, error=exc.message, status=400)
    rows = [(el("a", {"href": session_url(s["id"])}, "replay" if s["recorded"] else "open"),
             s["started_at"], s["user"] or "", s["target"] or "", s["protocol"], s["state"],
             s["ended_at"] or "", s["end_reason"] or "") for s in found["items"]]  # fmt: skip
    return page("Sessions", session, form,
                table(["", "started", "person", "target", "door", "state", "ended", "why"],
                      rows, "No session matches."),
                _more("/review/sessions", asked, found["next"]))  # fmt: skip


def _entries(entries: list[dict[str, Any]], recorded: bool) -> Markup:
    """The commands, each a button that seeks the player to its moment."""
    items = []
    for e in entries:
        text = e.get("command") or e.get("sql") or e.get("text") or ""
        at = f"{e['offset']:.1f}s"
        if recorded:
            shown: Markup = el("button", {"type": "button", "class": "seek",
                                          "data-offset": str(e["offset"])}, at)  # fmt: skip
        else:
            shown = el("span", None, at)
        items.append(el("li", None, shown, " ", el("code", None, str(text))))
    if not items:
        return el("p", {"class": "empty"}, "No command was logged in this session.")
    return el("ol", {"class": "commands", "id": "commands"}, *items)


def _controls() -> Markup:
    speeds = el("select", {"id": "speed", "aria-label": "speed"},
                *(el("option", {"value": s, "selected": s == "1"}, f"{s}x")
                  for s in ("0.5", "1", "2", "4", "8")))  # fmt: skip
    return el("p", {"class": "controls"},
              el("button", {"type": "button", "id": "play"}, "Play"),
              el("button", {"type": "button", "id": "pause"}, "Pause"),
              " Speed ", speeds)  # fmt: skip


async def replay_page(request: web.Request) -> web.StreamResponse:
    core, session = core_of(request), session_of(request)
    sid = request.match_info["session"]
    try:
        found = await core.run(reviewer.commands, core, reviewer.viewer(session), sid)
    except BastionError as exc:
        status = 404 if isinstance(exc, NotFound) else 400
        return page("Replay", session, error=exc.message, status=status)
    s = found["session"]
    facts = el("p", None, f"{s['user']} on {s['target']} ({s['protocol']}), from"
               f" {s['client_addr']}, {s['started_at']} to {s['ended_at'] or 'now'}"
               f" ({s['state']})")  # fmt: skip
    entries = _entries(found["entries"], s["recorded"])
    if found["next"]:
        more = "Only the first commands are listed; the rest are in the API (its next cursor)."
        entries = join(entries, el("p", {"class": "empty"}, more))
    if not s["recorded"]:
        return page(f"Session {sid}", session, facts, el("h2", None, "Statements"), entries)
    try:
        player_assets()
    except BastionError as exc:
        return page(f"Session {sid}", session, facts, entries, error=exc.message, status=503)
    player = join(
        el("link", {"rel": "stylesheet", "href": f"{PLAYER}/asciinema-player.css"}),
        el("link", {"rel": "stylesheet", "href": "/static/review.css"}),
        el("p", {"id": "player-status", "role": "status"}, "Opening the recording..."),
        el("div", {"class": "replay"},
           el("div", {"id": "player", "data-session": sid}),
           el("div", {"class": "index"}, el("h2", None, "Commands"), entries)),
        _controls(),
        el("script", {"src": f"{PLAYER}/asciinema-player.min.js"}),
        el("script", {"src": "/static/replay.js"}),
    )  # fmt: skip
    response = page(f"Session {sid}", session, facts, player)
    response.headers[CSP_HEADER] = CSP_WASM  # the player's WebAssembly, on this page only
    return response


async def player_file(request: web.Request) -> web.StreamResponse:
    """The player's script or style sheet, from where the set-up installed it."""
    try:
        assets = player_assets()
    except BastionError as exc:
        raise web.HTTPServiceUnavailable(text=exc.message) from None
    path = assets.js if request.match_info["name"] == assets.js.name else assets.css
    if request.match_info["name"] != path.name:
        raise web.HTTPNotFound(text="not a file of the player")
    return web.FileResponse(path)


async def queries_page(request: web.Request) -> web.Response:
    core, session = core_of(request), session_of(request)
    asked = _asked(request, reviewer.QUERY_QUERY)
    form = _search("/review/queries", asked, ("Person", "user", "text"),
                   ("Target", "target", "text"), ("From (YYYY-MM-DD)", "since", "date"),
                   ("To (YYYY-MM-DD)", "until", "date"), ("Statement text", "text", "search"),
                   ("Session", "session", "text"))  # fmt: skip
    try:
        found = await core.run(reviewer.queries, core, reviewer.viewer(session), asked)
    except BastionError as exc:
        return page("Query log", session, form, error=exc.message, status=400)
    rows = [(q["at"], q["user"] or "", q["target"] or "",
             el("a", {"href": session_url(q["session_id"])}, q["session_id"]),
             el("code", None, q["sql"]), q["tag"] or q["refused"] or "",
             "" if q["rows"] is None else q["rows"], ", ".join(q["masked"]))
            for q in found["items"]]  # fmt: skip
    return page("Query log", session, form,
                table(["at", "person", "target", "session", "statement", "result", "rows",
                       "masked"], rows, "No statement matches."),
                _more("/review/queries", asked, found["next"]))  # fmt: skip


async def consents_page(request: web.Request) -> web.Response:
    core, session = core_of(request), session_of(request)
    asked = _asked(request, reviewer.CONSENT_QUERY)
    form = _search("/review/consents", asked, ("Person", "user", "text"),
                   ("Target", "target", "text"), ("State", "state", "text"))  # fmt: skip
    try:
        found = await core.run(reviewer.consents, core, reviewer.viewer(session), asked)
    except BastionError as exc:
        return page("Consent ledger", session, form, error=exc.message, status=400)
    rows = [(g["id"], g["created_at"], g["user"], g["target"], ", ".join(g["columns"]),
             g["subject"], g["consent_ref"], g["consent_sha256"] or "", g["reason"],
             g["requested_by"], g["decided_by"] or "", g["state"], g["rows_shown"])
            for g in found["items"]]  # fmt: skip
    return page("Consent ledger", session, form,
                table(["id", "asked", "person", "target", "columns", "subject", "consent",
                       "document SHA-256", "reason", "asked by", "decided by", "state",
                       "rows shown"], rows, "No unmask grant matches."),
                _more("/review/consents", asked, found["next"]))  # fmt: skip


def add_review_pages(routes: Routes) -> None:
    add = routes.add
    add("GET", "/review/sessions", sessions_page, ANYONE, summary="sessions, searched")
    add("GET", "/review/sessions/{session}", replay_page, ANYONE, summary="replay a session")
    add(
        "GET",
        f"{PLAYER}/{{name}}",
        player_file,
        (),
        public=True,
        summary="the recording player's files",
    )
    add("GET", "/review/queries", queries_page, reviewer.REVIEWERS, summary="the query log")
    add("GET", "/review/consents", consents_page, reviewer.REVIEWERS,
        summary="the consent ledger")  # fmt: skip
