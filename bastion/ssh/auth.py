"""One SSH connection's login: pre-auth limits, a first factor, then TOTP (keyboard-interactive)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh
import structlog
from asyncssh.public_key import decode_ssh_public_key

from bastion.access.admission import NAME_CHANGED, Admission, PasswordProof
from bastion.access.preauth import PreauthLimiter
from bastion.audit import Event, TotpResult
from bastion.audit.records import Target
from bastion.core import STOPPING_REFUSAL, Core
from bastion.errors import Denied
from bastion.identity.service import refusal_text
from bastion.ssh import upstream
from bastion.ssh.login import Login, parse_login
from bastion.summaries import Summaries
from bastion.tasks import spawn

log = structlog.get_logger("bastion.ssh")

PROMPT = "Verification code: "
MAX_CODES_PER_CONNECTION = 3


class NameChanged(asyncssh.ProtocolError):
    """The client asked to change the login name during authentication (OpenSSH refuses too)."""


@dataclass
class LoginState:
    """What this connection has proven so far, all of it for the one login name it began with."""

    name: str | None = None  # the login name of the first request; it may never change
    login: Login = field(default_factory=lambda: Login("", None))
    known: bool = False  # the user exists and is enabled
    key_fingerprints: frozenset[str] = frozenset()
    has_password: bool = False
    first_factor: str | None = None
    first_factor_name: str | None = None  # the login name the first factor was proven for
    key_fingerprint: str | None = None
    codes_tried: int = 0
    admission: Admission | None = None  # the shared login steps (bastion/access/admission.py)

    @property
    def authenticated(self) -> bool:
        return self.admission is not None and self.admission.authenticated


class BastionSSHServer(asyncssh.SSHServer):
    """asyncssh's per-connection owner: decides each login step, then hands out channels."""

    def __init__(
        self,
        core: Core,
        limiter: PreauthLimiter,
        session_factory: Callable[[Any], Any],
        live: dict[str, Any] | None = None,
        connections: set[BastionSSHServer] | None = None,
        *,
        summaries: Summaries | None = None,
        source: str | None = None,
    ) -> None:
        self.core = core
        self.summaries = summaries
        self.live: dict[str, Any] = live if live is not None else {}
        self.connections = connections if connections is not None else set()
        self.limiter = limiter
        self.session_factory = session_factory
        self.state = LoginState()
        self.conn: asyncssh.SSHServerConnection | None = None
        self.source = "?"
        self._claimed = source  # the client's address a trusted balancer's header gave
        self.admitted = False
        self._upstreams: dict[str, asyncssh.SSHClientConnection] = {}
        self._upstream_lock = asyncio.Lock()
        self._lost = False  # the client's connection is gone: no new upstream connections

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.connections.add(self)
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.source = self._claimed or str(peer[0])
        # asyncssh asks the connection itself about agent and X11 forwarding; answer here,
        # so each refusal is audited (recording cannot see inside a tunnel).
        conn.create_agent_listener = self._refuse_agent  # type: ignore[method-assign]
        conn.attach_x11_listener = self._refuse_x11  # type: ignore[method-assign,assignment]
        refusal = self.limiter.admit(self.source, self.core.clock.now())
        if refusal is None:
            self.admitted = True
            return
        log.warning("ssh.preauth_refused", source=self.source, why=refusal)
        self.core.metrics.preauth_refused("ssh")
        self._repeatable("auth.preauth_refused", refusal)
        conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.connections.discard(self)
        self.close_upstreams()
        if self.admitted and not self.state.authenticated:
            self.limiter.closed_unauthenticated(self.source)
            admission = self.state.admission
            if admission is None or not admission.tried():  # counted, not a row each
                self._repeatable("auth.abandoned", str(exc) if exc else "client left")
                return
            spawn(self._login_failed(admission), name="ssh-audit")

    def close_upstreams(self) -> None:
        for connection in self._upstreams.values():
            connection.close()
        self._upstreams.clear()

    async def close(self) -> None:
        """End the client's connection and its upstream ones (the bastion is stopping)."""
        closing: list[asyncssh.SSHClientConnection | asyncssh.SSHServerConnection] = [
            *self._upstreams.values()]  # fmt: skip
        if self.conn is not None:
            closing.append(self.conn)
        self.close_upstreams()
        for connection in closing:
            connection.close()
        await asyncio.gather(*(c.wait_closed() for c in closing), return_exceptions=True)

    def _repeatable(self, kind: str, why: str) -> None:
        """What a client can repeat at will before login goes into the door's summaries."""
        if self.summaries is not None:
            self.summaries.note(kind, self.source, why)
            return
        self._audit_soon(Event(kind, f"ssh:{self.source}", "", "warning",
                               detail={"source": self.source, "why": why}))  # fmt: skip

    def _audit_soon(self, event: Event) -> None:
        """Audit from a synchronous callback; the write is still durable, just not awaited."""
        spawn(self._audit(event), name="ssh-audit")  # held until done, never half-written

    async def _audit(self, event: Event) -> None:
        try:
            await self.core.audit(event)
        except Exception as exc:  # the store failed: nothing more can be recorded
            log.error("audit.write_failed", error=str(exc), kind=event.kind)

    async def _login_failed(self, admission: Admission) -> None:
        """`auth.failed` for a login that tried and failed (Core names an unknown user by a
        keyed digest, never as typed)."""
        try:
            await self.core.login_failed(admission)
        except Exception as exc:  # the store failed: nothing more can be recorded
            log.error("audit.write_failed", error=str(exc), kind="login failed")

    async def _shown(self, login_name: str) -> str:
        """A login name as the trail and the log may show it: as typed when its user part is
        an existing user, else its keyed digest (it may be a password typed in the wrong
        field)."""
        user = parse_login(login_name).user
        if user and await self.core.audit_name(user) == user:
            return login_name[:64]
        return await self.core.audit_name(login_name)

    async def _audit_name_changed(self, first: str, then: str) -> None:
        first, then = await self._shown(first), await self._shown(then)
        log.warning("ssh.name_changed", source=self.source, first=first, then=then)
        await self._audit(Event("auth.name_changed", f"ssh:{self.source}", first, "high",
                                detail={"source": self.source, "then": then}))  # fmt: skip

    # -- first factor -------------------------------------------------------------------

    async def begin_auth(self, username: str) -> bool:
        # Never return False here: asyncssh takes that as "no authentication needed".
        if self.state.name is not None:
            self._name_changed(username)
        self.state.name = username
        self.state.login = parse_login(username)
        user = self.state.login.user
        try:
            self.state.admission = self.core.admission("ssh", self.source, user)
        except Denied as exc:  # this node has lost its store: one line, then goodbye
            raise asyncssh.PermissionDenied(str(exc)) from None
        facts = await self.core.login_facts(user)
        self.state.known = facts.known
        self.state.key_fingerprints = facts.key_fingerprints
        self.state.has_password = facts.has_password
        return True

    def _name_changed(self, username: str) -> None:
        """A login is one person from its first packet to its last: end this connection."""
        first = self.state.name or ""
        if self.state.admission is not None:
            self.state.admission.failed(NAME_CHANGED)
        self._failed()
        spawn(self._audit_name_changed(first, username), name="ssh-audit")
        raise NameChanged("the login name may not change during authentication")

    def _same_name(self, username: str) -> bool:
        """Every step must name the login the connection began with (asyncssh checks too)."""
        return self.state.name is not None and username == self.state.name

    def public_key_auth_supported(self) -> bool:
        return self.state.first_factor is None

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if not self._same_name(username):
            return False
        fingerprint = key.get_fingerprint("sha256")
        if fingerprint in self.state.key_fingerprints:
            self.state.key_fingerprint = fingerprint
            return True
        return False

    def password_auth_supported(self) -> bool:
        # Offered to every name alike, so the method list never tells which users exist or
        # which of them have a password; only users with a password and no keys may use it.
        return self.state.first_factor is None

    async def validate_password(self, username: str, password: str) -> bool:
        if not self.password_auth_supported() or not self._same_name(username):
            return False
        self._stop_if_blocked()
        state = self.state
        if state.admission is None:  # begin_auth makes it: never proven without one
            return False
        # The same work for everyone: the password is checked even for unknown names, and
        # for users with keys, who may not use one here. argon2 runs in the core's hashing
        # threads; a wrong password counts towards lockout.
        allowed = state.known and state.has_password and not state.key_fingerprints
        ok = await self.core.check_proof(state.admission, PasswordProof(password, allowed))
        if not ok:
            self._failed()
        return ok

    def first_factor_proven(self, username: str, method: str, key_data: bytes | None) -> bool:
        """Called by the two-factor handlers once a signature or password checked out.

        False (and no factor) unless the proof was for this connection's own login name.
        """
        admission = self.state.admission
        if not self._same_name(username) or self.state.first_factor is not None:
            return False
        if admission is None or admission.first_factor is not None:
            return False
        if key_data is not None:
            fingerprint = decode_ssh_public_key(key_data).get_fingerprint("sha256")
            if fingerprint not in self.state.key_fingerprints:
                return False
            self.state.key_fingerprint = fingerprint
        if not admission.proven(method, True):
            return False
        self.state.first_factor = method
        self.state.first_factor_name = username
        return True

    # -- second factor ------------------------------------------------------------------

    def _second_factor_allowed(self, username: str) -> bool:
        state = self.state
        return (
            state.first_factor is not None
            and state.first_factor_name == username
            and self._same_name(username)
            and not state.authenticated
            and state.codes_tried < MAX_CODES_PER_CONNECTION
        )

    def kbdint_auth_supported(self) -> bool:
        state = self.state
        return state.name is not None and self._second_factor_allowed(state.name)

    def get_kbdint_challenge(self, username: str, lang: str, submethods: str) -> Any:
        if self.state.codes_tried >= MAX_CODES_PER_CONNECTION:
            # A client that starts keyboard-interactive again after its last code is done.
            raise asyncssh.PermissionDenied("too many verification codes on one connection")
        if not self._second_factor_allowed(username):
            return False
        return ("", "", "", [(PROMPT, False)])

    async def validate_kbdint_response(self, username: str, responses: Sequence[str]) -> Any:
        if not self._second_factor_allowed(username) or len(responses) != 1:
            return False
        self._stop_if_blocked()
        self.state.codes_tried += 1
        admission = self.state.admission
        if admission is None:  # a first factor was proven on it: never without one
            return False
        if self.core.going_live(admission, "") is not None:  # draining: not checked, not spent
            self._refuse_stopping()
        outcome = await self.core.second_factor(admission, responses[0])
        if admission.authenticated:
            return True
        self._failed()
        if outcome.result in (TotpResult.WRONG, TotpResult.REPLAYED) and (
            self.state.codes_tried < MAX_CODES_PER_CONNECTION
        ):
            return ("", refusal_text(outcome), "", [(PROMPT, False)])
        if self.conn is not None:
            self.conn.send_auth_banner(f"bastion: {refusal_text(outcome)}\r\n")
        # No more codes on this connection: a client that would start again is cut off here.
        raise asyncssh.PermissionDenied(refusal_text(outcome))

    def _refuse_stopping(self) -> None:
        """The node began draining while the code was typed: the usual one line, no session
        (a login is refused during a drain whatever it proves; Core.going_live counted it)."""
        if self.conn is not None:
            self.conn.send_auth_banner(f"bastion: {STOPPING_REFUSAL}\r\n")
        raise asyncssh.PermissionDenied(STOPPING_REFUSAL)

    def _failed(self) -> None:
        """Count a failed step against the source (the admission noted which step it was);
        once the source is blocked, this connection ends too."""
        if self.limiter.failed(self.source, self.core.clock.now()):
            self._audit_soon(Event("auth.source_blocked", f"ssh:{self.source}", "", "high",
                                   detail={"source": self.source}))  # fmt: skip
        self._stop_if_blocked()

    def _stop_if_blocked(self) -> None:
        if self.limiter.blocked(self.source, self.core.clock.now()):
            raise asyncssh.PermissionDenied(f"too many failed logins from {self.source}")

    def auth_completed(self) -> None:
        if not self.proven():
            # Only the TOTP step completes a login; anything else is a fault to stop at once.
            log.error("ssh.unproven_login", source=self.source)
            if self.conn is not None:
                self.conn.disconnect(asyncssh.DISC_PROTOCOL_ERROR, "login not proven")
            return
        self.limiter.authenticated(self.source)
        log.info("ssh.authenticated", user=self.state.login.user, source=self.source,
                 first_factor=self.state.first_factor)  # fmt: skip

    def proven(self) -> bool:
        """True when both factors were proven for the connection's one login name."""
        state = self.state
        name = self.conn.get_extra_info("username") if self.conn is not None else None
        return (
            state.authenticated
            and state.first_factor is not None
            and state.name is not None
            and state.first_factor_name == state.name
            and (name is None or name == state.name)
        )

    # -- after login --------------------------------------------------------------------

    async def upstream_for(self, target: Target) -> asyncssh.SSHClientConnection:
        """One upstream connection per target per client connection, shared by its channels."""
        async with self._upstream_lock:
            if self._lost:
                raise upstream.UpstreamError("the connection closed before reaching the target")
            found = self._upstreams.get(target.name)
            if found is None or found.is_closed():
                found = await upstream.connect(self.core, target, self.state.login.user)
                if self._lost:
                    # The client left while the target was being reached: connection_lost has
                    # already closed the upstreams it knew of, so this one must close here.
                    found.close()
                    raise upstream.UpstreamError("the connection closed while reaching the target")
                self._upstreams[target.name] = found
            return found

    def session_requested(self) -> Any:
        if not self.proven():
            return False
        return self.session_factory(self)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:  # fmt: skip
        self._refuse_forwarding("tcp", f"{dest_host}:{dest_port}")
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self._refuse_forwarding("remote-tcp", f"{listen_host}:{listen_port}")
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        self._refuse_forwarding("unix", dest_path)
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        self._refuse_forwarding("remote-unix", listen_path)
        return False

    async def _refuse_agent(self) -> bool:
        self._refuse_forwarding("agent", "ssh-agent")
        return False

    async def _refuse_x11(self, *args: Any) -> None:
        self._refuse_forwarding("x11", "X11 display")

    def _refuse_forwarding(self, kind: str, where: str) -> None:
        detail = {"forwarding": kind, "to": where, "source": self.source}
        login = self.state.login
        event = Event("ssh.forwarding_refused", login.user or "?", login.target or "", "warning",
                      detail=detail)  # fmt: skip
        self._audit_soon(event)
