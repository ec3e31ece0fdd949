"""The console's sign-in, in one place: password, then TOTP, then a fresh web session.

The same calls the other doors make (Core.check_password, Identity.check_totp), so the web
shares their single use of a TOTP step, their lockout and their audit events; this module is
what moves to the shared admission flow when there is one. Before anything is looked up a
blocked address is turned away; an unknown user, a disabled or locked one and a wrong
password each cost one argon2 verify and get the same answer."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.access.preauth import PreauthLimiter
from bastion.audit import Event, TotpResult
from bastion.core import Core
from bastion.identity.service import refusal_text
from bastion.web import websession

WRONG = "wrong user name, password or code"
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
    via = f"web:{client}"
    if limiter.blocked(client, core.clock.now()):
        raise SignInRefused(f"too many failed sign-ins from {client}; try again later", 429)
    if not username or max(len(username), len(password), len(code)) > MAX_FIELD:
        await _failed(core, limiter, client)
        raise SignInRefused(WRONG)
    if not await core.check_password(username, password, via):
        await _failed(core, limiter, client)
        raise SignInRefused(WRONG)
    outcome = await core.run(core.identity.check_totp, username, code, via)
    if outcome.result is not TotpResult.ACCEPTED:
        await _failed(core, limiter, client)
        raise SignInRefused(refusal_text(outcome))
    user = await core.run(core.store.user, username)
    token, csrf = await websession.open_session(core, user.name, client)
    return SignedIn(user.name, user.role, token, csrf)


async def _failed(core: Core, limiter: PreauthLimiter, client: str) -> None:
    """Count a failure against the address; the one that blocks it is audited, as the doors do."""
    if limiter.failed(client, core.clock.now()):
        await core.audit(Event("auth.source_blocked", f"web:{client}", "", "high",
                               detail={"source": client}))  # fmt: skip
