"""Store queries for the weekly review's runs: one row per week and channel, with retries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bastion.audit.base import StoreBase
from bastion.audit.chain import Event
from bastion.audit.outbox import REPORTS_ACTOR as ACTOR
from bastion.audit.outbox import Notice, delivery_failed, enqueue
from bastion.audit.sqlconn import Conn
from bastion.clock import iso, parse_iso
from bastion.errors import NotFound

CHANNELS = ("build", "mail", "webhook")

# A webhook row hands its message to the outbox; its state is then the notification's.
_RUNS = (
    "SELECT r.week, r.channel,"
    " CASE WHEN r.channel <> 'webhook' OR r.notification_id IS NULL THEN r.state"
    "      WHEN n.delivered_at IS NOT NULL THEN 'done'"
    "      WHEN n.failed_at IS NOT NULL THEN 'failed' ELSE 'pending' END AS state,"
    " COALESCE(n.attempts, r.attempts) AS attempts,"
    " COALESCE(n.next_attempt_at, r.next_attempt_at) AS next_attempt_at,"
    " COALESCE(n.last_error, r.last_error) AS last_error, r.created_at,"
    " COALESCE(n.delivered_at, r.delivered_at) AS delivered_at, r.directory,"
    " r.manifest_sha256, r.payload_sha256, r.notification_id"
    " FROM report_runs r LEFT JOIN notifications n ON n.id = r.notification_id"
)


@dataclass(frozen=True)
class ReportRun:
    """One week's progress on one channel (build, mail or webhook)."""

    week: str
    channel: str
    state: str  # pending, done, failed (gave up), skipped (not configured)
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    directory: str | None
    manifest_sha256: str | None
    payload_sha256: str | None
    notification_id: int | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> ReportRun:
        when = {k: parse_iso(row[k]) if row[k] else None
                for k in ("next_attempt_at", "delivered_at")}  # fmt: skip
        created = parse_iso(row["created_at"])
        return cls(**{**row, **when, "created_at": created})

    def public(self) -> dict[str, Any]:
        """The run as --json shows it (it holds no secret)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: iso(v) if isinstance(v, datetime) else v for k, v in out.items()}


@dataclass(frozen=True)
class Built:
    """What the store keeps of a week's built pack, and how each channel is to be reached."""

    week: str
    directory: str
    manifest_sha256: str
    mail_sha256: str | None  # the spooled message; None: mail is not configured
    mail_skipped: str  # why not, when mail_sha256 is None
    notice: Notice | None  # the report.ready webhook message; None: no webhook


