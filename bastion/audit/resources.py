"""Store queries for targets."""

from __future__ import annotations

from bastion.audit.base import StoreBase
from bastion.audit.chain import Event
from bastion.audit.records import Target, target_from_row
from bastion.audit.requests import cancel_pending
from bastion.audit.sqlconn import Duplicate
from bastion.clock import iso
from bastion.errors import Conflict, NotFound


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
            except Duplicate as exc:
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
        """Retire a target, revoke its live grants and cancel its pending requests; returns
        grants revoked."""
        target = self.target(name)
        now = iso(self.clock.now())
        with self._write() as conn:
            conn.execute("UPDATE targets SET removed_at = ? WHERE id = ?", (now, target.id))
            revoked = conn.execute(
                "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE target_id = ?"
                " AND revoked_at IS NULL AND ends_at > ?",
                (now, actor, target.id, now),
            ).rowcount
            cancelled = cancel_pending(conn, ("target_id", target.id), actor, "target removed", now)
            detail = {"grants_revoked": revoked, "requests_cancelled": len(cancelled)}
            event = Event("target.removed", actor, name, "warning", detail=detail)
            self._append(conn, [event, *cancelled])
        return revoked

    def set_target_roles(
        self, name: str, roles: dict[str, tuple[str, bytes]], actor: str, detail: dict[str, int]
    ) -> None:
        """Keep the roles `target harden` made (purpose -> login and sealed password)."""
        target = self.target(name)
        now = iso(self.clock.now())
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO target_roles (target_id, purpose, login, secret_sealed, created_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT (target_id, purpose) DO UPDATE SET"
                " login = excluded.login, secret_sealed = excluded.secret_sealed,"
                " created_at = excluded.created_at",
                [(target.id, purpose, login, sealed, now)
                 for purpose, (login, sealed) in sorted(roles.items())],
            )  # fmt: skip
            logins = {purpose: login for purpose, (login, _) in roles.items()}
            event = Event("target.hardened", actor, name, "notice", detail={**logins, **detail})
            self._append(conn, [event])

    def target_role(self, name: str, purpose: str) -> tuple[str, bytes]:
        """The login and sealed password of a role `target harden` made; NotFound otherwise."""
        target = self.target(name)
        rows = self._rows(
            "SELECT login, secret_sealed FROM target_roles WHERE target_id = ? AND purpose = ?",
            [target.id, purpose],
        )
        if not rows:
            raise NotFound(f"{name} has no {purpose} role: run bastion target harden {name}")
        return str(rows[0]["login"]), bytes(rows[0]["secret_sealed"])

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
