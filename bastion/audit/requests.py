"""Store queries for access requests and their approvals; each state change is one audit event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.audit.base import where
from bastion.audit.chain import Event
from bastion.audit.grants import GrantQueries, NewGrant
from bastion.audit.outbox import Notice, enqueue
from bastion.audit.records import AccessRequest, request_from_row
from bastion.audit.sqlconn import Conn, one
from bastion.clock import iso
from bastion.errors import Conflict, NotFound

REQUEST_SELECT = (
    "SELECT r.*, u.name AS user, t.name AS target FROM access_requests r"
    " JOIN users u ON u.id = r.user_id JOIN targets t ON t.id = r.target_id"
)


@dataclass(frozen=True)
class NewRequest:
    user: str
    target: str
    mode: str
    duration: timedelta
    reason: str
    ticket_ref: str | None
    requested_by: str
    expires_at: datetime
    approvals_needed: int


def cancel_pending(
    conn: Conn, whose: tuple[str, int], actor: str, why: str, now: str
) -> list[Event]:
    """Cancel the pending requests of one user or target (`whose` is ("user_id", id) or
    ("target_id", id)) inside the caller's transaction; returns one request.cancelled event
    each, for the caller to chain."""
    column, row_id = whose
    assert column in ("user_id", "target_id")
    rows = conn.execute(
        REQUEST_SELECT + f" WHERE r.{column} = ? AND r.state = 'pending' ORDER BY r.id", (row_id,)
    ).fetchall()
    conn.execute(
        "UPDATE access_requests SET state = 'cancelled', decided_at = ?, decided_by = ?,"
        f" decision_reason = ? WHERE {column} = ? AND state = 'pending'",
        (now, actor, why, row_id),
    )
    return [Event("request.cancelled", actor, row["user"], "notice",
                  detail={"request": row["id"], "target": row["target"], "reason": why})
            for row in rows]  # fmt: skip


class RequestQueries(GrantQueries):
    def add_request(
        self,
        new: NewRequest,
        notices: Callable[[int], tuple[Notice, ...]] = lambda _: (),
        *,
        open_now: bool = False,
    ) -> AccessRequest:
        """File a request; with `open_now` (a target that needs no approval) it is approved at
        once by policy and its grant opens in the same step."""
        user_id = self._id_by_name("users", new.user)
        target_id = self._id_by_name("targets", new.target)
        with self._write() as conn:
            (request_id,) = one(conn.execute(
                "INSERT INTO access_requests (user_id, target_id, mode, duration_s, reason,"
                " ticket_ref, requested_by, created_at, expires_at, approvals_needed)"
                " VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
                (user_id, target_id, new.mode, int(new.duration.total_seconds()), new.reason,
                 new.ticket_ref, new.requested_by, iso(self.clock.now()), iso(new.expires_at),
                 new.approvals_needed),
            ))  # fmt: skip
            request_id = int(request_id)
            detail = {"request": request_id, "target": new.target, "mode": new.mode,
                      "for": int(new.duration.total_seconds()), "reason": new.reason,
                      "ticket": new.ticket_ref,
                      "approvals_needed": new.approvals_needed}  # fmt: skip
            event = Event("request.created", new.requested_by, new.user, "notice", detail=detail)
            self._append(conn, [event])
            if open_now:
                self._open(conn, self._locked_request(conn, request_id), "policy", new.duration)
            enqueue(conn, self.clock.now(), notices(request_id))
        return self.request(request_id)

    def _locked_request(self, conn: Conn, request_id: int) -> AccessRequest:
        """The request as it stands inside the caller's write transaction."""
        rows = conn.execute(REQUEST_SELECT + " WHERE r.id = ?", (request_id,)).fetchall()
        if not rows:
            raise NotFound(f"no request with id {request_id}")
        approvers = tuple(r[0] for r in conn.execute(
            "SELECT approver FROM request_approvals WHERE request_id = ? ORDER BY at, approver",
            (request_id,)))  # fmt: skip
        return request_from_row(dict(rows[0]), approvers)

    def _open(self, conn: Conn, request: AccessRequest, by: str, duration: timedelta) -> int:
        """Approve: the grant's window starts now, at approval, not when it was asked for."""
        now = self.clock.now()
        grant_id = self._insert_grant(conn, NewGrant(
            target=request.target, mode=request.mode, starts_at=now, ends_at=now + duration,
            reason=request.reason, actor=by, user=request.user, ticket_ref=request.ticket_ref,
            request_id=request.id))  # fmt: skip
        conn.execute(
            "UPDATE access_requests SET state = 'approved', decided_at = ?, decided_by = ?,"
            " grant_id = ? WHERE id = ?",
            (iso(now), by, grant_id, request.id),
        )
        detail = {"request": request.id, "grant": grant_id, "target": request.target,
                  "until": iso(now + duration)}  # fmt: skip
        self._append(conn, [Event("request.approved", by, request.user, "notice", detail=detail)])
        return grant_id

    def request(self, request_id: int) -> AccessRequest:
        with self._reading() as conn:
            return self._locked_request(conn, request_id)

    def requests(
        self, *, state: str | None = None, user: str | None = None, target: str | None = None
    ) -> list[AccessRequest]:
        clause, params = where([("r.state = ?", state), ("u.name = ?", user),
                                ("t.name = ?", target)])  # fmt: skip
        rows = self._rows(REQUEST_SELECT + clause + " ORDER BY r.id", params)
        approvals = self._rows("SELECT request_id, approver FROM request_approvals ORDER BY at")
        by_request: dict[int, tuple[str, ...]] = {}
        for row in approvals:
            by_request[row["request_id"]] = (
                *by_request.get(row["request_id"], ()),
                row["approver"],
            )
        return [request_from_row(r, by_request.get(r["id"], ())) for r in rows]

    def approve_request(
        self,
        request_id: int,
        approver: str,
        duration: timedelta,
        seen: tuple[str, ...],
        notices: tuple[Notice, ...] = (),
    ) -> AccessRequest:
        """Record one approval; the last one needed opens the grant for `duration`.

        `seen` is the approvers the caller checked its rules against: if the request changed
        meanwhile (another approval, a denial, expiry), nothing is written.
        """
        with self._write() as conn:
            request = self._pending(conn, request_id)
            if request.approvers != seen:
                raise Conflict(f"request {request_id} changed meanwhile; look at it again")
            conn.execute(
                "INSERT INTO request_approvals (request_id, approver, at, duration_s)"
                " VALUES (?,?,?,?)",
                (request_id, approver, iso(self.clock.now()), int(duration.total_seconds())),
            )
            done = len(seen) + 1 >= request.approvals_needed
            if done:
                shortest = one(
                    conn.execute(
                        "SELECT min(duration_s) FROM request_approvals WHERE request_id = ?",
                        (request_id,),
                    )
                )[0]
                window = timedelta(seconds=shortest)
                self._open(conn, request, ",".join((*seen, approver)), window)
            else:
                detail = {"request": request_id, "approvals": len(seen) + 1,
                          "approvals_needed": request.approvals_needed}  # fmt: skip
                self._append(conn, [Event("request.approval", approver, request.user, "notice",
                                          detail=detail)])  # fmt: skip
            enqueue(conn, self.clock.now(), notices)
        return self.request(request_id)

    def _pending(self, conn: Conn, request_id: int) -> AccessRequest:
        request = self._locked_request(conn, request_id)
        if request.state != "pending":
            raise Conflict(f"request {request_id} is {request.state}, not pending")
        if request.expires_at <= self.clock.now():
            raise Conflict(f"request {request_id} expired at {iso(request.expires_at)}")
        return request

    def close_request(
        self,
        request_id: int,
        actor: str,
        state: str,
        reason: str,
        notices: tuple[Notice, ...] = (),
    ) -> AccessRequest:
        """Deny or cancel a pending request, with the reason, in one audited step."""
        assert state in ("denied", "cancelled")
        with self._write() as conn:
            request = self._pending(conn, request_id)
            conn.execute(
                "UPDATE access_requests SET state = ?, decided_at = ?, decided_by = ?,"
                " decision_reason = ? WHERE id = ?",
                (state, iso(self.clock.now()), actor, reason, request_id),
            )
            kind = "request.denied" if state == "denied" else "request.cancelled"
            detail = {"request": request_id, "target": request.target, "reason": reason}
            self._append(conn, [Event(kind, actor, request.user, "notice", detail=detail)])
            enqueue(conn, self.clock.now(), notices)
        return self.request(request_id)

    def expire_requests(self) -> list[int]:
        """Pending requests whose time is up become expired, each with its event."""
        now = iso(self.clock.now())
        due = self._rows(
            REQUEST_SELECT + " WHERE r.state = 'pending' AND r.expires_at <= ? ORDER BY r.id", [now]
        )
        if not due:
            return []
        with self._write() as conn:
            expired = []
            for row in due:
                changed = conn.execute(
                    "UPDATE access_requests SET state = 'expired', decided_at = ?,"
                    " decided_by = 'bastion' WHERE id = ? AND state = 'pending'",
                    (now, row["id"]),
                ).rowcount
                if changed:
                    expired.append(row["id"])
                    detail = {"request": row["id"], "target": row["target"],
                              "expired_at": row["expires_at"]}  # fmt: skip
                    self._append(conn, [Event("request.expired", "bastion", row["user"], "notice",
                                              detail=detail)])  # fmt: skip
        return expired
