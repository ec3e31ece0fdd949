"""Identity operations: enrol users, register keys, check passwords and TOTP codes."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

from bastion.audit import Store, TotpOutcome, TotpResult
from bastion.audit.records import NewKey, SshKey, User
from bastion.clock import Clock, iso
from bastion.config import LockoutPolicy, TotpPolicy
from bastion.errors import Denied, UsageError
from bastion.identity import passwords, totp
from bastion.identity.enrolment import Enrolment
from bastion.identity.onetime import OneTimeKey
from bastion.identity.pseudonym import unknown_name
from bastion.identity.sealing import SecretBox

ROLES = ("engineer", "admin", "reviewer")
TICKET_PREFIX = "bt_"  # a password starting so is a one-time ticket, not password + code
NAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,31}$")
WEAK_KEY_TYPES = ("ssh-dss",)
MIN_RSA_BITS = 2048


def check_user_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UsageError(
            f"bad user name {name!r}: use 1-32 lower-case letters, digits, '.', '_' or '-',"
            " starting with a letter"
        )


@dataclass
class Identity:
    """Who people are and how they prove it; the doors and the CLI both use this."""

    store: Store
    box: SecretBox
    clock: Clock
    totp_policy: TotpPolicy
    lockout: LockoutPolicy

    def _seal_seed(self, name: str, seed: str) -> bytes:
        return self.box.seal(seed.encode(), context=f"totp:{name}")

    def _enrolment(self, name: str, seed: str) -> Enrolment:
        return Enrolment(name, totp.provisioning_uri(seed, name, self.totp_policy.issuer))

    def enrol(
        self,
        name: str,
        role: str,
        password: str | None,
        actor: str,
        *,
        ssh_keys: Sequence[str] = (),
    ) -> Enrolment:
        """Create a user (and their keys) with a fresh TOTP seed; all checks come first."""
        check_user_name(name)
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
        keys = [parse_public_key(text) for text in ssh_keys]
        password_hash = self._hash_password(password) if password is not None else None
        seed = totp.new_secret()
        self.store.add_user(
            name, role, password_hash, self._seal_seed(name, seed), actor, keys=keys
        )
        return self._enrolment(name, seed)

    def reset_totp(self, name: str, actor: str) -> Enrolment:
        self.store.user(name)
        seed = totp.new_secret()
        self.store.replace_totp(name, self._seal_seed(name, seed), actor)
        return self._enrolment(name, seed)

    def set_password(self, name: str, password: str, actor: str) -> None:
        self.store.set_password(name, self._hash_password(password), actor)

    @staticmethod
    def _hash_password(password: str) -> str:
        weakness = passwords.check_password_strength(password)
        if weakness:
            raise UsageError(f"password refused: {weakness}")
        return passwords.hash_password(password)

    def add_ssh_keys(self, name: str, key_texts: Sequence[str], actor: str) -> list[SshKey]:
        """Register public keys (OpenSSH one-line form) for a user; all or nothing."""
        keys = [parse_public_key(text) for text in key_texts]
        return self.store.add_ssh_keys(name, keys, actor)

    def check_password(self, name: str, password: str, via: str = "unknown") -> bool:
        """True when the user exists, is enabled and unlocked, has a password and it matches;
        a wrong one counts towards the lockout. All in the calling thread: the doors use
        Core.check_password, which runs argon2 off the store's thread."""
        ok = passwords.verify_or_pretend(self.password_to_verify(name), password)
        if not ok:
            self.password_failed(name, via)
        return ok

    def password_to_verify(self, name: str) -> str | None:
        """The hash a password must match, or None when no password can succeed (unknown,
        disabled, locked or key-only user): the caller still verifies against a stand-in."""
        found = self.store.find_user(name)
        if found is None or found.disabled_at is not None or found.locked_at(self.clock.now()):
            return None
        return self.store.user_secrets(name).password_hash

    def password_failed(self, name: str, via: str) -> bool:
        """A wrong password: counted towards the user's lockout like a wrong code; a name that
        is no user is chained as its keyed digest (bastion/identity/pseudonym.py). True when
        it locked the account."""
        return self.store.record_password_failure(
            name, via, self.lockout.max_failures, self.lockout.lock_for,
            unknown_as=unknown_name(self.box, name),
        )  # fmt: skip

    def audit_name(self, name: str) -> str:
        """How the audit trail names the login name `name`: itself for an existing user, else
        its keyed digest (what someone typed there may be their password)."""
        if name and self.store.find_user(name) is not None:
            return name
        return unknown_name(self.box, name)

    def check_totp(self, name: str, code: str, via: str) -> TotpOutcome:
        """Try a code once: replay, lockout and the audit event are settled by the store."""
        secrets = self.store.user_secrets(name)
        step = None
        if not secrets.user.locked_at(self.clock.now()) and secrets.user.disabled_at is None:
            seed = self.box.open(secrets.totp_sealed, context=f"totp:{name}").decode()
            step = totp.matching_step(seed, code, self.clock.now(), self.totp_policy.skew_steps)
        return self.store.record_totp_attempt(
            name, step, via, self.lockout.max_failures, self.lockout.lock_for
        )

    def issue_ticket(
        self, name: str, target: str, code: str, via: str, valid_for: timedelta
    ) -> tuple[str, datetime]:
        """A single-use database password, minted only after a right TOTP code."""
        self.require_totp(name, code, via)
        token = TICKET_PREFIX + secrets.token_urlsafe(24)
        expires = self.clock.now() + valid_for
        self.add_ticket(name, target, token, expires, via)
        return token, expires

    def add_ticket(self, name: str, target: str, token: str, expires: datetime,
                   via: str) -> int:  # fmt: skip
        """Keep a one-time ticket: its keyed digest, and its row bound to the key (no code
        is asked here: issue_ticket asks it; tests and benches mint so)."""
        digest = self._onetime.digest(token)
        mac = self._onetime.row(digest, name, target, iso(expires))
        return self.store.add_ticket(name, target, digest, expires, via, row_mac=mac)

    def use_ticket(self, name: str, target: str, token: str, via: str) -> int:
        """Spend a one-time ticket once (Denied: unknown, someone else's, used, expired,
        or a row not bound by the key)."""
        return self.store.use_ticket(name, target, self._onetime.digest(token), via,
                                     self._onetime.holds)  # fmt: skip

    @cached_property
    def _onetime(self) -> OneTimeKey:
        return OneTimeKey(self.box)

    def require_totp(self, name: str, code: str, via: str) -> User:
        """check_totp, turned into a one-line refusal for anything but success."""
        outcome = self.check_totp(name, code, via)
        if outcome.result is TotpResult.ACCEPTED:
            return self.store.user(name)
        raise Denied(refusal_text(outcome))


