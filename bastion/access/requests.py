"""Requests, approvals and break-glass: who may ask, who may decide, and what each step opens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bastion.access.grants import Access
from bastion.access.notices import request_notice
from bastion.access.twoperson import check_filer, check_not_own
from bastion.audit import NewGrant, NewRequest, Notice, Store
from bastion.audit.records import AccessRequest, Grant, User
from bastion.clock import Clock, iso
from bastion.config import Config
from bastion.durations import format_duration
from bastion.errors import Conflict, Denied, UsageError

DECIDERS = ("admin",)  # roles that may approve or deny access requests
ACKNOWLEDGERS = ("admin", "reviewer")  # roles that may acknowledge break-glass


@dataclass
class Requests:
    store: Store
    config: Config
    clock: Clock

    @property
    def access(self) -> Access:
        return Access(self.store, self.config, self.clock)

    def request(
        self,
        *,
        user: str,
        target: str,
        duration: timedelta,
        reason: str,
        requested_by: str,
        mode: str = "read",
        ticket_ref: str | None = None,
    ) -> AccessRequest:
        """File a request for `user`; a target that needs no approval opens it at once.

        `requested_by` is a proven bastion user (never an OS account): the user themselves,
        or an admin filing on their behalf, who then may not decide on it."""
        self._active(user)
        check_filer(self.store, requested_by, user, DECIDERS, "request")
        reason, ticket_ref = self.access.checked(target, mode, duration, reason, ticket_ref)
        for other in self.store.requests(state="pending", user=user, target=target):
            if other.expires_at > self.clock.now():
                raise Conflict(f"{user} has request {other.id} pending for {target} already")
        needed = self.config.target_policy(target).approvals
        new = NewRequest(
            user=user, target=target, mode=mode, duration=duration, reason=reason,
            ticket_ref=ticket_ref, requested_by=requested_by,
            expires_at=self.clock.now() + self.config.requests.pending_for,
            approvals_needed=needed,
        )  # fmt: skip
        kind = "request.approved" if needed == 0 else "request.created"

        def notices(made: int) -> tuple[Notice, ...]:
            return self._announce(request_notice(kind, new, requested_by, request_id=made))

        return self.store.add_request(new, notices, open_now=needed == 0)

    def approve(
        self, request_id: int, approver: str, duration: timedelta | None = None
    ) -> AccessRequest:
        """One approval; the last one needed opens the grant, its window starting now."""
        request = self._decidable(request_id, approver, "approve")
        if approver in request.approvers:
            raise Conflict(f"{approver} approved request {request_id} already")
        window = request.duration if duration is None else duration
        if window <= timedelta(0) or window > request.duration:
            raise UsageError(
                f"--for may only shorten the {format_duration(request.duration)} asked for"
            )
        final = len(request.approvers) + 1 >= request.approvals_needed
        notice = request_notice("request.approved" if final else "request.approval",
                                request, approver)  # fmt: skip
        return self.store.approve_request(request_id, approver, window, request.approvers,
                                          self._announce(notice))  # fmt: skip

    def deny(self, request_id: int, actor: str, reason: str) -> AccessRequest:
        reason = " ".join(reason.split())
        if not reason:
            raise UsageError("say why the request is denied (--reason)")
        request = self._decidable(request_id, actor, "deny")
        notice = request_notice("request.denied", request, actor, reason)
        return self.store.close_request(request_id, actor, "denied", reason,
                                        self._announce(notice))  # fmt: skip

    def cancel(self, request_id: int, actor: str) -> AccessRequest:
        """The person who asked takes a pending request back."""
        request = self.store.request(request_id)
        if actor not in (request.user, request.requested_by):
            raise Denied(f"only {request.user} may cancel request {request_id}")
        return self.store.close_request(request_id, actor, "cancelled", "withdrawn")

    def of(self, user: str) -> list[AccessRequest]:
        """`user`'s own requests (those left pending too long expire first)."""
        self.store.expire_requests()
        return self.store.requests(user=user)

    def decidable_by(self, actor: str) -> list[AccessRequest]:
        """The pending requests `actor` may approve or deny (none unless an active admin)."""
        person = self.store.user(actor)
        if person.role not in DECIDERS or person.disabled_at is not None:
            return []
        self.store.expire_requests()
        return [r for r in self.store.requests(state="pending")
                if actor not in (r.user, r.requested_by)]  # fmt: skip

    def _decidable(self, request_id: int, actor: str, verb: str) -> AccessRequest:
        """The request, if `actor` may decide on it: an active admin who is not asking."""
        self.store.expire_requests()
        request = self.store.request(request_id)
        if request.state != "pending":
            raise Conflict(f"request {request_id} is {request.state}, not pending")
        person = self._active(actor)
        if person.role not in DECIDERS:
            raise Denied(f"{actor} has the {person.role} role; only admins may {verb} requests")
        check_not_own(self.store, actor, (request.user, request.requested_by),
                      item=f"request {request_id}", verb=verb, others="another admin")  # fmt: skip
        return request

    def _announce(self, notice: Notice) -> tuple[Notice, ...]:
        """Queue the notice with its event, when a webhook is configured to hear it."""
        return (notice,) if self.config.notify.webhook_url else ()

    def _active(self, name: str) -> User:
        person = self.store.user(name)
        if person.disabled_at is not None:
            raise Denied(f"user {name!r} is disabled")
        return person

    def break_glass(
        self,
        *,
        user: str,
        target: str,
        reason: str,
        duration: timedelta | None = None,
        mode: str = "read",
    ) -> Grant:
        """Emergency access the engineer opens for themselves, where the target allows it."""
        policy = self.config.target_policy(target)
        if not policy.break_glass:
            raise Denied(f"break-glass is not allowed on {target}; request access instead")
        window = duration or policy.break_glass_max
        if window > policy.break_glass_max:
            raise UsageError(
                f"break-glass on {target} lasts at most {format_duration(policy.break_glass_max)}"
            )
        self._active(user)
        reason, _ = self.access.checked(target, mode, window, reason, None)
        now = self.clock.now()
        new = NewGrant(target=target, mode=mode, starts_at=now, ends_at=now + window,
                       reason=reason, actor=user, user=user, break_glass=True)  # fmt: skip
        return self.store.add_grant(new, self._announce(request_notice("breakglass.opened", new,
                                                                       user)))  # fmt: skip

    def acknowledge(self, grant_id: int, actor: str, note: str) -> Grant:
        """A reviewer has looked at a break-glass grant; it is no longer flagged."""
        person = self._active(actor)
        if person.role not in ACKNOWLEDGERS:
            raise Denied(
                f"{actor} has the {person.role} role; only reviewers and admins acknowledge"
            )
        grant = self.store.grant(grant_id)
        if grant.user == actor:
            raise Denied(f"{actor} opened break-glass grant {grant_id}; someone else must"
                         " acknowledge it")  # fmt: skip
        return self.store.acknowledge_grant(grant_id, actor, " ".join(note.split()))

    def describe(self, request: AccessRequest) -> str:
        """One line for listings and replies."""
        state = request.state
        if state == "pending":
            state += f" ({len(request.approvers)}/{request.approvals_needed} approvals,"
            state += f" expires {iso(request.expires_at)})"
        elif request.grant_id is not None:
            state += f" (grant {request.grant_id})"
        return (f"request {request.id}: {request.user} -> {request.target} {request.mode}"
                f" for {format_duration(request.duration)}: {state}")  # fmt: skip
