"""Web sessions kept server-side: opened at sign-in, looked up per request, ended on time.

The cookie holds a fresh 256-bit secret made at sign-in (never before, so a cookie planted
before sign-in is worth nothing); the store keeps only its HMAC, and a MAC over every field
of the row the guard trusts, both under a key derived from the secrets key
(bastion/audit/sessionmac.py): a row made or edited without that key is refused like a
missing one. Every request looks the session up, and ends it when it was signed out, its
person is disabled, or it outlived its idle or absolute lifetime on the core's clock. All
calls block: run them with Core.run."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.access import stepup
from bastion.access.stepup import StepUpCheck
from bastion.audit import WebSession
from bastion.audit.sessionmac import WebSessionKey
from bastion.core import Core
from bastion.errors import Denied

TOUCH_EVERY = timedelta(seconds=30)  # last_seen is written at most this often
MAX_TOKEN = 100  # a longer cookie is no session of ours, and is not looked up


@dataclass(frozen=True)
class Opened:
    """A web session just opened for a proven person: the cookie's value and the CSRF token."""

    user: str
    role: str
    token: str
    csrf_token: str


def key_of(core: Core) -> WebSessionKey:
    """The key web session rows are MACed with (derived from the secrets key, never stored)."""
    return WebSessionKey.of(core.box)


def open_session(core: Core, user: str, client: str) -> Opened:
    """A new web session for a person who just proved both factors (Core.sign_in)."""
    person = core.store.user(user)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    key = key_of(core)
    core.store.open_web_session(key, session_id=str(uuid.uuid4()), token_mac=key.token(token),
                                user=person.name, csrf_token=csrf, client=client)  # fmt: skip
    return Opened(person.name, person.role, token, csrf)


def listed(core: Core, user: str) -> list[WebSession]:
    """`user`'s live web sessions (those whose rows hold their MAC), newest first."""
    return core.store.web_sessions(user, key_of(core))


def why_over(core: Core, session: WebSession) -> str | None:
    """Why this session may not be used any more (None: it may)."""
    if session.ended_at is not None:
        return session.end_reason or "signed out"
    if session.user_disabled:
        return "user disabled"
    now = core.clock.now()
    policy = core.web_policy_at(session.started_at)  # its own, whatever a reload did since
    if now - session.started_at >= policy.session_lifetime:
        return "lifetime over"
    if now - session.last_seen_at >= policy.idle_timeout:
        return "idle"
    return None


def _found(core: Core, token: str) -> WebSession | None:
    if not token or len(token) > MAX_TOKEN:
        return None
    key = key_of(core)
    return core.store.web_session_by_token(key, key.token(token))


def current(core: Core, token: str) -> WebSession | None:
    """The live web session the cookie `token` names, or None (and it is ended if due); a
    use counts as activity (written at most every TOUCH_EVERY)."""
    found = _found(core, token)
    if found is None:
        return None
    over = why_over(core, found)
    if over is not None:
        if found.ended_at is None:
            core.store.end_web_session(found.id, over, "bastion")
        return None
    if core.clock.now() - found.last_seen_at >= TOUCH_EVERY:
        return core.store.touch_web_session(key_of(core), found)
    return found


def peek(core: Core, token: str) -> WebSession | None:
    """The live web session `token` names, looked up without counting as activity (an open
    page keeps no one signed in) and without ending it; None if there is none or it is over."""
    found = _found(core, token)
    return found if found is not None and why_over(core, found) is None else None


def replace(core: Core, token: str) -> None:
    """At sign-in: a session the browser still holds is ended, never carried on."""
    old = current(core, token)
    if old is not None:
        core.store.end_web_session(old.id, "replaced by a new sign-in", old.user)


def end(core: Core, session: WebSession, reason: str) -> None:
    core.store.end_web_session(session.id, reason, session.user)


def end_everywhere(core: Core, session: WebSession) -> list[str]:
    return core.store.end_user_web_sessions(session.user, "signed out everywhere", session.user)


# -- step-up: a recent TOTP proof for an admin's writes (bastion/access/stepup.py decides) --


def step_up_check(core: Core, session: WebSession) -> StepUpCheck:
    """Whether this session proved its person's code recently enough for a step-up write."""
    window = core.web_policy_at(session.started_at).step_up
    return stepup.check(role=session.role, proven_at=session.proven_at, now=core.clock.now(),
                        window=window)  # fmt: skip


def proved(core: Core, session: WebSession, client: str) -> datetime | None:
    """This session's person just proved a code (Core.step_up): kept on this session's row
    only; until when it holds. Denied when the session ended meanwhile."""
    if not core.store.prove_web_session(key_of(core), session, client):
        raise Denied("this sign-in has ended; sign in again")
    return stepup.valid_until(core.clock.now(), core.web_policy_at(session.started_at).step_up)


def after_failed_step_up(core: Core, session: WebSession) -> bool:
    """Wrong codes that locked the account end this web session: whoever holds the cookie may
    guess no further. True when it ended."""
    if not core.store.user(session.user).locked_at(core.clock.now()):
        return False
    core.store.end_web_session(session.id, "locked: too many wrong codes", "bastion")
    return True