def parse_public_key(text: str) -> NewKey:
    """Check an OpenSSH public key line; refuses weak or malformed keys in one line."""
    import asyncssh  # noqa: PLC0415 - a heavy import most commands never need

    try:
        key = asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise UsageError(f"not an OpenSSH public key: {exc}") from exc
    algorithm = key.get_algorithm()
    if algorithm in WEAK_KEY_TYPES:
        raise UsageError(f"{algorithm} keys are too weak; use ed25519 or ecdsa")
    bits = getattr(getattr(key, "pyca_key", None), "key_size", None)
    if algorithm == "ssh-rsa" and isinstance(bits, int) and bits < MIN_RSA_BITS:
        raise UsageError(f"RSA keys need at least {MIN_RSA_BITS} bits; this one has {bits}")
    comment = key.get_comment() or ""
    key.set_comment(None)
    public = key.export_public_key("openssh").decode().strip()
    return NewKey(algorithm, public, key.get_fingerprint("sha256"), comment)


def refusal_text(outcome: TotpOutcome) -> str:
    """What to tell the person; never which part of a code was right."""
    if outcome.result is TotpResult.LOCKED or outcome.just_locked:
        until = outcome.locked_until.strftime("%H:%M UTC") if outcome.locked_until else "later"
        return f"too many wrong codes: locked until {until}; an admin can unlock you"
    if outcome.result is TotpResult.DISABLED:
        return "this account is disabled"
    if outcome.result is TotpResult.REPLAYED:
        return "that code was used already; wait for the next one"
    return "wrong verification code"


def user_state(user: User, now: datetime) -> str:
    """active, locked (too many failed codes or passwords) or disabled (offboarded)."""
    if user.disabled_at:
        return "disabled"
    return "locked" if user.locked_at(now) else "active"
