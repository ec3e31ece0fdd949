"""Step-up in the console: the form and API call that prove a fresh TOTP code for this sign-in.

Whether a write needs it, and whether the session's proof is recent enough, is decided in
bastion/access/stepup.py (the guard in bastion/web/security.py asks before the handler
runs). The code goes through Core.step_up, the doors' shared TOTP check (single use of a
step, lockout, `auth.totp_ok` or `auth.failed`), and the proof is kept on this web session's
row only. Wrong codes that lock the account end this session."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bastion.access.stepup import STEP_UP_ROLES
from bastion.audit import WebSession
from bastion.clock import iso
from bastion.console import websessions
from bastion.errors import Denied
from bastion.web import websession
from bastion.web.api import V1, body_of, endpoint, schema
from bastion.web.html import el
from bastion.web.layout import field, form, page
from bastion.web.routes import ROUTES_KEY, Routes
from bastion.web.state import client_of, core_of, session_of

STEP_UP = schema("code")
PATH = "/step-up"
MAX_CODE = 64


class Ended(Denied):
    """The step-up's wrong codes locked the account, and this sign-in ended with it."""


async def step_up(request: web.Request, session: WebSession, code: str) -> dict[str, Any]:
    """Prove `code` for the signed-in person and keep it on their session; Denied otherwise."""
    core, client = core_of(request), client_of(request)
    if len(code) > MAX_CODE:
        code = ""  # checked all the same (a wrong code counts), never stored or echoed
    try:
        await core.step_up("web", client, session.user, code.strip())
    except Denied as exc:
        if await core.run(websessions.after_failed_step_up, core, session):
            raise Ended(f"{exc.message}; this sign-in has ended") from None
        raise
    until = await core.run(websessions.proved, core, session, client)
    return {"user": session.user, "session": session.id,
            "valid_until": iso(until) if until else None}  # fmt: skip


def back_to(request: web.Request, path: str) -> str:
    """Where to go once proven: the page the refused write came from (the nearest page at or
    above its path that takes no query), or home; never another site."""
    routes = request.app[ROUTES_KEY]
    candidate = path if path.startswith("/") and not path.startswith("//") else "/"
    while candidate not in ("", "/"):
        found = routes.declared.get(("GET", candidate))
        if found is not None and not (found.api or found.query or found.path or found.public):
            return candidate
        candidate = candidate.rsplit("/", 1)[0]
    return "/"


def step_up_page(request: web.Request, session: WebSession, *, back: str, error: str | None,
                 status: int = 403) -> web.Response:  # fmt: skip
    """The small form: the person's current TOTP code, then back to the page to try again."""
    ask = form(PATH, session,
               el("input", {"type": "hidden", "name": "back", "value": back_to(request, back)}),
               field("Your TOTP code", "code", "text"), button="Confirm")  # fmt: skip
    said = el("p", None, "Changes in the console need a verification code proven within the"
              " last few minutes. Enter the code your authenticator shows now; then try"
              " again.")  # fmt: skip
    return page("Confirm it is you", session, said, ask, error=error, status=status)


async def needed(request: web.Request, session: WebSession, reason: str) -> web.Response:
    """The guard's answer to a write without a recent proof: one line, and where to prove."""
    if request.path.startswith("/api/"):
        return web.json_response({"error": reason, "step_up": f"{V1}{PATH}"}, status=403)
    return step_up_page(request, session, back=request.path, error=reason)


async def form_page(request: web.Request) -> web.Response:
    return step_up_page(request, session_of(request), back="/", error=None, status=200)


async def form_post(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    data = {k: v for k, v in posted.items() if isinstance(v, str)}
    session = session_of(request)
    back = back_to(request, data.get("back", "/"))
    try:
        await step_up(request, session, data.get("code", ""))
    except Ended as exc:
        response = page("Signed out", None, el("p", None, el("a", {"href": "/signin"},
                        "Sign in again")), error=exc.message, status=403)  # fmt: skip
        websession.clear_cookie(response)
        return response
    except Denied as exc:
        return step_up_page(request, session, back=back, error=exc.message)
    raise web.HTTPSeeOther(back)


async def _api(request: web.Request) -> Any:
    data = await body_of(request, STEP_UP)
    return await step_up(request, session_of(request), data["code"])


def add_step_up(routes: Routes) -> None:
    """The step-up form and call: for the roles that have writes asking for it, and needing
    no step-up themselves."""
    routes.add("GET", PATH, form_page, STEP_UP_ROLES, summary="step-up form")
    routes.add("POST", PATH, form_post, STEP_UP_ROLES, summary="prove a fresh TOTP code",
               step_up=False)  # fmt: skip
    routes.add("POST", f"{V1}{PATH}", endpoint(_api), STEP_UP_ROLES, body=STEP_UP,
               step_up=False, summary="Prove a fresh TOTP code for this sign-in (step-up):"
               " admin changes are allowed for [web] step_up after it")  # fmt: skip
