"""The console's sign-in, in one place: password, then TOTP, then a fresh web session.

The shared admission flow (Core.sign_in: proof, then TOTP, each step audited as at every
door), so the web shares the other doors' single use of a TOTP step, their lockout and
their audit events. Before anything is looked up a
blocked address is turned away; an unknown user, a disabled or locked one and a wrong
password each cost one argon2 verify and get the same answer."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.access.preauth import PreauthLimiter
from bastion.audit import Event
from bastion.console import websessions
from bastion.core import Core
from bastion.errors import Denied, StoreLost

WRONG = "wrong user name, password or verification code"  # as Core.sign_in says it
MAX_FIELD = 1024  # longer user names, passwords or codes are refused unread


class SignInRefused(Exception):
    """One line for the person; status is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class SignedIn:
    user: str
    role: str
    token: str  # the new session cookie's value
    csrf_token: str


async def sign_in(core: Core, limiter: PreauthLimiter, *, username: str, password: str,
                  code: str, client: str) -> SignedIn:  # fmt: skip
    """Both factors for `username` from `client`, or SignInRefused; audited as the doors do."""
    if limiter.blocked(client, core.clock.now()):
        core.metrics.preauth_refused("web")
        raise SignInRefused(f"too many failed sign-ins from {client}; try again later", 429)
    if not username or max(len(username), len(password), len(code)) > MAX_FIELD:
        await _failed(core, limiter, client)
        raise SignInRefused(WRONG)
    try:
        admission = await core.sign_in("web", client, username, password, code)
    except StoreLost as exc:  # this node's fault, not the person's: no failure counted
        raise SignInRefused(str(exc), 503) from None
    except Denied as exc:
        await _failed(core, limiter, client)
        raise SignInRefused(str(exc)) from None
    opened = await core.run(websessions.open_session, core, admission.user, client)
    return SignedIn(opened.user, opened.role, opened.token, opened.csrf_token)


async def _failed(core: Core, limiter: PreauthLimiter, client: str) -> None:
    """Count a failure against the address; the one that blocks it is audited, as the doors do."""
    if limiter.failed(client, core.clock.now()):
        await core.audit(Event("auth.source_blocked", f"web:{client}", "", "high",
                               detail={"source": client}))  # fmt: skip
