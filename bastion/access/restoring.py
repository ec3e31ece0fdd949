"""Who may put back a backup of the store: a proven admin, recorded in the restored chain."""

from __future__ import annotations

from bastion.audit.records import User
from bastion.errors import Denied

RESTORERS = ("admin",)  # roles that may restore the store from a backup


def may_restore(user: User) -> None:
    """Refuses, in one line, anyone who may not restore the store."""
    if user.disabled_at is not None:
        raise Denied(f"{user.name} is disabled and may not restore the store")
    if user.role not in RESTORERS:
        raise Denied(f"{user.name} is a {user.role}; only an admin may restore the store")
