"""Store queries for users, their SSH keys and their TOTP state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from bastion.audit.base import StoreBase
from bastion.audit.chain import Event
from bastion.audit.records import NewKey, SshKey, User, user_from_row
from bastion.audit.requests import cancel_pending
from bastion.audit.sqlconn import Conn, Duplicate, one
from bastion.audit.tickets import revoke_users_tickets
from bastion.clock import iso, parse_iso
from bastion.errors import Conflict, NotFound

USER_COLUMNS = (
    "u.id, u.name, u.role, u.password_hash, u.failed_attempts, u.locked_until,"
    " u.disabled_at, u.created_at,"
    " (SELECT count(*) FROM ssh_keys k WHERE k.user_id = u.id) AS key_count"
)


class TotpResult(Enum):
    """What happened to one TOTP attempt, as recorded in the store."""

    ACCEPTED = "accepted"
    WRONG = "wrong"  # no step in the window matched
    REPLAYED = "replayed"  # the code matched a step already used
    LOCKED = "locked"  # the user is locked; the code was not even looked at
    DISABLED = "disabled"


@dataclass(frozen=True)
class TotpOutcome:
    result: TotpResult
    locked_until: datetime | None = None
    just_locked: bool = False


@dataclass(frozen=True)
class UserSecrets:
    """What authentication needs; stays inside identity, never printed."""

    user: User
    password_hash: str | None
    totp_sealed: bytes


@dataclass(frozen=True)
class _Attempt:
    """One TOTP attempt inside its write transaction."""

    conn: Conn
    name: str
    row: dict[str, Any]
    via: str
    now: datetime


class PeopleQueries(StoreBase):
    def add_user(
        self,
        name: str,
        role: str,
        password_hash: str | None,
        totp_sealed: bytes,
        actor: str,
        *,
        keys: Sequence[NewKey] = (),
    ) -> User:
        """A new user and their keys, all or nothing."""
        with self._write() as conn:
            try:
                (user_id,) = one(
                    conn.execute(
                        "INSERT INTO users (name, role, password_hash, totp_sealed, created_at)"
                        " VALUES (?,?,?,?,?) RETURNING id",
                        (name, role, password_hash, totp_sealed, iso(self.clock.now())),
                    )
                )
            except Duplicate as exc:
                raise Conflict(f"user {name!r} exists already") from exc
            self._append(conn, [Event("user.added", actor, name, "notice", detail={"role": role})])
            self._insert_keys(conn, int(user_id), name, keys, actor)
        return self.user(name)

    def find_user(self, name: str) -> User | None:
        rows = self._rows(f"SELECT {USER_COLUMNS} FROM users u WHERE u.name = ?", [name])
        return user_from_row(rows[0]) if rows else None

    def user(self, name: str) -> User:
        found = self.find_user(name)
        if found is None:
            raise NotFound(f"no user named {name!r}")
        return found

    def users(self) -> list[User]:
        rows = self._rows(f"SELECT {USER_COLUMNS} FROM users u ORDER BY u.name")
        return [user_from_row(r) for r in rows]

    def user_secrets(self, name: str) -> UserSecrets:
        user = self.user(name)
        row = self._rows("SELECT password_hash, totp_sealed FROM users WHERE id = ?", [user.id])[0]
        return UserSecrets(user, row["password_hash"], bytes(row["totp_sealed"]))

    def set_password(self, name: str, password_hash: str | None, actor: str) -> None:
        user = self.user(name)
        with self._write() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user.id)
            )
            kind = "user.password_set" if password_hash else "user.password_removed"
            self._append(conn, [Event(kind, actor, name, "notice")])

    def replace_totp(self, name: str, totp_sealed: bytes, actor: str) -> None:
        """A new seed: every old code stops working and the failure count starts again."""
        user = self.user(name)
        with self._write() as conn:
            conn.execute(
                "UPDATE users SET totp_sealed = ?, totp_last_step = -1, failed_attempts = 0"
                " WHERE id = ?",
                (totp_sealed, user.id),
            )
            self._append(conn, [Event("user.totp_reset", actor, name, "warning")])

    def disable_user(self, name: str, actor: str, reason: str) -> dict[str, int]:
        """Offboard in one step: block logins, revoke live and scheduled grants and unmask
        grants, cancel pending requests, leave every group. Returns how many of each."""
        user = self.user(name)
        if user.disabled_at is not None:
            raise Conflict(f"user {name!r} is disabled already")
        now = iso(self.clock.now())
        with self._write() as conn:
            conn.execute("UPDATE users SET disabled_at = ? WHERE id = ?", (now, user.id))
            cancelled = cancel_pending(conn, ("user_id", user.id), actor, "user disabled", now)
            counts = {
                "grants_revoked": conn.execute(
                    "UPDATE grants SET revoked_at = ?, revoked_by = ? WHERE user_id = ?"
                    " AND revoked_at IS NULL AND ends_at > ?",
                    (now, actor, user.id, now),
                ).rowcount,
                "requests_cancelled": len(cancelled),
                "unmask_revoked": conn.execute(
                    "UPDATE unmask_grants SET state = 'revoked', decided_by = ?, decided_at = ?"
                    " WHERE user_id = ? AND state IN ('pending', 'approved')"
                    " AND (ends_at IS NULL OR ends_at > ?)",
                    (actor, now, user.id, now),
                ).rowcount,
                "groups_left": conn.execute(
                    "DELETE FROM group_members WHERE user_id = ?", (user.id,)
                ).rowcount,
            }
            detail = {"reason": reason, **counts}
            event = Event("user.disabled", actor, name, "warning", detail=detail)
            tickets = revoke_users_tickets(conn, user.id, actor, now)
            if tickets:
                cancelled.append(
                    Event(
                        "ticket.revoked",
                        actor,
                        name,
                        "notice",
                        detail={"tickets": tickets, "reason": "user disabled"},
                    )
                )
            self._append(conn, [event, *cancelled])
        return counts

    def unlock_user(self, name: str, actor: str) -> None:
        user = self.user(name)
        with self._write() as conn:
            conn.execute(
                "UPDATE users SET locked_until = NULL, failed_attempts = 0, refused_attempts = 0"
                " WHERE id = ?",
                (user.id,),
            )
            self._append(conn, [Event("user.unlocked", actor, name, "notice")])

    # -- TOTP -------------------------------------------------------------------------

    def record_totp_attempt(
        self, name: str, step: int | None, via: str, max_failures: int, lock_for: timedelta
    ) -> TotpOutcome:
        """Atomically check replay and lockout for a code that matched `step` (None: no match)."""
        with self._write() as conn:
            row = _login_row(conn, name)
            if row is None:
                raise NotFound(f"no user named {name!r}")
            attempt = _Attempt(conn, name, dict(row), via, self.clock.now())
            refusal = self._refusal(attempt)
            if refusal is not None:
                return refusal
            if step is not None and step > int(attempt.row["totp_last_step"]):
                conn.execute(
                    "UPDATE users SET totp_last_step = ?, failed_attempts = 0,"
                    " locked_until = NULL, refused_attempts = 0 WHERE id = ?",
                    (step, attempt.row["id"]),
                )
                self._append(conn, [Event("auth.totp_ok", via, name, detail={"via": via})])
                return TotpOutcome(TotpResult.ACCEPTED)
            result = TotpResult.WRONG if step is None else TotpResult.REPLAYED
            return self._failure(attempt, result, max_failures, lock_for)

    def record_password_failure(
        self, name: str, via: str, max_failures: int, lock_for: timedelta, *, unknown_as: str
    ) -> bool:
        """Count a wrong password towards the user's lockout, as a wrong code counts; the
        event is written for unknown users too, so both cost one durable write, naming them
        `unknown_as` (a keyed digest: the text typed as a name may be a password). True when
        this failure locked the account."""
        with self._write() as conn:
            row = _login_row(conn, name)
            now = self.clock.now()
            locked = (
                row is not None and row["locked_until"] and now < parse_iso(row["locked_until"])
            )
            if row is None or row["disabled_at"] or locked:
                detail = {"via": via, "why": "password"}
                shown = name if row is not None else unknown_as
                self._append(conn, [Event("auth.password_failed", via, shown, "notice",
                                          detail=detail)])  # fmt: skip
                return False
            attempt = _Attempt(conn, name, dict(row), via, now)
            return self._failure(attempt, None, max_failures, lock_for).just_locked

    def _refusal(self, attempt: _Attempt) -> TotpOutcome | None:
        """Disabled or locked users are refused without looking at the code.

        Refusals are audited in aggregate: the first one, then at the 10th, 100th, 1000th...
        each with the count so far, so a flood of guesses at a locked account cannot fill
        the trail with one fsynced row per guess.
        """
        row = attempt.row
        locked_until = parse_iso(row["locked_until"]) if row["locked_until"] else None
        if row["disabled_at"]:
            outcome, why = TotpOutcome(TotpResult.DISABLED), "disabled"
        elif locked_until is not None and attempt.now < locked_until:
            outcome, why = TotpOutcome(TotpResult.LOCKED, locked_until), "locked"
        else:
            return None
        refused = int(row["refused_attempts"]) + 1
        attempt.conn.execute(
            "UPDATE users SET refused_attempts = ? WHERE id = ?", (refused, row["id"])
        )
        if refused == 1 or _power_of_ten(refused):
            detail = {"via": attempt.via, "why": why, "refused_so_far": refused}
            event = Event("auth.totp_refused", attempt.via, attempt.name, "warning", detail=detail)
            self._append(attempt.conn, [event])
        return outcome

    def _failure(
        self, attempt: _Attempt, result: TotpResult | None, max_failures: int, lock_for: timedelta
    ) -> TotpOutcome:
        """Count a wrong or replayed code (result None: a wrong password); the Nth failure in
        a row locks the user."""
        failures = int(attempt.row["failed_attempts"]) + 1
        why = "password" if result is None else result.value
        kind = "auth.password_failed" if result is None else "auth.totp_failed"
        detail = {"via": attempt.via, "why": why, "consecutive": failures}
        events = [Event(kind, attempt.via, attempt.name, "notice", detail=detail)]
        new_lock = None
        if failures >= max_failures:
            new_lock = attempt.now + lock_for
            failures = 0
            detail = {"until": iso(new_lock), "after_failures": max_failures}
            events.append(Event("user.locked", attempt.via, attempt.name, "high", detail=detail))
        attempt.conn.execute(
            "UPDATE users SET failed_attempts = ?, locked_until = ?, refused_attempts = 0"
            " WHERE id = ?",
            (failures, iso(new_lock) if new_lock else None, attempt.row["id"]),
        )
        self._append(attempt.conn, events)
        return TotpOutcome(result or TotpResult.WRONG, new_lock, just_locked=new_lock is not None)

    # -- SSH keys ---------------------------------------------------------------------

    def add_ssh_keys(self, name: str, keys: Sequence[NewKey], actor: str) -> list[SshKey]:
        """Register keys for an existing user, all or nothing."""
        user = self.user(name)
        with self._write() as conn:
            self._insert_keys(conn, user.id, name, keys, actor)
        wanted = {k.fingerprint for k in keys}
        return [k for k in self.ssh_keys(name) if k.fingerprint in wanted]

    def _insert_keys(
        self, conn: Conn, user_id: int, name: str, keys: Sequence[NewKey], actor: str
    ) -> None:
        now = iso(self.clock.now())
        for key in keys:
            try:
                conn.execute(
                    "INSERT INTO ssh_keys (user_id, algorithm, public_key, fingerprint, comment,"
                    " added_at) VALUES (?,?,?,?,?,?)",
                    (user_id, key.algorithm, key.public_key, key.fingerprint, key.comment, now),
                )
            except Duplicate as exc:
                raise Conflict(f"the key {key.fingerprint} is registered already") from exc
            detail = {"fingerprint": key.fingerprint, "algorithm": key.algorithm}
            self._append(conn, [Event("user.key_added", actor, name, "notice", detail=detail)])

    def ssh_keys(self, name: str | None = None) -> list[SshKey]:
        sql = (
            "SELECT k.*, u.name AS user FROM ssh_keys k JOIN users u ON u.id = k.user_id"
            + (" WHERE u.name = ?" if name else "")
            + " ORDER BY u.name, k.id"
        )
        rows = self._rows(sql, [name] if name else [])
        return [
            SshKey(
                r["id"],
                r["user"],
                r["algorithm"],
                r["public_key"],
                r["fingerprint"],
                r["comment"],
                parse_iso(r["added_at"]),
            )
            for r in rows
        ]


def _login_row(conn: Conn, name: str) -> Any:
    """What a login attempt needs of a user's row (None: no such user)."""
    return conn.execute(
        "SELECT id, totp_last_step, failed_attempts, locked_until, disabled_at,"
        " refused_attempts FROM users WHERE name = ?",
        (name,),
    ).fetchone()


def _power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1
