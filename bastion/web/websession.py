"""Web sessions: a random cookie per sign-in, kept server-side, ended on sign-out and on time.

The cookie holds a fresh 256-bit secret made at sign-in (never before, so a cookie planted
before sign-in is worth nothing); the store keeps only its SHA-256. Every request looks the
session up, and ends it when it was signed out, its person is disabled, or it outlived its
idle or absolute lifetime on the core's clock."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from aiohttp import web

from bastion.audit import WebSession
from bastion.core import Core

COOKIE = "__Host-bastion"  # __Host-: Secure, Path=/, no Domain, enforced by browsers
TOUCH_EVERY = timedelta(seconds=30)  # last_seen is written at most this often


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(core: Core, user: str, client: str) -> tuple[str, str]:
    """A new web session for a person who just proved both factors: (cookie, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await core.run(core.store.open_web_session, session_id=str(uuid.uuid4()),
                   token_sha256=token_hash(token), user=user, csrf_token=csrf,
                   client=client)  # fmt: skip
    return token, csrf


def set_cookie(response: web.StreamResponse, core: Core, token: str) -> None:
    lifetime = int(core.config.web.session_lifetime.total_seconds())
    response.set_cookie(COOKIE, token, path="/", max_age=lifetime, secure=True, httponly=True,
                        samesite="Strict")  # fmt: skip


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")


def why_over(core: Core, session: WebSession) -> str | None:
    """Why this session may not be used any more (None: it may)."""
    if session.ended_at is not None:
        return session.end_reason or "signed out"
    if session.user_disabled:
        return "user disabled"
    now = core.clock.now()
    policy = core.config.web
    if now - session.started_at >= policy.session_lifetime:
        return "lifetime over"
    if now - session.last_seen_at >= policy.idle_timeout:
        return "idle"
    return None


async def current(core: Core, request: web.Request) -> WebSession | None:
    """The live web session this request's cookie names, or None (and it is ended if due)."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        return None
    found = await core.run(core.store.web_session_by_token, token_hash(token))
    if found is None:
        return None
    over = why_over(core, found)
    if over is not None:
        if found.ended_at is None:
            await core.run(core.store.end_web_session, found.id, over, "bastion")
        return None
    if core.clock.now() - found.last_seen_at >= TOUCH_EVERY:
        await core.run(core.store.touch_web_session, found.id)
    return found


async def replace(core: Core, request: web.Request) -> None:
    """At sign-in: a session the browser still holds is ended, never carried on."""
    old = await current(core, request)
    if old is not None:
        await core.run(core.store.end_web_session, old.id, "replaced by a new sign-in", old.user)


async def end(core: Core, session: WebSession, reason: str) -> None:
    await core.run(core.store.end_web_session, session.id, reason, session.user)


async def end_everywhere(core: Core, session: WebSession) -> list[str]:
    return await core.run(core.store.end_user_web_sessions, session.user,
                          "signed out everywhere", session.user)  # fmt: skip
