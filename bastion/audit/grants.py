"""Store queries for grants (to users and to groups), break-glass acknowledgement, and groups."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bastion.audit.base import StoreBase, where
from bastion.audit.chain import Event
from bastion.audit.outbox import Notice, enqueue
from bastion.audit.records import Grant, Group, grant_from_row
from bastion.audit.sqlconn import Conn, Duplicate, one
from bastion.clock import iso, parse_iso
from bastion.errors import Conflict, NotFound

# Grants as given: to a user (user set) or to a group (grp set, user empty).
GRANT_SELECT = (
    "SELECT g.*, COALESCE(u.name, '') AS \"user\", gr.name AS grp, t.name AS target FROM grants g"
    " LEFT JOIN users u ON u.id = g.user_id LEFT JOIN groups gr ON gr.id = g.group_id"
    " JOIN targets t ON t.id = g.target_id"
)


@dataclass(frozen=True)
class NewGrant:
    """A grant about to be written: to `user` or to `group`, never both."""

    target: str
    mode: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    actor: str
    user: str | None = None
    group: str | None = None
    ticket_ref: str | None = None
    break_glass: bool = False
    request_id: int | None = None


class GrantQueries(StoreBase):
    def add_grant(self, new: NewGrant, notices: tuple[Notice, ...] = ()) -> Grant:
        with self._write() as conn:
            grant_id = self._insert_grant(conn, new)
            enqueue(conn, self.clock.now(), notices)
        return self.grant(grant_id)

    def _insert_grant(self, conn: Conn, new: NewGrant) -> int:
        """Write the grant and its event inside the caller's transaction; returns its id."""
        user_id = self._id_by_name("users", new.user) if new.user else None
        group_id = self._id_by_name("groups", new.group) if new.group else None
        target_id = self._id_by_name("targets", new.target)
        (grant_id,) = one(conn.execute(
            "INSERT INTO grants (user_id, group_id, target_id, mode, starts_at, ends_at, reason,"
            " granted_by, created_at, ticket_ref, break_glass, request_id)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (user_id, group_id, target_id, new.mode, iso(new.starts_at), iso(new.ends_at),
             new.reason, new.actor, iso(self.clock.now()), new.ticket_ref, int(new.break_glass),
             new.request_id),
        ))  # fmt: skip
        grant_id = int(grant_id)
        detail = {"grant": grant_id, "target": new.target, "mode": new.mode,
                  "from": iso(new.starts_at), "until": iso(new.ends_at), "reason": new.reason,
                  "ticket": new.ticket_ref}  # fmt: skip
        if new.request_id is not None:
            detail["request"] = new.request_id
        kind, severity = "grant.created", "notice"
        if new.break_glass:
            kind, severity = "breakglass.opened", "high"
        holder = new.user or f"group:{new.group}"
        self._append(conn, [Event(kind, new.actor, holder, severity, detail=detail)])
        return grant_id

    def grant(self, grant_id: int) -> Grant:
        rows = self._rows(GRANT_SELECT + " WHERE g.id = ?", [grant_id])
        if not rows:
            raise NotFound(f"no grant with id {grant_id}")
        return grant_from_row(rows[0])

    def grants(
        self, *, user: str | None = None, target: str | None = None, live_at: datetime | None = None
    ) -> list[Grant]:
        """Grants as they apply to people: a group's grant once for each member."""
        live = (iso(live_at), iso(live_at)) if live_at is not None else None
        clause, params = where([
            ('"user" = ?', user or None),
            ("target = ? AND target_removed_at IS NULL", target or None),
            ("revoked_at IS NULL AND starts_at <= ? AND ends_at > ?", live),
        ])  # fmt: skip
        rows = self._rows(
            "SELECT * FROM effective_grants" + clause + ' ORDER BY id, "user"', params
        )
        return [grant_from_row(r) for r in rows]

    def grant_rows(
        self,
        *,
        target: str | None = None,
        group: str | None = None,
        live_at: datetime | None = None,
    ) -> list[Grant]:
        """Grants as given, one row each (a group's grant once, with the group's name)."""
        live = (iso(live_at), iso(live_at)) if live_at is not None else None
        clause, params = where([
            ("t.name = ? AND t.removed_at IS NULL", target or None),
            ("gr.name = ?", group or None),
            ("g.revoked_at IS NULL AND g.starts_at <= ? AND g.ends_at > ?", live),
        ])  # fmt: skip
        rows = self._rows(GRANT_SELECT + clause + " ORDER BY g.id", params)
        return [grant_from_row(r) for r in rows]

    def grants_by_ids(self, ids: Iterable[int]) -> list[Grant]:
        wanted = sorted(set(ids))
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        rows = self._rows(GRANT_SELECT + f" WHERE g.id IN ({marks})", wanted)
        return [grant_from_row(r) for r in rows]

    def revoke_grant(self, grant_id: int, actor: str) -> Grant:
        grant = self.grant(grant_id)
        if grant.revoked_at is not None:
            raise Conflict(f"grant {grant_id} was revoked already")
        with self._write() as conn:
            conn.execute(
                "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE id = ?",
                (iso(self.clock.now()), actor, grant_id),
            )
            detail = {"grant": grant_id, "target": grant.target}
            self._append(
                conn, [Event("grant.revoked", actor, grant.holder, "notice", detail=detail)]
            )
        return self.grant(grant_id)

    def acknowledge_grant(self, grant_id: int, actor: str, note: str) -> Grant:
        """A reviewer has looked at a break-glass grant: it stops being flagged."""
        grant = self.grant(grant_id)
        if not grant.break_glass:
            raise Conflict(f"grant {grant_id} is not a break-glass grant")
        if grant.acknowledged_at is not None:
            raise Conflict(f"grant {grant_id} was acknowledged by {grant.acknowledged_by} already")
        with self._write() as conn:
            conn.execute(
                "UPDATE grants SET acknowledged_at = ?, acknowledged_by = ? WHERE id = ?",
                (iso(self.clock.now()), actor, grant_id),
            )
            detail = {"grant": grant_id, "target": grant.target, "note": note}
            event = Event("breakglass.acknowledged", actor, grant.holder, "notice", detail=detail)
            self._append(conn, [event])
        return self.grant(grant_id)

    def break_glass_grants(self, *, unacknowledged: bool = False) -> list[Grant]:
        clause = " AND g.acknowledged_at IS NULL" if unacknowledged else ""
        rows = self._rows(GRANT_SELECT + " WHERE g.break_glass = 1" + clause + " ORDER BY g.id")
        return [grant_from_row(r) for r in rows]

    # -- groups -----------------------------------------------------------------------

    def add_group(self, name: str, actor: str) -> Group:
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO groups (name, created_at, created_by) VALUES (?,?,?)",
                    (name, iso(self.clock.now()), actor),
                )
            except Duplicate as exc:
                raise Conflict(f"group {name!r} exists already") from exc
            self._append(conn, [Event("group.added", actor, f"group:{name}", "notice")])
        return self.group(name)

    def set_membership(self, group: str, user: str, actor: str, *, member: bool) -> Group:
        """Add `user` to `group`, or take them out; access through the group follows at once."""
        group_id = self._id_by_name("groups", group)
        user_id = self._id_by_name("users", user)
        with self._write() as conn:
            if member:
                changed = conn.execute(
                    "INSERT INTO group_members (group_id, user_id, added_at, added_by)"
                    " VALUES (?,?,?,?) ON CONFLICT (group_id, user_id) DO NOTHING",
                    (group_id, user_id, iso(self.clock.now()), actor),
                ).rowcount
            else:
                changed = conn.execute(
                    "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                    (group_id, user_id),
                ).rowcount
            if not changed:
                state = "in" if member else "not in"
                raise Conflict(f"{user} is {state} group {group} already")
            kind = "group.member_added" if member else "group.member_removed"
            self._append(conn, [Event(kind, actor, user, "notice", detail={"group": group})])
        return self.group(group)

    def group(self, name: str) -> Group:
        found = [g for g in self.groups() if g.name == name]
        if not found:
            raise NotFound(f"no group named {name!r}")
        return found[0]

    def groups(self) -> list[Group]:
        rows = self._rows(
            "SELECT gr.name, gr.created_at, gr.created_by, u.name AS member FROM groups gr"
            " LEFT JOIN group_members m ON m.group_id = gr.id"
            " LEFT JOIN users u ON u.id = m.user_id ORDER BY gr.name, u.name"
        )
        found: dict[str, Group] = {}
        for row in rows:
            group = found.get(row["name"]) or Group(row["name"], (), parse_iso(row["created_at"]),
                                                    row["created_by"])  # fmt: skip
            members = (*group.members, row["member"]) if row["member"] else group.members
            found[row["name"]] = Group(group.name, members, group.created_at, group.created_by)
        return list(found.values())
