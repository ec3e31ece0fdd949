"""The console's pages: sign-in, and what an engineer does for themselves.

Every page reads and writes through bastion/console/engineer.py, the calls the API makes; a
refusal is shown on the page it came from, in one line."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bastion.audit import WebSession
from bastion.console import engineer
from bastion.errors import BastionError
from bastion.web import websession
from bastion.web.html import Markup, el, join, table
from bastion.web.layout import field, form, page
from bastion.web.routes import ANYONE, Routes
from bastion.web.signin import SignInRefused, sign_in
from bastion.web.state import LIMITER_KEY, client_of, core_of, session_of

PRE_COOKIE = "__Host-bastion-signin"  # ties the sign-in form to this browser (login CSRF)
MAX_DOCUMENT = 8 * 1024 * 1024


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _left(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m"


async def _data(request: web.Request, fn: Callable[..., Any], **kwargs: Any) -> Any:
    core = core_of(request)
    return await core.run(lambda: fn(core, session_of(request).user, **kwargs))


def _filed(request: web.Request, mine: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The person's own item named by ?filed=ID (after a form that filed it), if any."""
    wanted = request.query.get("filed", "")
    return next((item for item in mine if str(item["id"]) == wanted), None)


async def _form(request: web.Request) -> dict[str, str]:
    posted = await request.post()
    return {k: v for k, v in posted.items() if isinstance(v, str)}


# -- sign-in ------------------------------------------------------------------------------


async def signin_page(request: web.Request, error: str | None = None,
                      status: int = 200) -> web.Response:  # fmt: skip
    nonce = secrets.token_urlsafe(24)
    body = el("form", {"method": "post", "action": "/signin", "class": "signin"},
              el("input", {"type": "hidden", "name": "nonce", "value": nonce}),
              field("User name", "username"), field("Password", "password", "password"),
              field("Verification code", "code", "text"),
              el("button", {"type": "submit", "id": "signin"}, "Sign in"))  # fmt: skip
    response = page("Sign in", None, body, error=error, status=status)
    response.set_cookie(PRE_COOKIE, nonce, path="/", secure=True, httponly=True,
                        samesite="Strict", max_age=900)  # fmt: skip
    return response


async def signin_post(request: web.Request) -> web.StreamResponse:
    data = await _form(request)
    pre = request.cookies.get(PRE_COOKIE, "")
    if not pre or not hmac.compare_digest(pre.encode(), data.get("nonce", "").encode()):
        return await signin_page(request, "the sign-in form expired; try again", 403)
    core = core_of(request)
    try:
        done = await sign_in(core, request.app[LIMITER_KEY], username=data.get("username", ""),
                             password=data.get("password", ""), code=data.get("code", ""),
                             client=client_of(request))  # fmt: skip
    except SignInRefused as exc:
        return await signin_page(request, exc.message, exc.status)
    await websession.replace(core, request)
    response = redirect("/access")
    websession.set_cookie(response, core, done.token)
    response.del_cookie(PRE_COOKIE, path="/")
    return response


async def signout(request: web.Request) -> web.StreamResponse:
    await websession.end(core_of(request), session_of(request), "signed out")
    response = redirect("/signin")
    websession.clear_cookie(response)
    return response


async def signout_everywhere(request: web.Request) -> web.StreamResponse:
    await websession.end_everywhere(core_of(request), session_of(request))
    response = redirect("/signin")
    websession.clear_cookie(response)
    return response


# -- my access and requests ---------------------------------------------------------------


async def access_page(request: web.Request, notice: str | None = None,
                      error: str | None = None) -> web.Response:  # fmt: skip
    session = session_of(request)
    grants = await _data(request, engineer.my_access)
    asked = await _data(request, engineer.my_requests)
    filed = _filed(request, asked)
    notice = notice or (filed["text"] if filed else None)
    grant_rows = [(g["target"], g["mode"], g["state"], g["ends_at"], _left(g["seconds_left"]),
                   g["reason"]) for g in grants]  # fmt: skip
    request_rows = [(r["id"], r["target"], r["mode"], r["state"], r["created_at"], r["reason"])
                    for r in reversed(asked[-20:])]  # fmt: skip
    ask = form("/access/request", session,
               field("Target", "target"), field("For (e.g. 2h)", "for", value="1h"),
               field("Mode", "mode", value="read", options=engineer.MODES),
               field("Reason", "reason"), field("Ticket (optional)", "ticket", required=False),
               button="Request access")  # fmt: skip
    return page("My access", session,
                table(["target", "mode", "state", "until", "time left", "reason"], grant_rows,
                      "You have no grants now or to come."),
                el("h2", None, "Request access"), ask,
                el("h2", None, "My requests"),
                table(["id", "target", "mode", "state", "asked at", "reason"], request_rows,
                      "You have made no requests."),
                notice=notice, error=error, status=400 if error else 200)  # fmt: skip


async def access_request(request: web.Request) -> web.StreamResponse:
    data = await _form(request)
    try:
        made = await _data(request, engineer.request_access, target=data.get("target", ""),
                           for_=data.get("for", ""), reason=data.get("reason", ""),
                           mode=data.get("mode", "read"), ticket=data.get("ticket"))  # fmt: skip
    except BastionError as exc:
        return await access_page(request, error=exc.message)
    return redirect(f"/access?filed={made['id']}")  # a reload does not file it again


# -- unmasking ----------------------------------------------------------------------------


