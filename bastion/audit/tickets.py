"""Store queries for reusable tickets: mint, look up by keyed digest, count uses, list, revoke."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bastion.audit.base import StoreBase, where
from bastion.audit.chain import Event
from bastion.audit.sqlconn import one
from bastion.clock import iso, parse_iso
from bastion.errors import Conflict, NotFound

_SELECT = (
    "SELECT k.id, u.name AS user, t.name AS target, k.reusable, k.grant_id, k.bind_address,"
    " k.created_at, k.created_by, k.expires_at, k.used_at, k.uses, k.revoked_at, k.revoked_by,"
    " k.row_mac"
    " FROM tickets k JOIN users u ON u.id = k.user_id JOIN targets t ON t.id = k.target_id"
)


@dataclass(frozen=True)
class TicketRow:
    """A ticket as the store keeps it: never its token, nor the token's digest."""

    id: int
    user: str
    target: str
    reusable: bool
    grant_id: int | None
    bind_address: str | None
    created_at: datetime
    created_by: str | None
    expires_at: datetime
    used_at: datetime | None
    uses: int
    revoked_at: datetime | None
    revoked_by: str | None
    row_mac: str | None = field(default=None, repr=False)  # a reusable one's limits, keyed

    def state_at(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if not self.reusable and self.used_at is not None:
            return "used"
        return "expired" if now >= self.expires_at else "live"

    def public(self, now: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in self.__dataclass_fields__
                               if k != "row_mac"}  # fmt: skip
        for key in ("created_at", "expires_at", "used_at", "revoked_at"):
            out[key] = iso(out[key]) if out[key] is not None else None
        out["kind"] = "reusable" if self.reusable else "one-use"
        out["state"] = self.state_at(now)
        return out


@dataclass(frozen=True)
class NewTicket:
    """A reusable ticket to keep: its digest (the token itself never reaches the store)."""

    user: str
    target: str
    digest: str
    grant_id: int
    expires_at: datetime
    bind_address: str | None
    actor: str
    capped_by: str  # what set expires_at: asked, the target's maximum, or the grant's end
    row_mac: str  # Tickets' keyed MAC over the digest and every limit above


class TicketQueries(StoreBase):
    def add_reusable_ticket(self, new: NewTicket) -> TicketRow:
        """Keep the digest and the ticket's limits; the audit event never holds the token."""
        user_id = self._id_by_name("users", new.user)
        target_id = self._id_by_name("targets", new.target)
        with self._write() as conn:
            (ticket_id,) = one(conn.execute(
                "INSERT INTO tickets (user_id, target_id, token_hmac, reusable, grant_id,"
                " bind_address, created_at, created_by, expires_at, row_mac)"
                " VALUES (?,?,?,1,?,?,?,?,?,?) RETURNING id",
                (user_id, target_id, new.digest, new.grant_id, new.bind_address,
                 iso(self.clock.now()), new.actor, iso(new.expires_at), new.row_mac),
            ))  # fmt: skip
            ticket_id = int(ticket_id)
            detail = {"ticket": ticket_id, "target": new.target, "reusable": True,
                      "grant": new.grant_id, "until": iso(new.expires_at),
                      "capped_by": new.capped_by, "bound_to": new.bind_address}  # fmt: skip
            self._append(conn, [Event("ticket.issued", new.actor, new.user, "notice",
                                      detail=detail)])  # fmt: skip
        return self.ticket(ticket_id)

    def ticket(self, ticket_id: int) -> TicketRow:
        rows = self._rows(_SELECT + " WHERE k.id = ?", [ticket_id])
        if not rows:
            raise NotFound(f"no ticket {ticket_id}")
        return _ticket(rows[0])

    def reusable_ticket_by_digest(self, digest: str) -> TicketRow | None:
        rows = self._rows(_SELECT + " WHERE k.token_hmac = ? AND k.reusable = 1", [digest])
        return _ticket(rows[0]) if rows else None

    def tickets(
        self, *, user: str | None = None, live_at: datetime | None = None
    ) -> list[TicketRow]:
        """Tickets newest first; with live_at, only those neither expired, used nor revoked."""
        live = iso(live_at) if live_at is not None else None
        clause, params = where([
            ("u.name = ?", user),
            ("k.revoked_at IS NULL AND k.expires_at > ? AND (k.reusable = 1 OR k.used_at IS NULL)",
             live),
        ])  # fmt: skip
        return [_ticket(r) for r in self._rows(_SELECT + clause + " ORDER BY k.id DESC", params)]

    def record_ticket_use(
        self, ticket: TicketRow | None, user: str, target: str, via: str, problem: str | None
    ) -> None:
        """One audit event per use or refusal (with the ticket's id when it is known); a use
        is counted on the ticket."""
        now = self.clock.now()
        detail: dict[str, Any] = {"via": via, "target": target, "reusable": True}
        if ticket is not None:
            detail["ticket"] = ticket.id
            if ticket.user != user:  # someone else's ticket, presented under another name
                detail["ticket_user"] = ticket.user
        with self._write() as conn:
            if problem is None and ticket is not None:
                conn.execute("UPDATE tickets SET uses = uses + 1, used_at = ? WHERE id = ?",
                             (iso(now), ticket.id))  # fmt: skip
                event = Event("auth.ticket_ok", via, user, "info", detail=detail)
            else:
                detail["why"] = problem
                severity = "warning" if ticket is not None else "notice"
                event = Event("auth.ticket_refused", via, user, severity, detail=detail)
            self._append(conn, [event])

    def revoke_ticket(
        self, ticket_id: int, actor: str, reason: str, *, owner: str | None = None
    ) -> tuple[TicketRow, list[str]]:
        """Revoke a ticket (only `owner`'s, when given); the serving process then ends the
        sessions it opened (access.enforce). Returns the ticket and those sessions' ids."""
        found = self.ticket(ticket_id)
        if owner is not None and found.user != owner:
            raise NotFound(f"no ticket {ticket_id}")
        if found.revoked_at is not None:
            raise Conflict(f"ticket {ticket_id} is revoked already")
        now = iso(self.clock.now())
        with self._write() as conn:
            conn.execute(
                "UPDATE tickets SET revoked_at = ?, revoked_by = ?, revoke_reason = ?"
                " WHERE id = ?", (now, actor, reason or None, ticket_id),
            )  # fmt: skip
            sessions = [r[0] for r in conn.execute(
                "SELECT id FROM sessions WHERE ticket_id = ? AND ended_at IS NULL",
                (ticket_id,)).fetchall()]  # fmt: skip
            detail = {"ticket": ticket_id, "target": found.target, "reason": reason,
                      "sessions_ended": sessions}  # fmt: skip
            self._append(conn, [Event("ticket.revoked", actor, found.user, "notice",
                                      detail=detail)])  # fmt: skip
        return self.ticket(ticket_id), sessions


def revoke_users_tickets(conn: Any, user_id: int, actor: str, now: str) -> list[int]:
    """Inside disable_user's transaction: every ticket of the user still usable is revoked
    (their sessions end anyway: a disabled user's sessions all do)."""
    ids = [int(r[0]) for r in conn.execute(
        "SELECT id FROM tickets WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?",
        (user_id, now)).fetchall()]  # fmt: skip
    conn.executemany(
        "UPDATE tickets SET revoked_at = ?, revoked_by = ?, revoke_reason = 'user disabled'"
        " WHERE id = ?", [(now, actor, i) for i in ids],
    )  # fmt: skip
    return ids


def _ticket(r: dict[str, Any]) -> TicketRow:
    def when(key: str) -> datetime | None:
        return parse_iso(r[key]) if r[key] else None

    return TicketRow(
        id=r["id"], user=r["user"], target=r["target"], reusable=bool(r["reusable"]),
        grant_id=r["grant_id"], bind_address=r["bind_address"],
        created_at=parse_iso(r["created_at"]), created_by=r["created_by"],
        expires_at=parse_iso(r["expires_at"]), used_at=when("used_at"), uses=int(r["uses"]),
        revoked_at=when("revoked_at"), revoked_by=r["revoked_by"], row_mac=r["row_mac"],
    )  # fmt: skip
