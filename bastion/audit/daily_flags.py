"""Store queries for the daily flags: which findings were sent, and how far each day was read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bastion.audit.base import StoreBase
from bastion.audit.chain import Event
from bastion.audit.outbox import REPORTS_ACTOR as ACTOR
from bastion.audit.outbox import Notice, enqueue
from bastion.clock import iso

FLAGGED = "report.flagged"  # the audit event of one finding flagged on its day


@dataclass(frozen=True)
class Flag:
    """One high-severity finding to send: its id, and what the event and the webhook say."""

    finding_id: str
    rule: str
    severity: str
    detail: dict[str, Any] = field(default_factory=dict)  # ids and counts, never texts
    notice: Notice | None = None  # None: no webhook configured


@dataclass(frozen=True)
class DayChecked:
    """How far a local day was read: `complete` once read after it (and its grace) ended."""

    day: str
    checked_until: str
    complete: bool
    flagged: int


class DailyFlagQueries(StoreBase):
    def daily_checks(self) -> list[DayChecked]:
        """Every day checked, oldest first."""
        rows = self._rows(
            "SELECT day, checked_until, complete, flagged FROM daily_checks ORDER BY day"
        )
        return [DayChecked(r["day"], r["checked_until"], bool(r["complete"]), int(r["flagged"]))
                for r in rows]  # fmt: skip

    def daily_flagged(self, finding_ids: list[str]) -> set[str]:
        """Which of these findings were flagged already (on any day)."""
        found: set[str] = set()
        for at in range(0, len(finding_ids), 500):  # within any database's parameter limit
            part = finding_ids[at : at + 500]
            marks = ", ".join("?" for _ in part)
            rows = self._rows(
                f"SELECT finding_id FROM daily_flags WHERE finding_id IN ({marks})", part
            )
            found.update(str(r["finding_id"]) for r in rows)
        return found

    def daily_flags(self, day: str | None = None) -> list[dict[str, Any]]:
        """Flags sent (of one day, or all), oldest first."""
        sql, params = "SELECT * FROM daily_flags", []
        if day is not None:
            sql, params = sql + " WHERE day = ?", [day]
        return self._rows(sql + " ORDER BY flagged_at, finding_id", params)

    def daily_checked(
        self, day: str, until: datetime, complete: bool, flags: list[Flag],
        overflow: Notice | None = None,
    ) -> list[str]:  # fmt: skip
        """One check of a day, in one transaction: each flag not sent before is recorded,
        audited (report.flagged) and queued for the webhook (with `overflow`, the message for
        those past the day's budget); then how far the day was read. Returns the ids newly
        flagged (a flag already sent is skipped, whoever sent it)."""
        now = self.clock.now()
        sent: list[str] = []
        with self._write() as conn:
            for flag in flags:
                cursor = conn.execute(
                    "INSERT INTO daily_flags (finding_id, day, rule, severity, flagged_at)"
                    " VALUES (?,?,?,?,?) ON CONFLICT (finding_id) DO NOTHING",
                    (flag.finding_id, day, flag.rule, flag.severity, iso(now)),
                )
                if cursor.rowcount != 1:
                    continue
                if flag.notice is not None:
                    (notice_id,) = enqueue(conn, now, (flag.notice,))
                    conn.execute(
                        "UPDATE daily_flags SET notification_id = ? WHERE finding_id = ?",
                        (notice_id, flag.finding_id),
                    )
                detail = {"day": day, "rule": flag.rule, "finding": flag.finding_id,
                          "notified": flag.notice is not None, **flag.detail}  # fmt: skip
                self._append(conn, [Event(FLAGGED, ACTOR, flag.finding_id, flag.severity,
                                          detail=detail)])  # fmt: skip
                sent.append(flag.finding_id)
            if overflow is not None:  # after the day's own messages
                enqueue(conn, now, (overflow,))
            conn.execute(
                "INSERT INTO daily_checks (day, checked_until, complete, flagged)"
                " VALUES (?,?,?,?) ON CONFLICT (day) DO UPDATE SET"
                " checked_until = excluded.checked_until,"
                " complete = CASE WHEN daily_checks.complete = 1 THEN 1 ELSE excluded.complete END,"
                " flagged = daily_checks.flagged + excluded.flagged",
                (day, iso(until), int(complete), len(sent)),
            )
        return sent
