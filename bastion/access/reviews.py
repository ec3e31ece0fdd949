"""Who may review the weekly findings and sign a week off, and what a sign-off is bound to."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bastion.audit import Notice, ReportWeek, ReviewedFinding, Store
from bastion.audit.reviews import VERDICTS
from bastion.clock import Clock, iso
from bastion.config import Config
from bastion.errors import Conflict, Denied, NotFound, UsageError
from bastion.reports.week import parse_week

MANIFEST = "manifest.json"
T = TypeVar("T")


def manifest_sha256(pack_path: str | None) -> str:
    """The SHA-256 of a pack's manifest.json (pack_path: the pack's directory or the file)."""
    if not pack_path:
        raise Conflict("no pack was written for this week; build it again")
    path = Path(pack_path)
    if path.is_dir():
        path = path / MANIFEST
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise Conflict(f"cannot read the pack's manifest {path}: {exc.strerror}") from exc


# The security leads who answer to auditors (reviewers) and the admins review and sign the
# week; nobody may decide what they are involved in (_not_involved), whatever their role.
SIGNERS = ("admin", "reviewer")


@dataclass
class Reviews:
    store: Store
    config: Config
    clock: Clock

    def review(
        self, week: str, finding_id: str, reviewer: str, verdict: str, note: str
    ) -> ReviewedFinding:
        """Mark one finding ok or flag. Only an active admin reviews, and nobody decides a
        finding about their own access, nor about a grant or request they gave or approved,
        either way: a flag closes a finding as surely as an ok. A refusal is itself an audit
        event."""
        week = self.label(week)
        if verdict not in VERDICTS:
            raise UsageError("say --ok or --flag")
        note = " ".join(note.split())
        if not note:
            raise UsageError("say why, with --note")
        finding = self.store.report_finding(week, finding_id)

        def decide() -> ReviewedFinding:
            self._admin(reviewer, "review")
            self._not_involved(reviewer, finding)
            return self.store.review_finding(week, finding_id, reviewer, verdict, note)

        return self._audited("review", week, reviewer, decide, finding=finding_id)

    def sign(self, week: str, signer: str) -> ReportWeek:
        """Sign the week off, bound to the SHA-256 of its pack's manifest as it is on disk
        now; refused while a finding is open, when signed already, or if the pack changed."""
        week = self.label(week)
        built = self.store.report_week(week)

        def decide() -> ReportWeek:
            self._admin(signer, "sign")
            if built.signed_at is not None:
                raise Conflict(f"week {week} was signed by {built.signed_by} at"
                               f" {iso(built.signed_at)}")  # fmt: skip
            still = self.store.report_findings(week, state="open")
            if still:
                shown = ", ".join(f.id for f in still[:5]) + (", ..." if len(still) > 5 else "")
                raise Conflict(f"week {week} has {len(still)} open findings ({shown}); review"
                               " each with `bastion report review` first")  # fmt: skip
            on_disk = manifest_sha256(built.pack_path)
            if on_disk != built.manifest_sha256:
                raise Conflict(f"week {week}'s pack manifest does not match the one built"
                               f" ({built.pack_path}); build the week again")  # fmt: skip
            return self.store.sign_report_week(week, signer, on_disk)

        return self._audited("sign", week, signer, decide)

    def overdue(self) -> list[ReportWeek]:
        """Weeks not signed within [reports] sign_within of being built; each is announced
        once (an audit event, and a notification when a webhook is configured)."""
        before = self.clock.now() - self.config.reports.sign_within
        return self.store.note_overdue_report_weeks(before, self._overdue_notice)

    def _overdue_notice(self, late: ReportWeek) -> tuple[Notice, ...]:
        if not self.config.notify.webhook_url:
            return ()
        text = (f"bastion: the access review of week {late.week} (built {iso(late.built_at)})"
                f" is not signed yet: bastion report sign {late.week} --as NAME")  # fmt: skip
        body: dict[str, object] = {"text": text, "event": "report.sign_overdue",
                                   "severity": "warning", "week": late.week}  # fmt: skip
        return (Notice("report.sign_overdue", "warning", body),)

    def label(self, week: str) -> str:
        """The week's label as written in the store; UsageError if it is not one."""
        try:
            return parse_week(week, self.config.reports.timezone).label
        except ValueError as exc:
            raise UsageError(str(exc)) from exc

    def _audited(
        self, action: str, week: str, actor: str, decide: Callable[[], T], **detail: str
    ) -> T:
        try:
            return decide()
        except (Denied, Conflict) as exc:
            self.store.report_refused(action, week, actor, exc.message, **detail)
            raise

    def _admin(self, name: str, verb: str) -> None:
        person = self.store.user(name)
        if person.disabled_at is not None:
            raise Denied(f"user {name!r} is disabled")
        if person.role not in SIGNERS:
            raise Denied(f"{name} has the {person.role} role; only admins and reviewers may"
                         f" {verb} the weekly review")  # fmt: skip

    def _not_involved(self, reviewer: str, finding: ReviewedFinding) -> None:
        """Denied when the reviewer is what the finding is about, or gave, asked for or
        decided on what it concerns; a grant or request not in the store is denied too."""
        why = self._involvement(reviewer, finding)
        if why:
            raise Denied(f"{reviewer} may not decide finding {finding.id}: {why}; another"
                         " admin or reviewer must")  # fmt: skip

    def _involvement(self, reviewer: str, finding: ReviewedFinding) -> str:
        if finding.subject == reviewer:
            return "it is about their own access"
        if reviewer in finding.involved:
            return "they gave, approved or asked for what it rests on"
        requests = set(finding.requests)
        for grant_id in finding.grants:
            why, request_id = self._grant_involvement(reviewer, grant_id)
            if why:
                return why
            if request_id is not None:
                requests.add(request_id)
        for request_id in sorted(requests):
            why = self._request_involvement(reviewer, request_id)
            if why:
                return why
        return ""

    def _grant_involvement(self, reviewer: str, grant_id: int) -> tuple[str, int | None]:
        """Why the reviewer is involved in the grant ("" if not), and its request."""
        try:
            grant = self.store.grant(grant_id)
        except NotFound:
            return f"grant {grant_id} is not in the store", None
        givers = grant.granted_by.split(",")
        if reviewer in givers:
            return f"they gave grant {grant_id}", None
        unproven = [g for g in givers if g != "policy" and self.store.find_user(g) is None]
        if unproven:  # given as an OS account: the reviewer may be who was at that terminal
            return f"grant {grant_id} was given by {unproven[0]!r}, not a proven person", None
        if grant.user == reviewer or (
            grant.group is not None and reviewer in self.store.group(grant.group).members
        ):
            return f"grant {grant_id} is their own access", None
        return "", grant.request_id

    def _request_involvement(self, reviewer: str, request_id: int) -> str:
        try:
            request = self.store.request(request_id)
        except NotFound:
            return f"request {request_id} is not in the store"
        if reviewer in request.approvers:
            return f"they approved request {request_id}"
        if reviewer in (request.decided_by or "").split(","):
            return f"they decided on request {request_id}"
        if reviewer in (request.user, request.requested_by):
            return f"they asked for request {request_id}"
        return ""
