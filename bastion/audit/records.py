"""Rows of the store as frozen records; what the rest of bastion sees instead of SQL."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from bastion.clock import iso, parse_iso


def _when(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    has_password: bool
    failed_attempts: int
    locked_until: datetime | None
    disabled_at: datetime | None
    created_at: datetime
    key_count: int = 0

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def public(self) -> dict[str, Any]:
        """The user as --json shows it; no secret material is in a User at all."""
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class NewKey:
    """A checked public key, ready to register."""

    algorithm: str
    public_key: str
    fingerprint: str
    comment: str


@dataclass(frozen=True)
class SshKey:
    id: int
    user: str
    algorithm: str
    public_key: str
    fingerprint: str
    comment: str
    added_at: datetime

    def public(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Target:
    id: int
    name: str
    kind: str
    host: str
    port: int
    login: str
    database: str | None
    host_key: str | None
    created_at: datetime

    def public(self) -> dict[str, Any]:
        """The target as listings show it; the sealed credential never leaves the store."""
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Grant:
    id: int
    user: str
    target: str
    mode: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    granted_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    ticket_ref: str | None = None  # the incident or change the grant was given for
    group: str | None = None  # given to this group; `user` is the member it applies to, if any
    break_glass: bool = False  # opened by the engineer in an emergency
    acknowledged_at: datetime | None = None  # break-glass: when a reviewer looked at it
    acknowledged_by: str | None = None
    request_id: int | None = None  # the approved request it came from

    @property
    def holder(self) -> str:
        """Who the grant was given to: a user's name, or "group:NAME"."""
        return f"group:{self.group}" if self.group else self.user

    def live_at(self, now: datetime) -> bool:
        return self.revoked_at is None and self.starts_at <= now < self.ends_at

    def state_at(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if now < self.starts_at:
            return "scheduled"
        return "active" if now < self.ends_at else "expired"

    def public(self, now: datetime) -> dict[str, Any]:
        return {**_jsonable(asdict(self)), "holder": self.holder, "state": self.state_at(now)}


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in data.items()}


def user_from_row(row: dict[str, Any]) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        has_password=row["password_hash"] is not None,
        failed_attempts=row["failed_attempts"],
        locked_until=_when(row["locked_until"]),
        disabled_at=_when(row["disabled_at"]),
        created_at=parse_iso(row["created_at"]),
        key_count=row.get("key_count", 0),
    )


def target_from_row(row: dict[str, Any]) -> Target:
    return Target(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        host=row["host"],
        port=row["port"],
        login=row["login"],
        database=row["database"],
        host_key=row["host_key"],
        created_at=parse_iso(row["created_at"]),
    )


def grant_from_row(row: dict[str, Any]) -> Grant:
    return Grant(
        id=row["id"],
        user=row["user"],
        target=row["target"],
        mode=row["mode"],
        starts_at=parse_iso(row["starts_at"]),
        ends_at=parse_iso(row["ends_at"]),
        reason=row["reason"],
        granted_by=row["granted_by"],
        created_at=parse_iso(row["created_at"]),
        revoked_at=_when(row["revoked_at"]),
        revoked_by=row["revoked_by"],
        ticket_ref=row["ticket_ref"],
        group=row.get("grp"),
        break_glass=bool(row.get("break_glass", 0)),
        acknowledged_at=_when(row.get("acknowledged_at")),
        acknowledged_by=row.get("acknowledged_by"),
        request_id=row.get("request_id"),
    )


@dataclass(frozen=True)
class AccessRequest:
    """An engineer's request for a grant; the window it asks for opens at approval."""

    id: int
    user: str
    target: str
    mode: str
    duration: timedelta
    reason: str
    ticket_ref: str | None
    requested_by: str
    created_at: datetime
    expires_at: datetime
    approvals_needed: int
    state: str  # pending, approved, denied, expired or cancelled
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None
    grant_id: int | None
    approvers: tuple[str, ...] = ()

    def public(self) -> dict[str, Any]:
        data = _jsonable(asdict(self))
        data["duration"] = int(self.duration.total_seconds())
        data["approvers"] = list(self.approvers)
        return data


def request_from_row(row: dict[str, Any], approvers: tuple[str, ...] = ()) -> AccessRequest:
    return AccessRequest(
        id=row["id"],
        user=row["user"],
        target=row["target"],
        mode=row["mode"],
        duration=timedelta(seconds=row["duration_s"]),
        reason=row["reason"],
        ticket_ref=row["ticket_ref"],
        requested_by=row["requested_by"],
        created_at=parse_iso(row["created_at"]),
        expires_at=parse_iso(row["expires_at"]),
        approvals_needed=row["approvals_needed"],
        state=row["state"],
        decided_at=_when(row["decided_at"]),
        decided_by=row["decided_by"],
        decision_reason=row["decision_reason"],
        grant_id=row["grant_id"],
        approvers=approvers,
    )


@dataclass(frozen=True)
class Group:
    name: str
    members: tuple[str, ...]
    created_at: datetime
    created_by: str

    def public(self) -> dict[str, Any]:
        return {**_jsonable(asdict(self)), "members": list(self.members)}


@dataclass(frozen=True)
class Notification:
    """One webhook message waiting in the outbox (its payload holds no secret)."""

    id: int
    kind: str
    severity: str
    payload: str  # the JSON body, as posted
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class SessionRecord:
    id: str
    user: str | None
    target: str | None
    grant_id: int | None
    protocol: str
    client_addr: str
    started_at: datetime
    ended_at: datetime | None
    state: str
    end_reason: str | None
    recording_path: str | None
    recording_sha256: str | None
    recording_size: int | None
    node: str | None = None  # the node that holds (or held) it; None from before [cluster]

    def public(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def session_from_row(row: dict[str, Any]) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        user=row["user"],
        target=row["target"],
        grant_id=row["grant_id"],
        protocol=row["protocol"],
        client_addr=row["client_addr"],
        started_at=parse_iso(row["started_at"]),
        ended_at=_when(row["ended_at"]),
        state=row["state"],
        end_reason=row["end_reason"],
        recording_path=row["recording_path"],
        recording_sha256=row["recording_sha256"],
        recording_size=row["recording_size"],
        node=row.get("node"),
    )


@dataclass(frozen=True)
class OpenSession:
    """A session the store has as open, with what it was allowed on."""

    session_id: str
    user: str
    target: str
    grant_id: int | None
    mode: str | None  # the grant's mode when the session opened
    user_disabled: bool
    ticket_revoked: int | None = None  # the revoked reusable ticket it was opened with