class ReportRunQueries(StoreBase):
    def report_runs(self, week: str | None = None) -> list[ReportRun]:
        """Every run (or one week's), newest week first, channels in CHANNELS order."""
        sql, params = _RUNS, []
        if week is not None:
            sql, params = sql + " WHERE r.week = ?", [week]
        rows = self._rows(sql + " ORDER BY r.week DESC, r.channel", params)
        return [ReportRun.of(r) for r in rows]

    def report_run(self, week: str, channel: str) -> ReportRun | None:
        found = [r for r in self.report_runs(week) if r.channel == channel]
        return found[0] if found else None

    def store_born_at(self) -> datetime | None:
        """When the store was made (its first migration): no week before it is reviewed."""
        rows = self._rows("SELECT min(applied_at) AS born FROM schema_migrations")
        return parse_iso(rows[0]["born"]) if rows and rows[0]["born"] else None

    def report_build_failed(self, week: str, error: str, retry_in: timedelta | None) -> None:
        """A build that raised: retry it after `retry_in`, or give up; audited each time."""
        now = self.clock.now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO report_runs (week, channel, state, created_at) VALUES (?,?,?,?)"
                " ON CONFLICT (week, channel) DO NOTHING",
                (week, "build", "pending", iso(now)),
            )
            attempts = self._failed(conn, week, "build", error, retry_in)
            detail = {"week": week, "attempt": attempts, "error": error,
                      "gives_up": retry_in is None}  # fmt: skip
            severity = "high" if retry_in is None else "warning"
            self._append(conn, [Event("report.build_failed", ACTOR, week, severity,
                                      detail=detail)])  # fmt: skip

    def report_built(self, built: Built) -> None:
        """The pack is written: its build row is done, the mail is due now, the webhook
        message is queued in the outbox, all in one transaction with the audit event."""
        now = iso(self.clock.now())
        week = built.week
        with self._write() as conn:
            tried = conn.execute(
                "SELECT attempts FROM report_runs WHERE week = ? AND channel = 'build'", (week,)
            ).fetchone()
            conn.execute("DELETE FROM report_runs WHERE week = ?", (week,))
            rows: list[
                tuple[str, str, str | None, str | None, str | None, str | None, int | None]
            ] = [("build", "done", None, None, now, None, None)]
            if built.mail_sha256 is None:
                rows.append(("mail", "skipped", None, built.mail_skipped, None, None, None))
            else:
                rows.append(("mail", "pending", now, None, None, built.mail_sha256, None))
            if built.notice is None:
                rows.append(("webhook", "skipped", None, "no [notify] webhook_url", None, None,
                             None))  # fmt: skip
            else:
                (notice_id,) = enqueue(conn, self.clock.now(), (built.notice,))
                rows.append(("webhook", "queued", None, None, None, None, notice_id))
            conn.executemany(
                "INSERT INTO report_runs (week, channel, state, next_attempt_at, last_error,"
                " delivered_at, payload_sha256, notification_id, created_at, directory,"
                " manifest_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(week, *row, now, built.directory, built.manifest_sha256) for row in rows],
            )
            conn.execute(  # the build's tries: the failed ones before, and this one
                "UPDATE report_runs SET attempts = ? WHERE week = ? AND channel = 'build'",
                ((tried[0] if tried else 0) + 1, week),
            )
            detail = {"week": week, "directory": built.directory,
                      "manifest_sha256": built.manifest_sha256}  # fmt: skip
            self._append(conn, [Event("report.built", ACTOR, week, "notice", detail=detail)])

    def report_mail_due(self) -> list[ReportRun]:
        """Mail runs whose next try is due, oldest week first."""
        rows = self._rows(
            _RUNS + " WHERE r.channel = 'mail' AND r.state = 'pending'"
            " AND r.next_attempt_at <= ? ORDER BY r.week",
            [iso(self.clock.now())],
        )
        return [ReportRun.of(r) for r in rows]

    def report_next_attempt(self) -> datetime | None:
        """The earliest next try of a pending build or mail, if any."""
        rows = self._rows(
            "SELECT min(next_attempt_at) AS at FROM report_runs"
            " WHERE state = 'pending' AND next_attempt_at IS NOT NULL"
        )
        return parse_iso(rows[0]["at"]) if rows and rows[0]["at"] else None

    def report_delivered(self, week: str, channel: str, detail: dict[str, Any]) -> None:
        now = self.clock.now()
        with self._write() as conn:
            conn.execute(
                "UPDATE report_runs SET state = 'done', attempts = attempts + 1,"
                " delivered_at = ?, next_attempt_at = NULL, last_error = NULL"
                " WHERE week = ? AND channel = ?",
                (iso(now), week, channel),
            )
            detail = {"week": week, "channel": channel, **detail}
            self._append(conn, [Event("report.delivered", ACTOR, week, "notice", detail=detail)])

    def report_delivery_failed(
        self, week: str, channel: str, error: str, retry_in: timedelta | None, severity: str
    ) -> None:
        """A failed delivery: retry after `retry_in`, or give up; an audit event each time.
        `error` is one line that holds no secret (the caller scrubs it)."""
        with self._write() as conn:
            attempts = self._failed(conn, week, channel, error, retry_in)
            event = delivery_failed(
                week, channel, attempts, error, gives_up=retry_in is None, severity=severity
            )
            self._append(conn, [event])

    def _failed(
        self,
        conn: Conn,
        week: str,
        channel: str,
        error: str,
        retry_in: timedelta | None,
    ) -> int:
        now = self.clock.now()
        state, next_at = ("failed", None) if retry_in is None else ("pending", iso(now + retry_in))
        conn.execute(
            "UPDATE report_runs SET state = ?, attempts = attempts + 1, last_error = ?,"
            " next_attempt_at = ? WHERE week = ? AND channel = ?",
            (state, error, next_at, week, channel),
        )
        row = conn.execute(
            "SELECT attempts FROM report_runs WHERE week = ? AND channel = ?", (week, channel)
        ).fetchone()
        return int(row[0]) if row else 0

    def report_resend(
        self, week: str, channel: str, actor: str, *, mail_sha256: str | None = None,
        notice: Notice | None = None,
    ) -> None:  # fmt: skip
        """Deliver a built week again on one channel: the mail's row is due now with the new
        spool's hash (its tries counted afresh), or a new webhook message is queued; an audit
        event names who asked. `bastion serve` sends it, with the usual retries."""
        now = iso(self.clock.now())
        with self._write() as conn:
            built = conn.execute(
                "SELECT directory, manifest_sha256 FROM report_runs WHERE week = ? AND"
                " channel = 'build' AND state = 'done'",
                (week,),
            ).fetchone()
            if built is None:
                raise NotFound(f"week {week} has no built pack to send again")
            notice_id = None
            if notice is not None:
                (notice_id,) = enqueue(conn, self.clock.now(), (notice,))
            state = "queued" if channel == "webhook" else "pending"
            conn.execute(
                "INSERT INTO report_runs (week, channel, state, attempts, next_attempt_at,"
                " last_error, created_at, delivered_at, directory, manifest_sha256,"
                " payload_sha256, notification_id) VALUES (?,?,?,0,?,NULL,?,NULL,?,?,?,?)"
                " ON CONFLICT (week, channel) DO UPDATE SET state = excluded.state,"
                " attempts = 0, next_attempt_at = excluded.next_attempt_at, last_error = NULL,"
                " delivered_at = NULL, payload_sha256 = excluded.payload_sha256,"
                " notification_id = excluded.notification_id",
                (week, channel, state, now if channel == "mail" else None, now, built[0],
                 built[1], mail_sha256, notice_id),
            )  # fmt: skip
            detail = {"week": week, "channel": channel, "manifest_sha256": built[1]}
            self._append(conn, [Event("report.resend", actor, week, "notice", detail=detail)])
