"""Granting, revoking and checking time-boxed access to targets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.access.enforce import Ending, endings, uncovered
from bastion.access.hours import Hours
from bastion.audit import NewGrant, Store
from bastion.audit.records import Grant
from bastion.clock import Clock, iso
from bastion.config import Config
from bastion.durations import format_duration
from bastion.errors import Denied, UsageError

MODES = ("read", "write")
MAX_TICKET_REF = 200  # characters in a grant's ticket reference


def holder(text: str) -> tuple[str | None, str | None]:
    """Who a grant is for, as typed: "alice" (a user) or "group:oncall" -> (user, group)."""
    text = text.strip()
    if text.startswith("group:"):
        return None, text.removeprefix("group:")
    return text, None


@dataclass(frozen=True)
class Decision:
    """The answer, with the grant that allows it or the reason it is refused."""

    allowed: bool
    reason: str
    grant: Grant | None = None


@dataclass
class Access:
    store: Store
    config: Config
    clock: Clock

    def grant(
        self,
        *,
        target: str,
        duration: timedelta,
        reason: str,
        actor: str,
        user: str | None = None,
        group: str | None = None,
        mode: str = "read",
        starts_at: datetime | None = None,
        ticket_ref: str | None = None,
    ) -> Grant:
        """Open a time-boxed window for a user or a group (now, or scheduled from `starts_at`);
        refuses what the policy does not allow."""
        if (user is None) == (group is None):
            raise UsageError("a grant goes to one user or to one group")
        reason, ticket_ref = self.checked(target, mode, duration, reason, ticket_ref)
        approvals = self.config.target_policy(target).approvals
        if approvals >= 2:
            raise Denied(
                f"{target} needs {approvals} approvals: a direct grant is one;"
                " ask through a request (bastion request ...)"
            )
        if user is not None:
            account = self.store.user(user)
            if account.disabled_at is not None:
                raise Denied(f"user {user!r} is disabled")
        else:
            self.store.group(str(group))
        start = starts_at or self.clock.now()
        if start + duration <= self.clock.now():
            raise UsageError("that window is over already")
        return self.store.add_grant(NewGrant(
            target=target, mode=mode, starts_at=start, ends_at=start + duration, reason=reason,
            actor=actor, user=user, group=group, ticket_ref=ticket_ref))  # fmt: skip

    def checked(
        self, target: str, mode: str, duration: timedelta, reason: str, ticket_ref: str | None
    ) -> tuple[str, str | None]:
        """Check what any grant or request asks for; returns the tidied reason and ticket."""
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}: choose read or write")
        reason = " ".join(reason.split())
        minimum = self.config.grants.min_reason_length
        if len(reason) < minimum:
            raise UsageError(f"the reason must say why, in at least {minimum} characters")
        self.store.target(target)
        limit = self.config.max_grant_for(target)
        if duration <= timedelta(0) or duration > limit:
            raise UsageError(
                f"a grant on {target} may last at most {format_duration(limit)};"
                f" asked for {format_duration(duration) if duration > timedelta(0) else duration}"
            )
        if ticket_ref is not None:
            ticket_ref = " ".join(ticket_ref.split())
            if not ticket_ref or len(ticket_ref) > MAX_TICKET_REF:
                raise UsageError(f"the ticket reference must be 1 to {MAX_TICKET_REF} characters")
        return reason, ticket_ref

    def revoke(self, grant_id: int, actor: str) -> Grant:
        return self.store.revoke_grant(grant_id, actor)

    def upcoming(self, user: str) -> list[Grant]:
        """The user's grants live now or scheduled, soonest first."""
        now = self.clock.now()
        found = [g for g in self.store.grants(user=user)
                 if g.revoked_at is None and g.ends_at > now]  # fmt: skip
        return sorted(found, key=lambda g: (g.starts_at, g.id))

    def reachable(self, user: str) -> list[str]:
        """The targets `user` may open a session on now, by name."""
        now = self.clock.now()
        return sorted({g.target for g in self.store.grants(user=user, live_at=now)})

    def endings(self, hours_of: Mapping[str, Hours | None] | None = None) -> list[Ending]:
        """Open sessions whose access has ended (expired, revoked, user disabled, outside
        their target's hours). `hours_of`: the allowed hours a live session started with, by
        its id (a reload neither extends nor cuts them); others go by the config's."""
        sessions = self.store.open_sessions_access()
        if not sessions:
            return []
        now = self.clock.now()
        live = self.store.grants(live_at=now)
        lost = uncovered(sessions, live, now)
        own = self.store.grants_by_ids(s.grant_id for s in lost if s.grant_id is not None)
        closed: dict[str, str] = {}
        for session in sessions:
            target, known = session.target, hours_of or {}
            hours = (known[session.session_id] if session.session_id in known
                     else self.config.target_policy(target).allowed_hours)  # fmt: skip
            if hours is not None and not hours.allows(now):
                closed[session.session_id] = hours.refusal(target, now)
        return endings(sessions, live, {g.id: g for g in own}, now, closed_sessions=closed)

    def _account_refusal(self, user: str, now: datetime) -> str | None:
        account = self.store.find_user(user)
        if account is None:
            return f"no user named {user!r}"
        if account.disabled_at is not None:
            return f"user {user!r} is disabled"
        if account.locked_at(now):
            return f"user {user!r} is locked until {iso(account.locked_until or now)}"
        return None

    def decide(self, user: str, target: str, kind: str | None = None) -> Decision:
        """May `user` open a session on `target` (of `kind`, when a door asks) now? Pure
        reading: records nothing. A target of another kind is refused like an unknown one."""
        now = self.clock.now()
        refused = self._account_refusal(user, now)
        if refused is not None:
            return Decision(False, refused)
        found = self.store.find_target(target)
        if found is None:
            return Decision(False, f"no target named {target!r}")
        if kind is not None and found.kind != kind:
            return Decision(False, f"no {kind} target named {target!r}")
        hours = self.config.target_policy(target).allowed_hours
        if hours is not None and not hours.allows(now):
            return Decision(False, hours.refusal(target, now))
        live = self.store.grants(user=user, target=target, live_at=now)
        if not live:
            return Decision(
                False,
                f"{user} has no access to {target} now; ask an admin:"
                f' bastion grant {user} {target} --for 1h --reason "..."',
            )
        best = max(live, key=lambda g: (g.mode == "write", g.ends_at))
        via = f" via group {best.group}" if best.group else ""
        glass = ", break-glass" if best.break_glass else ""
        until = iso(best.ends_at)
        return Decision(True, f"grant {best.id} ({best.mode}{via}{glass}) until {until}", best)
