"""Password hashing with argon2id, verification that never raises, and a strength check."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # caps the work an attacker can make us do per attempt

# OWASP / RFC 9106 style parameters: argon2id, 3 passes over 64 MiB with 2 lanes.
# About 50-100 ms per hash on a current server core; logins are rare, so this is cheap
# for us and expensive for an offline attacker. Raising these later is safe:
# needs_rehash() reports stored hashes made with older parameters.
_HASHER = PasswordHasher(
    time_cost=3,
    memory_cost=64 * 1024,  # KiB, i.e. 64 MiB
    parallelism=2,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)


def hash_password(pw: str) -> str:
    """Return an argon2id hash ("$argon2id$...") of pw; ValueError if empty or too long."""
    if not pw:
        raise ValueError("password must not be empty")
    if len(pw) > MAX_LENGTH:
        raise ValueError(f"password must be at most {MAX_LENGTH} characters")
    return _HASHER.hash(pw)


def verify_password(stored: str, pw: str) -> bool:
    """True only if pw matches stored; False on mismatch or a malformed hash, never raises."""
    if not isinstance(stored, str) or not isinstance(pw, str):
        return False
    if not pw or len(pw) > MAX_LENGTH:
        return False  # hash_password never accepted such a password
    try:
        return _HASHER.verify(stored, pw)
    except (VerificationError, InvalidHashError, ValueError, TypeError):
        return False


def verify_or_pretend(stored: str | None, pw: str) -> bool:
    """verify_password, or (stored None: no user, no password) the same work against a
    stand-in hash and False, so an answer's timing says nothing about who exists."""
    if stored is None:
        verify_password(_stand_in(), pw)
        return False
    return verify_password(stored, pw)


@functools.cache
def _stand_in() -> str:
    return hash_password("timing-equaliser-not-a-password")


def needs_rehash(stored: str) -> bool:
    """True if stored was made with other parameters (or is malformed); never raises."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except (InvalidHashError, ValueError, TypeError):
        return True


def check_password_strength(pw: str) -> str | None:
    """Return a one-line reason the password is unacceptable, or None if it is fine."""
    if len(pw) < MIN_LENGTH:
        return f"password is too short: use at least {MIN_LENGTH} characters"
    if len(pw) > MAX_LENGTH:
        return f"password is too long: use at most {MAX_LENGTH} characters"
    return None
