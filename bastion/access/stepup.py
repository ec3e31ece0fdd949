"""Step-up: whether a web session proved a TOTP code recently enough for a consequential write.

A signed-in cookie is not enough for an admin's write (add a user, grant, revoke, offboard,
kill a session...): the session must have proven its person's TOTP code within the
configured window (`[web] step_up`), as GitHub's sudo mode does. Signing in counts as proof;
so does a code entered for this very session in the step-up form, which goes through the
shared TOTP check (single use of a step, lockout, the doors' audit events). A proof belongs
to one web session of one person: it is kept on that session's row and read back only with
it. This module is pure: the core checks codes and keeps the time, the web door only asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Who ever needs a fresh proof: the roles with a write that asks for one. Anyone else is
# refused the step-up itself, so it can gain them nothing (their role check comes first).
STEP_UP_ROLES = frozenset({"admin", "reviewer"})
NEEDED = (
    "refused: this change needs a fresh verification code; enter your TOTP code to confirm"
    " it is you (step-up), then try again"
)
SESSION = "web session"  # what stands for the first factor in a step-up's Admission


@dataclass(frozen=True)
class StepUpCheck:
    """The answer: allowed, or not with the line to show; and until when the proof holds."""

    allowed: bool
    reason: str = ""
    valid_until: datetime | None = None


def valid_until(proven_at: datetime | None, window: timedelta) -> datetime | None:
    """Until when a proof made at `proven_at` counts (None: there is none)."""
    if proven_at is None or window <= timedelta(0):
        return None
    return proven_at + window


def check(*, role: str, proven_at: datetime | None, now: datetime,
          window: timedelta) -> StepUpCheck:  # fmt: skip
    """May a session of `role`, whose person last proved a code at `proven_at`, make a write
    that asks for a fresh proof now? Fails closed: no proof, a proof from the future (a clock
    set back) or a window of zero all refuse."""
    if role not in STEP_UP_ROLES:
        return StepUpCheck(False, f"refused: your role ({role}) has no step-up")
    until = valid_until(proven_at, window)
    if until is None or proven_at is None or proven_at > now or now >= until:
        return StepUpCheck(False, NEEDED)
    return StepUpCheck(True, valid_until=until)


def may_step_up(role: str) -> bool:
    """Whether a person of `role` may prove a code for their session at all."""
    return role in STEP_UP_ROLES
