"""RFC 6238 TOTP: seeds, enrolment URIs, and which time step a code matches (pure)."""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp

PERIOD = 30
DIGITS = 6


def new_secret() -> str:
    """A fresh 160-bit seed in base32, as authenticator apps expect."""
    return str(pyotp.random_base32(length=32))


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans."""
    return str(pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer))


def step_at(when: datetime) -> int:
    return int(when.timestamp()) // PERIOD


def code_for_step(secret: str, step: int) -> str:
    return str(pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).at(step * PERIOD))


def normalise(code: str) -> str | None:
    """Accept '123456' or '123 456'; anything else is not a code at all."""
    code = code.replace(" ", "").strip()
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    return code


def matching_step(secret: str, code: str, now: datetime, skew_steps: int) -> int | None:
    """The time step within ±skew_steps of now whose code equals `code`, or None.

    Every step in the window is compared, in constant time, so timing tells nothing.
    """
    wanted = normalise(code)
    if wanted is None:
        return None
    centre = step_at(now)
    found = None
    for step in range(centre - skew_steps, centre + skew_steps + 1):
        if hmac.compare_digest(code_for_step(secret, step), wanted) and found is None:
            found = step
    return found
