"""Offboarding a person (`bastion user disable`, the console's Disable): who may, and the one
store call that revokes their grants, requests, unmask grants, tickets and groups at once."""

from __future__ import annotations

from bastion.audit import Store
from bastion.errors import Denied


def offboard(store: Store, name: str, actor: str, reason: str = "") -> dict[str, int]:
    """Disable `name` as `actor`; the counts of what was revoked. Nobody disables themselves:
    an admin locked out of their own account by their own hand needs another admin anyway,
    and an offboarding is one person's decision about another."""
    if name == actor:
        raise Denied("you cannot disable yourself; ask another admin")
    return store.disable_user(name, actor, reason)
