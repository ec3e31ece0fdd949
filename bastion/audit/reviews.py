"""Store queries for the weekly review's sign-off: built weeks, their findings, decisions."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import datetime
from typing import Any, Protocol

from bastion.audit.base import StoreBase, where
from bastion.audit.chain import Event
from bastion.audit.outbox import Notice, enqueue
from bastion.audit.sqlconn import Conn
from bastion.clock import iso, parse_iso
from bastion.errors import Conflict, NotFound

VERDICTS = ("ok", "flag")
FINDING_SELECT = (
    "SELECT week, finding_id, rule, severity, title, action, evidence, subject, state, note,"
    " reviewed_by, reviewed_at FROM report_findings"
)
BY_SEVERITY = (
    " ORDER BY CASE severity WHEN 'high' THEN 0 WHEN 'medium' THEN 1 WHEN 'low' THEN 2"
    " ELSE 3 END, rule, finding_id"
)


class FindingLike(Protocol):
    """What the store keeps of a report's finding (bastion.reports.model.Finding has it)."""

    @property
    def id(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def evidence(self) -> tuple[Any, ...]: ...  # dataclasses, kept as JSON
    @property
    def involved(self) -> tuple[str, ...]: ...
    @property
    def subject(self) -> str | None: ...
    @property
    def grants(self) -> tuple[int, ...]: ...
    @property
    def requests(self) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class ReportWeek:
    """A built week: its pack (bound by its manifest's SHA-256), and who signed it, when."""

    week: str
    built_at: datetime
    rebuilt_at: datetime | None
    manifest_sha256: str | None
    pack_path: str | None
    signed_at: datetime | None
    signed_by: str | None
    overdue_at: datetime | None

    def public(self) -> dict[str, Any]:
        return {k: iso(v) if isinstance(v, datetime) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ReviewedFinding:
    """One finding of one week as stored, with the reviewer's decision (state open until)."""

    week: str
    id: str
    rule: str
    severity: str
    title: str
    action: str
    evidence: tuple[dict[str, Any], ...]
    subject: str | None
    grants: tuple[int, ...]
    requests: tuple[int, ...]
    involved: tuple[str, ...]  # who gave, approved or asked for what it rests on
    state: str  # open, ok or flag
    note: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["grants"], data["requests"] = list(self.grants), list(self.requests)
        data["involved"], data["evidence"] = list(self.involved), list(self.evidence)
        data["reviewed_at"] = iso(self.reviewed_at) if self.reviewed_at else None
        return data


def _when(text: str | None) -> datetime | None:
    return parse_iso(text) if text else None


def _week(row: dict[str, Any]) -> ReportWeek:
    return ReportWeek(
        week=row["week"], built_at=parse_iso(row["built_at"]), rebuilt_at=_when(row["rebuilt_at"]),
        manifest_sha256=row["manifest_sha256"], pack_path=row["pack_path"],
        signed_at=_when(row["signed_at"]), signed_by=row["signed_by"],
        overdue_at=_when(row["overdue_at"]),
    )  # fmt: skip


def _refs(conn: Conn, week: str, finding_id: str, kind: str) -> tuple[int, ...]:
    rows = conn.execute(
        "SELECT ref_id FROM report_finding_refs WHERE week = ? AND finding_id = ? AND kind = ?"
        " ORDER BY ref_id",
        (week, finding_id, kind),
    ).fetchall()
    return tuple(int(r[0]) for r in rows)


def _people(conn: Conn, week: str, finding_id: str) -> tuple[str, ...]:
    rows = conn.execute(
        "SELECT person FROM report_finding_people WHERE week = ? AND finding_id = ?"
        " ORDER BY person",
        (week, finding_id),
    ).fetchall()
    return tuple(str(r[0]) for r in rows)


def _evidence(items: tuple[Any, ...]) -> str:
    """Evidence records as JSON (each a dataclass instance, or a mapping already). Evidence
    holds plain values, so each record is read field by field (asdict's deep copy cost a
    third of a second a week of 2,000 findings)."""
    rows = [{f.name: getattr(e, f.name) for f in fields(e)}
            if is_dataclass(e) and not isinstance(e, type) else dict(e) for e in items]  # fmt: skip
    return json.dumps(rows, sort_keys=True)


def _finding(conn: Conn, row: Any) -> ReviewedFinding:
    week, fid = row["week"], row["finding_id"]
    return ReviewedFinding(
        week=week, id=fid, rule=row["rule"], severity=row["severity"], title=row["title"],
        action=row["action"], evidence=tuple(json.loads(row["evidence"])),
        subject=row["subject"], grants=_refs(conn, week, fid, "grant"),
        requests=_refs(conn, week, fid, "request"), involved=_people(conn, week, fid),
        state=row["state"], note=row["note"],
        reviewed_by=row["reviewed_by"], reviewed_at=_when(row["reviewed_at"]),
    )  # fmt: skip


class ReviewQueries(StoreBase):
    def record_report_week(
        self,
        week: str,
        findings: Sequence[FindingLike],
        *,
        manifest_sha256: str | None = None,
        pack_path: str | None = None,
    ) -> ReportWeek:
        """Record a built week and its findings. Rebuilding a week keeps the decisions on
        findings with the same id and its first build time (the signing deadline runs from
        it); a finding no longer found is dropped. A signed week is never rebuilt."""
        now = iso(self.clock.now())
        with self._write() as conn:
            old = self._locked_week(conn, week, missing_ok=True)
            if old is not None and old.signed_at is not None:
                raise Conflict(f"week {week} was signed by {old.signed_by}; it is not rebuilt")
            if old is None:
                conn.execute(
                    "INSERT INTO report_weeks (week, built_at, manifest_sha256, pack_path)"
                    " VALUES (?,?,?,?)",
                    (week, now, manifest_sha256, pack_path),
                )
            else:
                conn.execute(
                    "UPDATE report_weeks SET rebuilt_at = ?, manifest_sha256 = ?, pack_path = ?"
                    " WHERE week = ?",
                    (now, manifest_sha256, pack_path, week),
                )
            self._replace_findings(conn, week, findings)
        return self.report_week(week)

    def _replace_findings(self, conn: Conn, week: str, findings: Sequence[FindingLike]) -> None:
        kept = {
            row["finding_id"]: row
            for row in conn.execute(FINDING_SELECT + " WHERE week = ?", (week,)).fetchall()
        }
        conn.execute("DELETE FROM report_finding_refs WHERE week = ?", (week,))
        conn.execute("DELETE FROM report_finding_people WHERE week = ?", (week,))
        conn.execute("DELETE FROM report_findings WHERE week = ?", (week,))
        for f in {f.id: f for f in findings}.values():
            was = kept.get(f.id)
            decision = (
                (was["state"], was["note"], was["reviewed_by"], was["reviewed_at"])
                if was is not None
                else ("open", None, None, None)
            )
            conn.execute(
                "INSERT INTO report_findings (week, finding_id, rule, severity, title, action,"
                " evidence, subject, state, note, reviewed_by, reviewed_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (week, f.id, f.rule, f.severity, f.title, f.action, _evidence(f.evidence),
                 f.subject, *decision),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO report_finding_people (week, finding_id, person) VALUES (?,?,?)",
                [(week, f.id, person) for person in sorted(set(f.involved) - {""})],
            )
            refs = [("grant", g) for g in set(f.grants)] + [("request", r) for r in set(f.requests)]
            conn.executemany(
                "INSERT INTO report_finding_refs (week, finding_id, kind, ref_id) VALUES (?,?,?,?)",
                [(week, f.id, kind, ref) for kind, ref in refs],
            )

    def _locked_week(self, conn: Conn, week: str, *, missing_ok: bool = False) -> ReportWeek | None:
        row = conn.execute("SELECT * FROM report_weeks WHERE week = ?", (week,)).fetchone()
        if row is None:
            if missing_ok:
                return None
            raise NotFound(f"no report was built for week {week}")
        return _week(dict(row))

    def report_week(self, week: str) -> ReportWeek:
        with self._reading() as conn:
            found = self._locked_week(conn, week)
        assert found is not None
        return found

    def report_weeks(self) -> list[ReportWeek]:
        return [_week(r) for r in self._rows("SELECT * FROM report_weeks ORDER BY week")]

    def report_findings(self, week: str, *, state: str | None = None) -> list[ReviewedFinding]:
        """The week's findings, most severe first; all, or those in one state."""
        clause, params = where([("week = ?", week), ("state = ?", state)])
        with self._reading() as conn:
            rows = conn.execute(FINDING_SELECT + clause + BY_SEVERITY, params)
            return [_finding(conn, r) for r in rows.fetchall()]

    def report_finding(self, week: str, finding_id: str) -> ReviewedFinding:
        with self._reading() as conn:
            return self._locked_finding(conn, week, finding_id)

    def _locked_finding(self, conn: Conn, week: str, finding_id: str) -> ReviewedFinding:
        row = conn.execute(
            FINDING_SELECT + " WHERE week = ? AND finding_id = ?", (week, finding_id)
        ).fetchone()
        if row is None:
            raise NotFound(f"week {week} has no finding {finding_id!r}")
        return _finding(conn, row)

    def review_finding(
        self, week: str, finding_id: str, reviewer: str, verdict: str, note: str
    ) -> ReviewedFinding:
        """Mark one finding ok or flag, with the note; one report.finding_reviewed event.
        The caller has checked that `reviewer` may; a signed week takes no more decisions."""
        assert verdict in VERDICTS
        now = iso(self.clock.now())
        with self._write() as conn:
            self._unsigned(conn, week)
            finding = self._locked_finding(conn, week, finding_id)
            conn.execute(
                "UPDATE report_findings SET state = ?, note = ?, reviewed_by = ?, reviewed_at = ?"
                " WHERE week = ? AND finding_id = ?",
                (verdict, note, reviewer, now, week, finding_id),
            )
            detail = {"week": week, "finding": finding_id, "rule": finding.rule,
                      "severity": finding.severity, "verdict": verdict, "was": finding.state,
                      "note": note}  # fmt: skip
            self._append(conn, [Event("report.finding_reviewed", reviewer,
                                      finding.subject or "", "notice", detail=detail)])  # fmt: skip
        return self.report_finding(week, finding_id)

    def _unsigned(self, conn: Conn, week: str) -> ReportWeek:
        found = self._locked_week(conn, week)
        assert found is not None
        if found.signed_at is not None:
            raise Conflict(f"week {week} was signed by {found.signed_by} at {iso(found.signed_at)}")
        return found

    def report_refused(self, action: str, week: str, actor: str, why: str, **detail: Any) -> None:
        """An attempt to review or sign that was refused, as a warning in the chain."""
        body = {"action": action, "week": week, "why": why, **detail}
        self.append_events([Event("report.review_refused", actor, "", "warning", detail=body)])

    def sign_report_week(self, week: str, signer: str, manifest_sha256: str) -> ReportWeek:
        """Sign the week: bound to the manifest hash the caller checked the pack against.
        Refused if it was signed, its pack changed, or a finding is still open."""
        with self._write() as conn:
            found = self._unsigned(conn, week)
            if found.manifest_sha256 is None or found.manifest_sha256 != manifest_sha256:
                raise Conflict(f"week {week}'s pack changed meanwhile; look at it again")
            counts = dict(conn.execute(
                "SELECT state, count(*) FROM report_findings WHERE week = ? GROUP BY state",
                (week,)).fetchall())  # fmt: skip
            if counts.get("open"):
                raise Conflict(f"week {week} has {counts['open']} open findings")
            now = iso(self.clock.now())
            conn.execute(
                "UPDATE report_weeks SET signed_at = ?, signed_by = ? WHERE week = ?"
                " AND signed_at IS NULL",
                (now, signer, week),
            )
            detail = {"week": week, "manifest_sha256": manifest_sha256, "pack": found.pack_path,
                      "ok": counts.get("ok", 0), "flag": counts.get("flag", 0)}  # fmt: skip
            self._append(conn, [Event("report.signed", signer, "", "notice", detail=detail)])
        return self.report_week(week)

    def open_findings_before(self, week: str) -> list[ReviewedFinding]:
        """Findings of earlier weeks nobody has decided in any week: carried over until they
        are; each once, as first recorded (its week is when it was first seen)."""
        sql = (
            FINDING_SELECT + " f WHERE f.week < ? AND f.state = 'open'"
            " AND f.week = (SELECT min(g.week) FROM report_findings g"
            "               WHERE g.finding_id = f.finding_id)"
            " AND NOT EXISTS (SELECT 1 FROM report_findings d"
            "                 WHERE d.finding_id = f.finding_id AND d.state <> 'open')"
            " ORDER BY f.week, f.finding_id"
        )
        with self._reading() as conn:
            return [_finding(conn, r) for r in conn.execute(sql, (week,)).fetchall()]

    def unsigned_report_weeks(self, built_before: datetime) -> list[ReportWeek]:
        """Weeks built before the instant and still not signed."""
        rows = self._rows(
            "SELECT * FROM report_weeks WHERE signed_at IS NULL AND built_at <= ? ORDER BY week",
            [iso(built_before)],
        )
        return [_week(r) for r in rows]

    def note_overdue_report_weeks(
        self, built_before: datetime, notices: Callable[[ReportWeek], tuple[Notice, ...]]
    ) -> list[ReportWeek]:
        """The weeks not signed in time; the first time each is seen overdue, one
        report.sign_overdue event and its notices, in one transaction."""
        now = self.clock.now()
        with self._write() as conn:
            rows = conn.execute(
                "SELECT * FROM report_weeks WHERE signed_at IS NULL AND built_at <= ?"
                " AND overdue_at IS NULL ORDER BY week",
                (iso(built_before),),
            ).fetchall()
            for row in rows:
                late = _week(dict(row))
                conn.execute(
                    "UPDATE report_weeks SET overdue_at = ? WHERE week = ?", (iso(now), late.week)
                )
                detail = {"week": late.week, "built_at": iso(late.built_at),
                          "manifest_sha256": late.manifest_sha256}  # fmt: skip
                self._append(conn, [Event("report.sign_overdue", "bastion", "", "warning",
                                          detail=detail)])  # fmt: skip
                enqueue(conn, now, notices(late))
        return self.unsigned_report_weeks(built_before)
