"""Store queries for targets and the grants that open them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime

from bastion.audit.base import StoreBase, where
from bastion.audit.chain import Event
from bastion.audit.records import Grant, Target, grant_from_row, target_from_row
from bastion.clock import iso
from bastion.errors import Conflict, NotFound

GRANT_SELECT = (
    "SELECT g.*, u.name AS user, t.name AS target FROM grants g"
    " JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id"
)


class ResourceQueries(StoreBase):
    def add_target(
        self,
        *,
        name: str,
        kind: str,
        host: str,
        port: int,
        login: str,
        database: str | None,
        secret_sealed: bytes,
        actor: str,
    ) -> Target:
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO targets (name, kind, host, port, login, database,"
                    " secret_sealed, created_at) VALUES (?,?,?,?,?,?,?,?)",
                    (name, kind, host, port, login, database, secret_sealed, iso(self.clock.now())),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"target {name!r} exists already") from exc
            detail = {"kind": kind, "host": host, "port": port, "login": login}
            if database:
                detail["database"] = database
            self._append(conn, [Event("target.added", actor, name, "notice", detail=detail)])
        return self.target(name)

    def find_target(self, name: str) -> Target | None:
        rows = self._rows("SELECT * FROM targets WHERE name = ? AND removed_at IS NULL", [name])
        return target_from_row(rows[0]) if rows else None

    def target(self, name: str) -> Target:
        found = self.find_target(name)
        if found is None:
            raise NotFound(f"no target named {name!r}")
        return found

    def targets(self) -> list[Target]:
        rows = self._rows("SELECT * FROM targets WHERE removed_at IS NULL ORDER BY name")
        return [target_from_row(r) for r in rows]

    def target_secret(self, name: str) -> bytes:
        """The sealed credential; only identity's SecretBox can open it."""
        target = self.target(name)
        rows = self._rows("SELECT secret_sealed FROM targets WHERE id = ?", [target.id])
        return bytes(rows[0]["secret_sealed"])

    def remove_target(self, name: str, actor: str) -> int:
        """Retire a target and revoke its live grants; returns grants revoked."""
        target = self.target(name)
        now = iso(self.clock.now())
        with self._write() as conn:
            conn.execute("UPDATE targets SET removed_at = ? WHERE id = ?", (now, target.id))
            revoked = conn.execute(
                "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE target_id = ?"
                " AND revoked_at IS NULL AND ends_at > ?",
                (now, actor, target.id, now),
            ).rowcount
            self._append(
                conn,
                [
                    Event(
                        "target.removed", actor, name, "warning", detail={"grants_revoked": revoked}
                    )
                ],
            )
        return revoked

    def set_host_key(self, name: str, host_key: str, fingerprint: str, actor: str) -> Target:
        """Pin the target's host key; replacing a pinned one is a high-severity event."""
        target = self.target(name)
        severity = "high" if target.host_key and target.host_key != host_key else "notice"
        with self._write() as conn:
            conn.execute("UPDATE targets SET host_key = ? WHERE id = ?", (host_key, target.id))
            detail = {"fingerprint": fingerprint, "replaced": bool(target.host_key)}
            event = Event("target.host_key_trusted", actor, name, severity, detail=detail)
            self._append(conn, [event])
        return self.target(name)

    # -- grants -----------------------------------------------------------------------

    def add_grant(
        self,
        *,
        user: str,
        target: str,
        mode: str,
        starts_at: datetime,
        ends_at: datetime,
        reason: str,
        actor: str,
        ticket_ref: str | None = None,
    ) -> Grant:
        user_id = self._id_by_name("users", user)
        target_row = self.target(target)
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO grants (user_id, target_id, mode, starts_at, ends_at, reason,"
                " granted_by, created_at, ticket_ref) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    user_id,
                    target_row.id,
                    mode,
                    iso(starts_at),
                    iso(ends_at),
                    reason,
                    actor,
                    iso(self.clock.now()),
                    ticket_ref,
                ),
            )
            grant_id = cursor.lastrowid
            detail = {
                "grant": grant_id,
                "target": target,
                "mode": mode,
                "from": iso(starts_at),
                "until": iso(ends_at),
                "reason": reason,
                "ticket": ticket_ref,
            }
            self._append(conn, [Event("grant.created", actor, user, "notice", detail=detail)])
        return self.grant(int(grant_id or 0))

    def grant(self, grant_id: int) -> Grant:
        rows = self._rows(GRANT_SELECT + " WHERE g.id = ?", [grant_id])
        if not rows:
            raise NotFound(f"no grant with id {grant_id}")
        return grant_from_row(rows[0])

    def grants(
        self, *, user: str | None = None, target: str | None = None, live_at: datetime | None = None
    ) -> list[Grant]:
        live = (iso(live_at), iso(live_at)) if live_at is not None else None
        clause, params = where([
            ("u.name = ?", user or None),
            ("t.name = ? AND t.removed_at IS NULL", target or None),
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
            self._append(
                conn,
                [
                    Event(
                        "grant.revoked",
                        actor,
                        grant.user,
                        "notice",
                        detail={"grant": grant_id, "target": grant.target},
                    )
                ],
            )
        return self.grant(grant_id)
