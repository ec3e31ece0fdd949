"""The reviewer's pages: the weekly reviews to pass, flag and sign; `add_review` adds them all.

Every page reads and writes through bastion/console/reviewer.py, the calls the reviewer's API
(review_api.py) makes; the sessions, replay, query-log and consent pages are in
review_pages.py. A refusal is shown on the page it came from, in one line."""

from __future__ import annotations

import urllib.parse
from typing import Any

from aiohttp import web

from bastion.console import reviewer
from bastion.errors import BastionError, NotFound
from bastion.web.html import Markup, el, join, table
from bastion.web.layout import field, form, page
from bastion.web.review_api import add_review_api
from bastion.web.review_pages import add_review_pages, session_url
from bastion.web.routes import Routes
from bastion.web.state import core_of, session_of

REVIEWERS = reviewer.REVIEWERS
VERDICTS = ("ok", "flag")  # ok: pass


def week_url(week: str) -> str:
    return f"/review/weeks/{urllib.parse.quote(week, safe='')}"


async def weeks_page(request: web.Request) -> web.Response:
    core = core_of(request)
    found = await core.run(reviewer.weeks, core)
    rows = [(el("a", {"href": week_url(w["week"])}, w["week"]), w["built_at"],
             f"{w['findings_open']} of {w['findings_total']}",
             f"{w['signed_by']} at {w['signed_at']}" if w["signed_at"] else "not signed")
            for w in found]  # fmt: skip
    return page("Weekly reviews", session_of(request),
                table(["week", "built", "open findings", "signed"], rows,
                      "No weekly review has been built yet."))  # fmt: skip


def _evidence(finding: dict[str, Any]) -> Markup:
    """What the finding rests on; a moment of a session links to its replay from there."""
    items = []
    for e in finding["evidence"][:10]:
        text = str(e.get("text") or e.get("ref") or "")
        session = e.get("session")
        if isinstance(session, str) and session:
            at = e.get("offset")
            query = f"?at={float(at):g}" if isinstance(at, int | float) else ""
            link = el("a", {"href": session_url(session) + query, "class": "evidence-replay"},
                      "replay")  # fmt: skip
            items.append(el("li", None, text, " ", link))
        else:
            items.append(el("li", None, text))
    return el("ul", {"class": "evidence"}, *items) if items else join()


def _decide(request: web.Request, week: str, finding: dict[str, Any]) -> Markup:
    if finding["state"] != "open":
        return el(
            "span", None, f"{finding['state']} by {finding['reviewed_by']}: {finding['note']}"
        )
    fid = finding["id"]
    verdict = el("select", {"name": "verdict", "id": f"verdict-{fid}",
                            "aria-label": "verdict"},
                 el("option", {"value": "ok"}, "pass"),
                 el("option", {"value": "flag"}, "flag"))  # fmt: skip
    note = el("input", {"type": "text", "name": "note", "id": f"note-{fid}", "required": True,
                        "placeholder": "note", "aria-label": "note",
                        "autocomplete": "off"})  # fmt: skip
    return form(f"{week_url(week)}/findings/{urllib.parse.quote(fid, safe='')}",
                session_of(request), verdict, note, button="Mark")  # fmt: skip


async def week_page(request: web.Request, notice: str | None = None,
                    error: str | None = None, status: int = 200) -> web.Response:  # fmt: skip
    core, session = core_of(request), session_of(request)
    label = request.match_info["week"]
    marked = request.query.get("marked")
    notice = notice or (f"finding {marked} marked" if marked and not error else None)
    if not notice and not error and request.query.get("signed"):
        notice = "The week is signed."
    try:
        found = await core.run(reviewer.week_findings, core, label)
    except BastionError as exc:
        code = 404 if isinstance(exc, NotFound) else 400
        return page("Weekly review", session, error=exc.message, status=code)
    week = found["week"]
    rows = [(f["id"], f["severity"], f["rule"], f["subject"] or "",
             join(el("strong", None, f["title"]), _evidence(f)),
             el("div", {"class": "decision", "id": f"decision-{f['id']}"},
                _decide(request, week, f))) for f in found["findings"]]  # fmt: skip
    if found["signed_at"]:
        signing = el("p", {"id": "signed"}, f"Signed by {found['signed_by']} at"
                     f" {found['signed_at']}; manifest SHA-256"
                     f" {found['manifest_sha256']}")  # fmt: skip
    else:
        signing = form(f"{week_url(week)}/sign", session,
                       field("Fresh verification code", "code"),
                       button="Sign the week")  # fmt: skip
    return page(f"Weekly review {week}", session,
                el("p", None, f"Built {found['built_at']}; {found['findings_open']} of"
                   f" {found['findings_total']} findings open."),
                table(["id", "severity", "rule", "about", "finding", "decision"], rows,
                      "This week has no findings."),
                el("h2", None, "Sign-off"), signing,
                notice=notice, error=error, status=status)  # fmt: skip


async def _posted(request: web.Request) -> dict[str, str]:
    posted = await request.post()
    return {k: v for k, v in posted.items() if isinstance(v, str)}


async def review_post(request: web.Request) -> web.StreamResponse:
    core, user = core_of(request), session_of(request).user
    data = await _posted(request)
    week, fid = request.match_info["week"], request.match_info["finding"]
    try:
        done = await core.run(lambda: reviewer.review(
            core, user, week=week, finding=fid, verdict=data.get("verdict", ""),
            note=data.get("note", "")))  # fmt: skip
    except BastionError as exc:
        return await week_page(request, error=exc.message, status=400)
    raise web.HTTPSeeOther(f"{week_url(done['week'])}?marked={urllib.parse.quote(fid)}")


async def sign_post(request: web.Request) -> web.StreamResponse:
    core, user = core_of(request), session_of(request).user
    data = await _posted(request)
    try:
        done = await core.run(reviewer.sign, core, user, request.match_info["week"],
                              data.get("code", ""))  # fmt: skip
    except BastionError as exc:
        return await week_page(request, error=exc.message, status=400)
    raise web.HTTPSeeOther(f"{week_url(done['week'])}?signed=1")  # a reload signs nothing


def add_review(routes: Routes) -> None:
    """The reviewer's pages and API, each route with its roles."""
    add = routes.add
    add("GET", "/review/weeks", weeks_page, REVIEWERS, summary="weekly reviews")
    add("GET", "/review/weeks/{week}", week_page, REVIEWERS, summary="a week's findings")
    add(
        "POST",
        "/review/weeks/{week}/findings/{finding}",
        review_post,
        REVIEWERS,
        summary="pass or flag a finding",
    )
    add(
        "POST",
        "/review/weeks/{week}/sign",
        sign_post,
        REVIEWERS,
        step_up=False,
        summary="sign a week (with a code of its own)",
    )
    add_review_pages(routes)
    add_review_api(routes)