async def unmask_page(request: web.Request, notice: str | None = None,
                      error: str | None = None) -> web.Response:  # fmt: skip
    session = session_of(request)
    mine = await _data(request, engineer.my_unmasks)
    if notice is None and _filed(request, mine) is not None:
        notice = (f"unmask request {request.query['filed']} filed: waiting for an admin or"
                  " reviewer to confirm the consent")  # fmt: skip
    rows = [(g["id"], g["target"], ", ".join(g["columns"]), g["subject"], g["state"],
             g["consent_ref"], g["reason"]) for g in reversed(mine)]  # fmt: skip
    ask = form("/unmask", session,
               field("Target", "target"), field("Columns (table.column, ...)", "columns"),
               field("Subject (table.column=value)", "subject"), field("Reason", "reason"),
               field("Consent reference", "consent_ref"),
               field("Consent document", "document", "file", required=False),
               field("For (e.g. 1h)", "for", required=False),
               button="Request unmasking", multipart=True)  # fmt: skip
    return page("Unmasking", session, ask, el("h2", None, "My unmask requests"),
                table(["id", "target", "columns", "subject", "state", "consent", "reason"], rows,
                      "You have made no unmask requests."),
                notice=notice, error=error, status=400 if error else 200)  # fmt: skip


async def unmask_post(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    data = {k: v for k, v in posted.items() if isinstance(v, str)}
    document = posted.get("document")
    digest = None
    if isinstance(document, web.FileField):
        content = document.file.read(MAX_DOCUMENT + 1)
        if content:  # the document is hashed, never kept (as `bastion unmask --consent-file`)
            digest = hashlib.sha256(content).hexdigest()
    try:
        made = await _data(request, engineer.request_unmask, target=data.get("target", ""),
                           columns=data.get("columns", ""), subject=data.get("subject", ""),
                           reason=data.get("reason", ""),
                           consent_ref=data.get("consent_ref", ""), consent_sha256=digest,
                           for_=data.get("for") or None)  # fmt: skip
    except BastionError as exc:
        return await unmask_page(request, error=exc.message)
    return redirect(f"/unmask?filed={made['id']}")


# -- sessions and tickets -----------------------------------------------------------------


async def sessions_page(request: web.Request) -> web.Response:
    session = session_of(request)
    mine = await _data(request, engineer.my_sessions)
    web_mine = await _data(request, engineer.my_web_sessions)
    rows = [(s["started_at"], s["target"], s["protocol"], s["state"], s["ended_at"] or "",
             s["end_reason"] or "") for s in mine]  # fmt: skip
    web_rows = [(w["started_at"], w["client"], w["last_seen_at"],
                 "this one" if w["id"] == session.id else "") for w in web_mine]  # fmt: skip
    everywhere = form("/signout-everywhere", session, button="Sign out everywhere")
    return page("My sessions", session,
                table(["started", "target", "door", "state", "ended", "why"], rows,
                      "You have no sessions yet."),
                el("h2", None, "Signed in to the console"),
                table(["since", "from", "last seen", ""], web_rows, "none"),
                everywhere)  # fmt: skip


def _ticket_form(session: WebSession) -> Markup:
    return form(
        "/ticket",
        session,
        field("Database target", "target"),
        field("Fresh verification code", "code"),
        button="Get a ticket",
    )


async def ticket_page(request: web.Request) -> web.Response:
    session = session_of(request)
    intro = el("p", None, "A password for one database connection, valid for a few minutes."
               " It costs a fresh verification code.")  # fmt: skip
    return page("Database ticket", session, intro, _ticket_form(session))


async def ticket_post(request: web.Request) -> web.Response:
    session = session_of(request)
    data = await _form(request)
    try:
        made = await _data(request, engineer.mint_ticket, target=data.get("target", ""),
                           code=data.get("code", ""), client=client_of(request),
                           host=request.url.host or "localhost")  # fmt: skip
    except BastionError as exc:
        return page("Database ticket", session, _ticket_form(session), error=exc.message,
                    status=400)  # fmt: skip
    shown = join(el("p", None, f"Use it once, before {made['expires_at']}; it is shown only now."
                    " Save the bastion's CA as bastion-ca.pem first: "),
                 el("p", None, el("a", {"href": "/bastion-ca.pem", "download": True},
                                  "bastion-ca.pem")),
                 el("pre", {"class": "command", "id": "psql"}, made["psql"]))  # fmt: skip
    return page("Database ticket", session, shown, notice=f"ticket for {made['target']}")


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/access")


async def ca_file(request: web.Request) -> web.StreamResponse:
    path = core_of(request).config.paths.tls_ca
    if not path.exists():
        raise web.HTTPNotFound(text="this bastion has no CA certificate")
    return web.FileResponse(path, headers={"Content-Type": "application/x-pem-file"})


def add_pages(routes: Routes) -> None:
    add = routes.add
    add("GET", "/signin", signin_page, (), public=True, summary="sign-in form")
    add("POST", "/signin", signin_post, (), public=True, summary="sign in")
    add("GET", "/bastion-ca.pem", ca_file, (), public=True, summary="the bastion's CA")
    add("POST", "/signout", signout, ANYONE, summary="sign out")
    add("POST", "/signout-everywhere", signout_everywhere, ANYONE, summary="sign out everywhere")
    add("GET", "/", home, ANYONE, summary="home")
    add("GET", "/access", access_page, ANYONE, summary="my access")
    add("POST", "/access/request", access_request, ANYONE, summary="request access")
    add("GET", "/unmask", unmask_page, ANYONE, summary="my unmask requests")
    add("POST", "/unmask", unmask_post, ANYONE, summary="request unmasking")
    add("GET", "/sessions", sessions_page, ANYONE, summary="my sessions")
    add("GET", "/ticket", ticket_page, ANYONE, summary="database ticket form")
    add("POST", "/ticket", ticket_post, ANYONE, summary="mint a database ticket")
