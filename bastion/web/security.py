"""The console's guards, run on every request: declared roles, sign-in, CSRF, origin, headers.

Order: the route's declaration (none: refused), then for unsafe methods the Origin (another
site's: refused), then the session (none: sign in), the role (not on the route's list:
refused), and for unsafe methods the CSRF token (missing or wrong: refused); for a write
that asks for it, a recent TOTP proof (step-up; none: refused with the form); then an API
call's query and path values, against the schemas the OpenAPI document gives them (a value
out of shape: refused with 400). Every response, refusals included, carries the security
headers."""

from __future__ import annotations

import hmac

from aiohttp import web

from bastion.audit import WebSession
from bastion.console import websessions
from bastion.web import params, stepup, websession
from bastion.web.routes import ROUTES_KEY, Declared, Handler
from bastion.web.state import SESSION_KEY, core_of

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_REFUSED = (
    "refused: this form or API call has no valid CSRF token; reload the page and try again"
)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
CSP_HEADER = "Content-Security-Policy"
# The replay page only: the recording player instantiates WebAssembly (no eval of scripts).
CSP_WASM = CSP.replace("script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'")
HEADERS = {
    CSP_HEADER: CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the headers on every answer, errors and static files too. A page
    may ask for CSP_WASM instead of CSP (that exact policy; anything else is overwritten)."""
    wasm = response.headers.get(CSP_HEADER) == CSP_WASM
    response.headers.update(HEADERS)
    if wasm:
        response.headers[CSP_HEADER] = CSP_WASM
    if request.secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    """A refusal in the caller's language: JSON for the API, a short page otherwise."""
    if request.path.startswith("/api/"):
        return web.json_response({"error": message}, status=status)
    from bastion.web.layout import refusal_page  # noqa: PLC0415 - pages import this module

    return refusal_page(status, message)


def same_origin(request: web.Request) -> bool:
    """An unsafe request from a page of another site is refused. Browsers say where it came
    from in Sec-Fetch-Site; one that does not is judged by its Origin, which must be ours
    ("null", as a sandboxed frame sends, is not). Scripts send neither."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


async def csrf_ok(request: web.Request, session: WebSession) -> bool:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                 "multipart/form-data"):  # fmt: skip
        value = (await request.post()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent is not None and hmac.compare_digest(sent.encode(), session.csrf_token.encode())


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    declared = request.app[ROUTES_KEY].lookup(request)
    if declared is None:
        problem = request.match_info.http_exception
        if problem is not None:
            return refuse(request, problem.status, problem.reason.lower())
        return refuse(request, 403, "refused: this address has no declared roles")
    if request.method not in SAFE and not same_origin(request):
        return refuse(request, 403, "refused: the request came from another site")
    if declared.public:
        return await _checked(request, handler, declared)
    return await _signed_in(request, handler, declared)


async def _checked(
    request: web.Request, handler: Handler, declared: Declared
) -> web.StreamResponse:
    """An API call's parameters in the shape its declaration gives them, then the handler."""
    if declared.api:
        wrong = params.refusal(declared.query, list(request.query.items()),
                               request.match_info)  # fmt: skip
        if wrong:
            return refuse(request, 400, f"refused: {wrong}")
    return await handler(request)


async def _signed_in(
    request: web.Request, handler: Handler, declared: Declared
) -> web.StreamResponse:
    core = core_of(request)
    session = await websession.current(core, request)
    if session is None:
        if declared.api or request.method not in SAFE:
            return refuse(request, 401, "sign in first")
        raise web.HTTPSeeOther("/signin")
    if session.role not in declared.roles:
        allowed = ", ".join(sorted(declared.roles))
        return refuse(request, 403, f"refused: your role ({session.role}) may not use this;"
                      f" it is for {allowed}")  # fmt: skip
    if request.method not in SAFE and not await csrf_ok(request, session):
        return refuse(request, 403, CSRF_REFUSED)
    request[SESSION_KEY] = session
    if declared.step_up:
        fresh = websessions.step_up_check(core, session)
        if not fresh.allowed:
            return await stepup.needed(request, session, fresh.reason)
    return await _checked(request, handler, declared)
