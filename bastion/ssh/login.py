"""Reading the SSH login name: `alice+web-1` or `alice:web-1` names user and target (pure)."""

from __future__ import annotations

from dataclasses import dataclass

SEPARATORS = ("+", ":")
MAX_LOGIN = 200


@dataclass(frozen=True)
class Login:
    """Who is logging in, and where to (None: show the menu)."""

    user: str
    target: str | None


def parse_login(name: str) -> Login:
    """Split at the first separator; user names and target names contain neither."""
    name = name[:MAX_LOGIN]
    for index, char in enumerate(name):
        if char in SEPARATORS:
            target = name[index + 1 :]
            return Login(name[:index], target or None)
    return Login(name, None)
