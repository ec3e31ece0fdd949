"""Store queries for unmask grants; every state change is one audit event."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bastion.audit.base import StoreBase, where
from bastion.audit.chain import Event
from bastion.audit.sqlconn import one
from bastion.clock import iso, parse_iso
from bastion.errors import Conflict, NotFound

UNMASK_SELECT = (
    "SELECT g.*, u.name AS user, t.name AS target FROM unmask_grants g"
    " JOIN users u ON u.id = g.user_id JOIN targets t ON t.id = g.target_id"
)


@dataclass(frozen=True)
class UnmaskGrant:
    id: int
    user: str
    target: str
    columns: tuple[str, ...]
    subject_key: str
    subject_value: str
    reason: str
    consent_ref: str
    consent_sha256: str | None
    duration: timedelta
    requested_by: str
    created_at: datetime
    state: str
    decided_by: str | None
    starts_at: datetime | None
    ends_at: datetime | None

    def live_at(self, now: datetime) -> bool:
        return (self.state == "approved" and self.starts_at is not None
                and self.ends_at is not None and self.starts_at <= now < self.ends_at)  # fmt: skip

    def public(self, now: datetime) -> dict[str, Any]:
        shown = "active" if self.live_at(now) else self.state
        if self.state == "approved" and not self.live_at(now):
            shown = "expired"
        return {
            "id": self.id, "user": self.user, "target": self.target,
            "columns": list(self.columns),
            "subject": f"{self.subject_key}={self.subject_value}",
            "reason": self.reason, "consent_ref": self.consent_ref,
            "consent_sha256": self.consent_sha256,
            "duration": int(self.duration.total_seconds()),
            "requested_by": self.requested_by, "created_at": iso(self.created_at),
            "state": shown, "decided_by": self.decided_by,
            "starts_at": iso(self.starts_at) if self.starts_at else None,
            "ends_at": iso(self.ends_at) if self.ends_at else None,
        }  # fmt: skip


def unmask_from_row(row: dict[str, Any]) -> UnmaskGrant:
    return UnmaskGrant(
        id=row["id"], user=row["user"], target=row["target"],
        columns=tuple(json.loads(row["columns"])), subject_key=row["subject_key"],
        subject_value=row["subject_value"], reason=row["reason"], consent_ref=row["consent_ref"],
        consent_sha256=row["consent_sha256"], duration=timedelta(seconds=row["duration_s"]),
        requested_by=row["requested_by"], created_at=parse_iso(row["created_at"]),
        state=row["state"], decided_by=row["decided_by"],
        starts_at=parse_iso(row["starts_at"]) if row["starts_at"] else None,
        ends_at=parse_iso(row["ends_at"]) if row["ends_at"] else None,
    )  # fmt: skip


@dataclass(frozen=True)
class NewUnmask:
    user: str
    target: str
    columns: tuple[str, ...]
    subject_key: str
    subject_value: str
    reason: str
    consent_ref: str
    consent_sha256: str | None
    duration: timedelta
    requested_by: str


class UnmaskQueries(StoreBase):
    def add_unmask(self, new: NewUnmask) -> UnmaskGrant:
        user_id = self._id_by_name("users", new.user)
        target_id = self._id_by_name("targets", new.target)
        with self._write() as conn:
            (grant_id,) = one(conn.execute(
                "INSERT INTO unmask_grants (user_id, target_id, columns, subject_key,"
                " subject_value, reason, consent_ref, consent_sha256, duration_s, requested_by,"
                " created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
                (user_id, target_id, json.dumps(list(new.columns)), new.subject_key,
                 new.subject_value, new.reason, new.consent_ref, new.consent_sha256,
                 int(new.duration.total_seconds()), new.requested_by, iso(self.clock.now())),
            ))  # fmt: skip
            grant_id = int(grant_id)
            detail = {"unmask": grant_id, "target": new.target, "columns": list(new.columns),
                      "subject": f"{new.subject_key}={new.subject_value}", "reason": new.reason,
                      "consent_ref": new.consent_ref, "consent_sha256": new.consent_sha256,
                      "for": int(new.duration.total_seconds())}  # fmt: skip
            event = Event("unmask.requested", new.requested_by, new.user, "notice", detail=detail)
            self._append(conn, [event])
        return self.unmask(grant_id)

    def unmask(self, grant_id: int) -> UnmaskGrant:
        rows = self._rows(UNMASK_SELECT + " WHERE g.id = ?", [grant_id])
        if not rows:
            raise NotFound(f"no unmask grant with id {grant_id}")
        return unmask_from_row(rows[0])

    def unmasks(
        self, *, user: str | None = None, target: str | None = None, state: str | None = None
    ) -> list[UnmaskGrant]:
        clause, params = where([("u.name = ?", user), ("t.name = ?", target),
                                ("g.state = ?", state)])  # fmt: skip
        return [
            unmask_from_row(r)
            for r in self._rows(UNMASK_SELECT + clause + " ORDER BY g.id", params)
        ]

    def decide_unmask(
        self,
        grant_id: int,
        actor: str,
        state: str,
        *,
        reason: str = "",
        window: timedelta | None = None,
    ) -> UnmaskGrant:
        """Approve (the window opens now), deny or cancel a pending unmask grant."""
        assert state in ("approved", "denied", "cancelled")
        now = self.clock.now()
        with self._write() as conn:
            found = self.unmask(grant_id)
            if found.state != "pending":
                raise Conflict(f"unmask grant {grant_id} is {found.state}, not pending")
            ends = now + (window or found.duration) if state == "approved" else None
            conn.execute(
                "UPDATE unmask_grants SET state = ?, decided_by = ?, decided_at = ?,"
                " decision_reason = ?, starts_at = ?, ends_at = ? WHERE id = ?",
                (state, actor, iso(now), reason or None,
                 iso(now) if ends else None, iso(ends) if ends else None, grant_id),
            )  # fmt: skip
            detail: dict[str, Any] = {"unmask": grant_id, "target": found.target}
            if ends is not None:
                detail |= {"until": iso(ends), "consent_confirmed": True}
            if reason:
                detail["reason"] = reason
            kind = {"approved": "unmask.approved", "denied": "unmask.denied",
                    "cancelled": "unmask.cancelled"}[state]  # fmt: skip
            self._append(conn, [Event(kind, actor, found.user, "notice", detail=detail)])
        return self.unmask(grant_id)

    def revoke_unmask(self, grant_id: int, actor: str) -> UnmaskGrant:
        with self._write() as conn:
            found = self.unmask(grant_id)
            if found.state not in ("approved", "pending"):
                raise Conflict(f"unmask grant {grant_id} is {found.state} already")
            conn.execute(
                "UPDATE unmask_grants SET state = 'revoked', decided_by = ?, decided_at = ?"
                " WHERE id = ?",
                (actor, iso(self.clock.now()), grant_id),
            )
            detail = {"unmask": grant_id, "target": found.target}
            self._append(
                conn, [Event("unmask.revoked", actor, found.user, "notice", detail=detail)]
            )
        return self.unmask(grant_id)
