"""Store queries for the outbox of webhook notifications: enqueue with the event, deliver later."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bastion.audit.base import StoreBase
from bastion.audit.chain import Event
from bastion.audit.records import Notification
from bastion.audit.sqlconn import Conn, one
from bastion.clock import iso, parse_iso


@dataclass(frozen=True)
class Notice:
    """A message to post: its kind and severity, and a JSON body that holds no secret."""

    kind: str
    severity: str
    body: dict[str, Any] = field(default_factory=dict)


def enqueue(conn: Conn, now: datetime, notices: tuple[Notice, ...]) -> list[int]:
    """Queue notices inside the caller's transaction: they exist exactly when its events do.
    Returns their ids, in order."""
    ids = []
    for n in notices:
        (new_id,) = one(
            conn.execute(
                "INSERT INTO notifications (created_at, kind, severity, payload, next_attempt_at)"
                " VALUES (?,?,?,?,?) RETURNING id",
                (iso(now), n.kind, n.severity, json.dumps(n.body, sort_keys=True), iso(now)),
            )
        )
        ids.append(int(new_id))
    return ids


REPORT_READY = "report.ready"  # the weekly review's webhook message (bastion/reports)
REPORTS_ACTOR = "bastion:reports"
FLAG_NOTICE = "report.flag"  # a high finding sent on its day (bastion/reports/daily.py)


def delivery_failed(
    week: str, channel: str, attempt: int, error: str, *, gives_up: bool, severity: str = "warning"
) -> Event:
    """The audit event for one failed delivery of a week's review (no secret in it)."""
    detail = {"week": week, "channel": channel, "attempt": attempt, "error": error,
              "gives_up": gives_up}  # fmt: skip
    if gives_up and severity == "warning":
        severity = "high"
    return Event("report.delivery_failed", REPORTS_ACTOR, week, severity, detail=detail)


def _flag_failed(notice: Notification, error: str, gives_up: bool) -> Event:
    finding = str(json.loads(notice.payload).get("finding", ""))
    detail = {"finding": finding, "notification": notice.id, "attempt": notice.attempts + 1,
              "error": error, "gives_up": gives_up}  # fmt: skip
    return Event("report.flag_failed", REPORTS_ACTOR, finding, "high" if gives_up else "warning",
                 detail=detail)  # fmt: skip


class OutboxQueries(StoreBase):
    def due_notifications(self, limit: int = 20) -> list[Notification]:
        """Undelivered notifications whose next attempt is due, oldest first."""
        rows = self._rows(
            "SELECT id, kind, severity, payload, attempts, created_at FROM notifications"
            " WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ?"
            " ORDER BY id LIMIT ?",
            [iso(self.clock.now()), limit],
        )
        return [Notification(r["id"], r["kind"], r["severity"], r["payload"], r["attempts"],
                             parse_iso(r["created_at"])) for r in rows]  # fmt: skip

    def notifications_pending(self) -> int:
        """Notifications neither delivered nor given up (counted on the outbox's due index)."""
        rows = self._rows(
            "SELECT COUNT(*) AS n FROM notifications"
            " WHERE delivered_at IS NULL AND failed_at IS NULL"
        )
        return int(rows[0]["n"])

    def notification_delivered(self, notification_id: int) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE notifications SET delivered_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ?",
                (iso(self.clock.now()), notification_id),
            )
            row = conn.execute(
                "SELECT kind, payload, attempts FROM notifications WHERE id = ?",
                (notification_id,),
            ).fetchone()
            if row is not None and row[0] == REPORT_READY:  # the review reached the webhook
                week = str(json.loads(row[1]).get("week", ""))
                detail = {"week": week, "channel": "webhook", "attempts": row[2]}
                event = Event("report.delivered", REPORTS_ACTOR, week, "notice", detail=detail)
                self._append(conn, [event])

    def notification_failed(
        self, notice: Notification, error: str, retry_in: timedelta | None
    ) -> None:
        """Record a failed attempt; with no retry left, give up and say so in the audit trail."""
        now = self.clock.now()
        with self._write() as conn:
            if notice.kind == REPORT_READY:  # every failure of the review's delivery is audited
                week = str(json.loads(notice.payload).get("week", ""))
                conn_event = delivery_failed(week, "webhook", notice.attempts + 1, error,
                                             gives_up=retry_in is None)  # fmt: skip
                self._append(conn, [conn_event])
            if notice.kind == FLAG_NOTICE:  # so is every failure of a daily flag's
                self._append(conn, [_flag_failed(notice, error, retry_in is None)])
            if retry_in is not None:
                conn.execute(
                    "UPDATE notifications SET attempts = attempts + 1, last_error = ?,"
                    " next_attempt_at = ? WHERE id = ?",
                    (error, iso(now + retry_in), notice.id),
                )
                return
            conn.execute(
                "UPDATE notifications SET attempts = attempts + 1, last_error = ?,"
                " failed_at = ? WHERE id = ?",
                (error, iso(now), notice.id),
            )
            detail = {"notification": notice.id, "kind": notice.kind,
                      "attempts": notice.attempts + 1, "error": error}  # fmt: skip
            self._append(
                conn, [Event("notify.failed", "bastion", notice.kind, "warning", detail=detail)]
            )

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification with its delivery state, newest first (for listings and tests)."""
        rows = self._rows(
            "SELECT id, created_at, kind, severity, payload, attempts, delivered_at, failed_at,"
            " last_error FROM notifications ORDER BY id DESC"
        )
        return rows
