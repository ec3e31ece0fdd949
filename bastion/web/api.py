"""The JSON API under /api/v1/: what the pages do, for scripts; described at /api/v1/openapi.json.

Bodies are JSON objects of strings with exactly the declared fields: a field the route does
not know (a `user` naming someone else, say) is refused, never ignored. The person is always
the one signed in."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bastion.clock import iso
from bastion.console import engineer, websessions
from bastion.errors import BastionError, Conflict, Denied, NotFound, StoreError, UsageError
from bastion.web import websession
from bastion.web.routes import ANYONE, ROUTES_KEY, Routes
from bastion.web.signin import SignInRefused, sign_in
from bastion.web.state import LIMITER_KEY, client_of, core_of, session_of

STATUS = {UsageError: 400, Denied: 403, NotFound: 404, Conflict: 409, StoreError: 503}
MAX_BODY = 64 * 1024


def schema(*required: str, optional: tuple[str, ...] = ()) -> dict[str, object]:
    """A JSON object of string fields, nothing more."""
    names = (*required, *optional)
    return {"type": "object", "additionalProperties": False, "required": list(required),
            "properties": {n: {"type": "string", "maxLength": 4096} for n in names}}  # fmt: skip


SIGNIN = schema("username", "password", "code")
REQUEST = schema("target", "for", "reason", optional=("mode", "ticket"))
UNMASK = schema("target", "columns", "subject", "reason", "consent_ref",
                optional=("consent_sha256", "for"))  # fmt: skip
TICKET = schema("target", "code")


class BadRequest(UsageError):
    pass


def error(exc: BastionError) -> web.Response:
    status = next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)
    return web.json_response({"error": exc.message}, status=status)


async def body_of(request: web.Request, wanted: dict[str, Any]) -> dict[str, str]:
    """The request's JSON object, checked against `wanted` (a schema() of strings)."""
    if request.content_type != "application/json":
        raise BadRequest("send the body as application/json")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise BadRequest("the body is too large")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    known = wanted["properties"]
    assert isinstance(known, dict)
    for name, value in data.items():
        if name not in known:
            raise BadRequest(f"unknown field {name!r}: the person is always the one signed in"
                             if name in ("user", "username", "requested_by")
                             else f"unknown field {name!r}")  # fmt: skip
        if not isinstance(value, str) or len(value) > 4096:
            raise BadRequest(f"{name} must be a string of at most 4096 characters")
    missing = [n for n in wanted["required"] if n not in data]
    if missing:
        raise BadRequest(f"missing field(s): {', '.join(missing)}")
    return data


def _no_query(request: web.Request) -> None:
    declared = request.app[ROUTES_KEY].lookup(request)
    allowed = declared.query if declared else ()
    for name in request.query:
        if name not in allowed:
            raise BadRequest(f"unknown parameter {name!r}: you see only your own things")


Call = Callable[[web.Request], Any]


def endpoint(call: Call) -> Callable[[web.Request], Any]:
    """Run a data call off the loop; BastionErrors become JSON refusals."""

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            _no_query(request)
            result = await call(request)
        except BastionError as exc:
            return error(exc)
        if isinstance(result, web.StreamResponse):
            return result
        return web.json_response(result, status=201 if request.method == "POST" else 200)

    return handler


async def _signin(request: web.Request) -> web.StreamResponse:
    data = await body_of(request, SIGNIN)
    core, client = core_of(request), client_of(request)
    try:
        done = await sign_in(core, request.app[LIMITER_KEY], username=data["username"],
                             password=data["password"], code=data["code"],
                             client=client)  # fmt: skip
    except SignInRefused as exc:
        return web.json_response({"error": exc.message}, status=exc.status)
    await websession.replace(core, request)
    response = web.json_response({"user": done.user, "role": done.role,
                                  "csrf_token": done.csrf_token})  # fmt: skip
    websession.set_cookie(response, core, done.token)
    return response


