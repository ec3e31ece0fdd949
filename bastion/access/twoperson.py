"""The two-person rule both request kinds share: who may file, and who may decide."""

from __future__ import annotations

from collections.abc import Collection

from bastion.audit import Store
from bastion.errors import Denied


def check_filer(store: Store, filer: str, user: str, roles: Collection[str], what: str) -> None:
    """Who files is a proven person: the user themselves, or an active holder of `roles`."""
    found = store.find_user(filer)
    if found is None or found.disabled_at is not None:
        raise Denied(f"{what}s are filed by an active bastion user, not {filer!r}")
    if filer != user and found.role not in roles:
        who = " and ".join(f"{role}s" for role in roles)
        raise Denied(f"{filer} has the {found.role} role; only {who} file {what}s for"
                     " someone else")  # fmt: skip


def check_not_own(
    store: Store, actor: str, asked: tuple[str, str], *, item: str, verb: str, others: str
) -> None:
    """Nobody decides on what they asked for or filed (asked: user, filer), nor on what no
    proven person filed."""
    user, filer = asked
    if actor in (user, filer):
        raise Denied(f"{actor} asked for {item}; {others} must {verb} it")
    if store.find_user(filer) is None:
        raise Denied(f"{item} was filed by {filer!r}, not a proven person; file it again with"
                     " --as NAME")  # fmt: skip
