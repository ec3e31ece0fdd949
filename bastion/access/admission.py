"""One way in for every door: first factor, TOTP, access decision, each step one audit event.

A door (SSH, PostgreSQL, the web console) only says how a proof arrived and how its sessions
end; what counts as proven, what is refused and what the audit trail says about it is decided
here, the same for every door, so the doors cannot drift apart on a security step:

    Admission(attempt)           who says they are whom, from where, through which door
      .proven(method, ok)        a first factor: a key (SSH) or a password (any door)
      .second_factor(outcome)    the TOTP code, single use, counted towards lockout
      .denied_event(decision)    the access decision for a target, when it is a refusal
      .failed_event()            the login ended without both factors: `auth.failed`

A sign-in without a target (the web console) is an Admission that stops after the second
factor. This module is pure: the core does the checking, the doors the talking.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bastion.access.grants import Decision
from bastion.audit import Event, TotpOutcome, TotpResult
from bastion.identity.service import refusal_text

DOORS = ("ssh", "postgres", "web")
PASSWORD, PUBLICKEY, TICKET = "password", "publickey", "ticket"
NAME_CHANGED = "login name changed"
# What each failed step is called in `auth.failed`, and the reason the trail gives for it.
REASONS = {
    PASSWORD: "wrong password",
    f"totp {TotpResult.WRONG.value}": "wrong verification code",
    f"totp {TotpResult.REPLAYED.value}": "that code was used already",
    f"totp {TotpResult.LOCKED.value}": "the account is locked",
    f"totp {TotpResult.DISABLED.value}": "the account is disabled",
    NAME_CHANGED: NAME_CHANGED,
}
NOT_PROVEN = "not signed in: both factors must be proven first"


@dataclass(frozen=True)
class Attempt:
    """Who says they are whom, from where, through which door."""

    door: str
    source: str
    user: str

    def __post_init__(self) -> None:
        if self.door not in DOORS:
            raise ValueError(f"unknown door {self.door!r}")

    @property
    def via(self) -> str:
        """How the identity and lockout events name the door and address (`ssh:10.0.0.7`)."""
        return f"{self.door}:{self.source}"


@dataclass(frozen=True)
class LoginFacts:
    """What a door may know of a login name before any proof: only enough to ask for one."""

    known: bool = False  # the user exists and is enabled
    key_fingerprints: frozenset[str] = frozenset()
    has_password: bool = False


class Checker(Protocol):
    """What a proof needs checked (the core answers, off the event loop)."""

    def check_password(self, name: str, password: str, via: str) -> Awaitable[bool]: ...

    def login_facts(self, name: str) -> Awaitable[LoginFacts]: ...


class Proof(Protocol):
    """A first factor as a door received it; the door decides how it arrives."""

    @property
    def method(self) -> str: ...

    def verify(self, checker: Checker, attempt: Attempt) -> Awaitable[bool]: ...


@dataclass(frozen=True)
class PasswordProof:
    """A password (SSH password auth, the PostgreSQL password message, the web form).

    `allowed` False when the door refuses passwords for this user (SSH: users with keys);
    the password is checked all the same, so the answer takes as long either way."""

    password: str = field(repr=False)
    allowed: bool = True
    method: str = PASSWORD

    async def verify(self, checker: Checker, attempt: Attempt) -> bool:
        ok = await checker.check_password(attempt.user, self.password, attempt.via)
        return ok and self.allowed


@dataclass(frozen=True)
class KeyProof:
    """A public key whose signature the door verified (SSH): proven if it is the user's."""

    fingerprint: str
    method: str = PUBLICKEY

    async def verify(self, checker: Checker, attempt: Attempt) -> bool:
        facts = await checker.login_facts(attempt.user)
        return facts.known and self.fingerprint in facts.key_fingerprints


@dataclass
class Admission:
    """One login's progress through the steps; the core feeds it, the door reads it."""

    attempt: Attempt
    first_factor: str | None = None
    authenticated: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def user(self) -> str:
        return self.attempt.user

    def proven(self, method: str, ok: bool) -> bool:
        """A first factor's result; a failed one is counted. Only one first factor a login."""
        if ok and self.first_factor is None:
            self.first_factor = method
            return True
        if not ok and method != PUBLICKEY:  # a client offers each of its keys: no failure
            self.failures.append(method)
        return False

    def failed(self, what: str) -> None:
        """A step the door refused on its own (a changed login name)."""
        self.failures.append(what)

    def ticket(self) -> None:
        """A one-time or reusable ticket stands for both factors (it was minted after TOTP)."""
        self.first_factor = TICKET
        self.authenticated = True

    def second_factor(self, outcome: TotpOutcome) -> str | None:
        """The TOTP step's result: None when accepted, else what to tell the person."""
        if self.first_factor is None:
            self.failures.append(f"totp {TotpResult.WRONG.value}")
            return NOT_PROVEN
        if outcome.result is TotpResult.ACCEPTED:
            self.authenticated = True
            return None
        self.failures.append(f"totp {outcome.result.value}")
        return refusal_text(outcome)

    def may_decide(self) -> bool:
        """An access decision only follows both factors (fail closed)."""
        return self.authenticated and self.first_factor is not None

    def tried(self) -> bool:
        """Whether the login ended without both factors after trying something."""
        return not self.authenticated and bool(self.failures)

    def failed_event(self, shown_as: str) -> Event | None:
        """`auth.failed` for a login that ended without both factors after trying, naming the
        person `shown_as` (Identity.audit_name: a name that is no user is a keyed digest);
        None when it succeeded or tried nothing (the doors count those in their summaries)."""
        if not self.tried():
            return None
        last = self.failures[-1]
        detail = self._detail({"failures": list(self.failures), "first_factor": self.first_factor,
                               "reason": REASONS.get(last, last)})  # fmt: skip
        return Event("auth.failed", self.attempt.via, shown_as, "notice", detail=detail)

    def denied_event(self, target: str, reason: str, *, severity: str = "notice",
                     extra: Mapping[str, Any] | None = None) -> Event:  # fmt: skip
        """`access.denied`: the person is proven, the target refused them (and why)."""
        detail = self._detail({"reason": reason, **(extra or {})})
        return Event("access.denied", self.user or "?", target, severity, detail=detail)

    def _detail(self, more: Mapping[str, Any]) -> dict[str, Any]:
        return {"protocol": self.attempt.door, "source": self.attempt.source, **more}


def door_decision(admission: Admission, decision: Decision,
                  store_refusal: str | None = None) -> Decision:  # fmt: skip
    """The access decision as a door must take it: refused unless both factors of this very
    login were proven first, whatever the grants say; and refused, whatever else holds, while
    this node has lost its store (`store_refusal`, from StoreGrace.refusal)."""
    if store_refusal is not None:
        return Decision(False, store_refusal)
    if not admission.may_decide():
        return Decision(False, NOT_PROVEN)
    return decision
