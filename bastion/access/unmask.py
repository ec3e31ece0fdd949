"""Consent-gated unmasking: who may ask to see one subject's sensitive values, who approves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from bastion.access.twoperson import check_filer, check_not_own
from bastion.audit import NewUnmask, Store, UnmaskGrant
from bastion.clock import Clock
from bastion.config import Config
from bastion.durations import format_duration
from bastion.errors import Conflict, Denied, UsageError

DEFAULT_FOR = timedelta(hours=1)
APPROVERS = ("admin", "reviewer")
COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){0,2}")
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Unmasking:
    store: Store
    config: Config
    clock: Clock

    def request(
        self,
        *,
        user: str,
        target: str,
        columns: list[str],
        subject: str,
        reason: str,
        consent_ref: str,
        requested_by: str,
        consent_sha256: str | None = None,
        duration: timedelta | None = None,
    ) -> UnmaskGrant:
        """Ask for `columns` of `target` in clear, in rows of one subject only."""
        account = self.store.user(user)
        if account.disabled_at is not None:
            raise Denied(f"user {user!r} is disabled")
        check_filer(self.store, requested_by, user, APPROVERS, "unmask request")
        if self.store.target(target).kind != "postgres":
            raise UsageError(f"{target} is not a database target")
        key, value = self.subject(target, subject)
        window = duration or DEFAULT_FOR
        cap = self.config.target_policy(target).unmask_max
        if window <= timedelta(0) or window > cap:
            raise UsageError(f"unmasking on {target} lasts at most {format_duration(cap)}")
        wanted = [c.strip() for c in columns if c.strip()]
        if not wanted or any(not COLUMN.fullmatch(c) for c in wanted):
            raise UsageError("name the columns as table.column (or a table for all of its own)")
        reason, consent_ref = " ".join(reason.split()), " ".join(consent_ref.split())
        if len(reason) < self.config.grants.min_reason_length:
            raise UsageError(f"the reason must say why, in at least"
                             f" {self.config.grants.min_reason_length} characters")  # fmt: skip
        if not consent_ref:
            raise UsageError("say where the subject's consent is recorded (--consent)")
        if consent_sha256 is not None and not SHA256.fullmatch(consent_sha256):
            raise UsageError("the consent document's SHA-256 must be 64 lower-case hex digits")
        return self.store.add_unmask(NewUnmask(user, target, tuple(wanted), key, value, reason,
                                               consent_ref, consent_sha256, window,
                                               requested_by))  # fmt: skip

    def subject(self, target: str, text: str) -> tuple[str, str]:
        """ "customers.id=4711" checked against the target's configured subject keys."""
        key, equals, value = text.partition("=")
        key, value = key.strip(), value.strip()
        keys = self.config.target_policy(target).masking.subject_keys
        known = {".".join(k.split(".")[-2:]) for k in keys}  # table.column, schema or not
        if not equals or not value:
            raise UsageError("name the subject as table.column=value, e.g. customers.id=4711")
        if key not in keys and key not in known:
            shown = ", ".join(keys) or "none yet"
            raise UsageError(f"{key} is not a subject key of {target} (configured: {shown});"
                             f" set [targets.{target}.masking] subject_keys")  # fmt: skip
        return key, value

    def approve(self, grant_id: int, approver: str, *, consent_confirmed: bool,
                duration: timedelta | None = None) -> UnmaskGrant:  # fmt: skip
        """A different admin or reviewer confirms the consent; the window opens now."""
        found = self._decidable(grant_id, approver, "approve")
        if not consent_confirmed:
            raise UsageError("confirm that you checked the subject's consent (--consent-confirmed)")
        if duration is not None and not timedelta(0) < duration <= found.duration:
            raise UsageError(f"--for may only shorten the {format_duration(found.duration)}"
                             " asked for")  # fmt: skip
        return self.store.decide_unmask(grant_id, approver, "approved", window=duration)

    def deny(self, grant_id: int, actor: str, reason: str) -> UnmaskGrant:
        if not reason.strip():
            raise UsageError("say why the unmask request is denied (--reason)")
        self._decidable(grant_id, actor, "deny")
        return self.store.decide_unmask(grant_id, actor, "denied", reason=" ".join(reason.split()))

    def _decidable(self, grant_id: int, actor: str, verb: str) -> UnmaskGrant:
        found = self.store.unmask(grant_id)
        if found.state != "pending":
            raise Conflict(f"unmask grant {grant_id} is {found.state}, not pending")
        person = self.store.user(actor)
        if person.disabled_at is not None:
            raise Denied(f"user {actor!r} is disabled")
        if person.role not in APPROVERS:
            raise Denied(f"{actor} has the {person.role} role; only admins and reviewers"
                         f" may {verb} unmasking")  # fmt: skip
        item = f"unmask grant {grant_id}"
        check_not_own(self.store, actor, (found.user, found.requested_by),
                      item=item, verb=verb, others="someone else")  # fmt: skip
        return found

    def active(self, user: str, target: str) -> list[UnmaskGrant]:
        """The unmask grants live now for this engineer on this target (read per statement)."""
        now = self.clock.now()
        return [g for g in self.store.unmasks(user=user, target=target, state="approved")
                if g.live_at(now)]  # fmt: skip
