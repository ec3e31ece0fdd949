"""The web session's cookie: set at sign-in, read on every request, cleared on sign-out.

What a session is, when it is over and how it ends is bastion/console/websessions.py's, run
in the core's thread; this module only moves the cookie between the browser and those calls."""

from __future__ import annotations

from aiohttp import web

from bastion.audit import WebSession
from bastion.console import websessions
from bastion.core import Core

COOKIE = "__Host-bastion"  # __Host-: Secure, Path=/, no Domain, enforced by browsers


def token_of(request: web.Request) -> str:
    return request.cookies.get(COOKIE, "")


def set_cookie(response: web.StreamResponse, core: Core, token: str) -> None:
    lifetime = int(core.config.web.session_lifetime.total_seconds())
    response.set_cookie(COOKIE, token, path="/", max_age=lifetime, secure=True, httponly=True,
                        samesite="Strict")  # fmt: skip


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")


async def current(core: Core, request: web.Request) -> WebSession | None:
    """The live web session this request's cookie names, or None (and it is ended if due)."""
    return await core.run(websessions.current, core, token_of(request))


async def replace(core: Core, request: web.Request) -> None:
    """At sign-in: a session the browser still holds is ended, never carried on."""
    await core.run(websessions.replace, core, token_of(request))


async def end(core: Core, session: WebSession, reason: str) -> None:
    await core.run(websessions.end, core, session, reason)


async def end_everywhere(core: Core, session: WebSession) -> list[str]:
    return await core.run(websessions.end_everywhere, core, session)