async def _me(request: web.Request) -> dict[str, Any]:
    session, core = session_of(request), core_of(request)
    until = websessions.step_up_check(core, session).valid_until
    return {"user": session.user, "role": session.role, "csrf_token": session.csrf_token,
            "session": session.public(),
            "step_up_until": iso(until) if until else None}  # fmt: skip


def _mine(fn: Callable[..., Any]) -> Call:
    async def call(request: web.Request) -> Any:
        core = core_of(request)
        return await core.run(fn, core, session_of(request).user)

    return call


async def _request(request: web.Request) -> Any:
    data = await body_of(request, REQUEST)
    core, user = core_of(request), session_of(request).user
    return await core.run(lambda: engineer.request_access(
        core, user, target=data["target"], for_=data["for"], reason=data["reason"],
        mode=data.get("mode", "read"), ticket=data.get("ticket")))  # fmt: skip


async def _unmask(request: web.Request) -> Any:
    data = await body_of(request, UNMASK)
    core, user = core_of(request), session_of(request).user
    return await core.run(lambda: engineer.request_unmask(
        core, user, target=data["target"], columns=data["columns"], subject=data["subject"],
        reason=data["reason"], consent_ref=data["consent_ref"],
        consent_sha256=data.get("consent_sha256"), for_=data.get("for")))  # fmt: skip


async def _ticket(request: web.Request) -> Any:
    data = await body_of(request, TICKET)
    core, user = core_of(request), session_of(request).user
    client, host = client_of(request), request.url.host or "localhost"
    return await core.run(
        lambda: engineer.mint_ticket(
            core, user, target=data["target"], code=data["code"], client=client, host=host
        )
    )


async def _signout(request: web.Request) -> web.StreamResponse:
    await websession.end(core_of(request), session_of(request), "signed out")
    response = web.json_response({"signed_out": True})
    websession.clear_cookie(response)
    return response


async def _signout_everywhere(request: web.Request) -> web.StreamResponse:
    ended = await websession.end_everywhere(core_of(request), session_of(request))
    response = web.json_response({"signed_out": ended})
    websession.clear_cookie(response)
    return response


V1 = "/api/v1"
API: tuple[tuple[str, str, Call, frozenset[str], str], ...] = (
    ("GET", "/me", _me, ANYONE, "Who is signed in, and the CSRF token"),
    ("GET", "/access", _mine(engineer.my_access), ANYONE,
     "My grants now and to come, with the seconds each has left"),
    ("GET", "/requests", _mine(engineer.my_requests), ANYONE, "My access requests"),
    ("POST", "/requests", _request, ANYONE, "Request access to a target for myself"),
    ("GET", "/unmask-requests", _mine(engineer.my_unmasks), ANYONE,
     "My unmask requests and grants"),
    ("POST", "/unmask-requests", _unmask, ANYONE,
     "Ask to see one subject's masked values, with their consent"),
    ("GET", "/sessions", _mine(engineer.my_sessions), ANYONE,
     "My sessions through the SSH and database doors"),
    ("GET", "/web-sessions", _mine(engineer.my_web_sessions), ANYONE,
     "My live web console sign-ins"),
    ("POST", "/tickets", _ticket, ANYONE,
     "A one-time database password (after a fresh TOTP code) and its psql command"),
    ("POST", "/signout", _signout, ANYONE, "Sign out of this session"),
    ("POST", "/signout-everywhere", _signout_everywhere, ANYONE, "End every web session of mine"),
)  # fmt: skip
BODIES = {"/requests": REQUEST, "/unmask-requests": UNMASK, "/tickets": TICKET}


def add_api(routes: Routes) -> None:
    """Every API route with its roles (and, for writes, its body's schema)."""
    routes.add(
        "POST",
        f"{V1}/signin",
        endpoint(_signin),
        (),
        public=True,
        body=SIGNIN,
        summary="Sign in with user name, password and TOTP code; sets the cookie",
    )
    for method, path, call, roles, summary in API:
        body = BODIES.get(path) if method == "POST" else None
        routes.add(method, V1 + path, endpoint(call), roles, summary=summary, body=body)
