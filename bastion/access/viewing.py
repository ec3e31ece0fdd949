"""Who may read which sessions, recordings, statements and unmask grants: an allow-list by role.

An admin or a reviewer reads everyone's; an engineer reads only their own (their sessions,
their recordings, their statements, their unmask grants); the operator of the bastion host
(the CLI, running as an OS account with the files) reads everyone's. Any other role reads
nothing. Pure: no store, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.errors import Denied

SEES_EVERYONE = ("operator", "admin", "reviewer")  # the people whose job is to review others
SEES_OWN = ("engineer",)  # an engineer's own sessions and recordings: "my sessions"


@dataclass(frozen=True)
class Viewer:
    """Who is reading: `actor` as audit events name them, `person` the bastion user behind
    it (None for the host's operator), `role` the user's role ("operator" on the CLI)."""

    actor: str
    person: str | None
    role: str

    @classmethod
    def operator(cls, actor: str) -> Viewer:
        """The CLI on the bastion host: whoever runs it has the store and its key already."""
        return cls(actor, None, "operator")

    @classmethod
    def user(cls, name: str, role: str, actor: str | None = None) -> Viewer:
        """A signed-in bastion user (the web console)."""
        return cls(actor or name, name, role)


def whose(viewer: Viewer, asked: str | None) -> str | None:
    """The person a listing is narrowed to: `asked` (None: everyone) for those who see
    everyone; the viewer themself for an engineer, who is refused when asking for another."""
    if viewer.role in SEES_EVERYONE:
        return asked
    if viewer.role in SEES_OWN and viewer.person:
        if asked is not None and asked != viewer.person:
            raise Denied(f"{viewer.person} may see only their own; not {asked}'s")
        return viewer.person
    raise Denied(f"the role {viewer.role!r} may not read sessions, recordings or the logs")


def may_read(viewer: Viewer, owner: str | None) -> bool:
    """Whether the viewer may read one item (a session, its recording) of `owner`. Callers
    answer "not found" when not, as for an id that does not exist: an engineer cannot
    learn which of other people's session ids are real."""
    if viewer.role in SEES_EVERYONE:
        return True
    return viewer.role in SEES_OWN and viewer.person is not None and owner == viewer.person


def may_read_everything(viewer: Viewer) -> None:
    """The whole audit trail (every person's events, every statement's) is for those who
    see everyone; anyone else is refused outright, not narrowed."""
    if viewer.role not in SEES_EVERYONE:
        raise Denied(f"the role {viewer.role!r} may not read the audit log")
