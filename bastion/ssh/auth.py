"""One SSH connection's login: pre-auth limits, a first factor, then TOTP (keyboard-interactive)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncssh
import structlog
from asyncssh.public_key import decode_ssh_public_key

from bastion.access.preauth import PreauthLimiter
from bastion.audit import Event, TotpResult
from bastion.audit.records import Target
from bastion.core import Core
from bastion.identity.service import refusal_text
from bastion.ssh import upstream
from bastion.ssh.login import Login, parse_login

log = structlog.get_logger("bastion.ssh")

PROMPT = "Verification code: "
_AUDITS: set[asyncio.Task[None]] = set()
MAX_CODES_PER_CONNECTION = 3


@dataclass
class LoginState:
    """What this connection has proven so far."""

    login: Login = field(default_factory=lambda: Login("", None))
    known: bool = False  # the user exists and is enabled
    key_fingerprints: frozenset[str] = frozenset()
    has_password: bool = False
    first_factor: str | None = None
    key_fingerprint: str | None = None
    authenticated: bool = False
    codes_tried: int = 0
    failures: list[str] = field(default_factory=list)


class BastionSSHServer(asyncssh.SSHServer):
    """asyncssh's per-connection owner: decides each login step, then hands out channels."""

    def __init__(
        self,
        core: Core,
        limiter: PreauthLimiter,
        session_factory: Callable[[Any], Any],
        live: dict[str, Any] | None = None,
        connections: set[BastionSSHServer] | None = None,
    ) -> None:
        self.core = core
        self.live: dict[str, Any] = live if live is not None else {}
        self.connections = connections if connections is not None else set()
        self.limiter = limiter
        self.session_factory = session_factory
        self.state = LoginState()
        self.conn: asyncssh.SSHServerConnection | None = None
        self.source = "?"
        self.admitted = False
        self._upstreams: dict[str, asyncssh.SSHClientConnection] = {}
        self._upstream_lock = asyncio.Lock()
        self._lost = False  # the client's connection is gone: no new upstream connections

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.connections.add(self)
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.source = str(peer[0])
        # asyncssh asks the connection itself about agent and X11 forwarding; answer here,
        # so each refusal is audited (recording cannot see inside a tunnel).
        conn.create_agent_listener = self._refuse_agent  # type: ignore[method-assign]
        conn.attach_x11_listener = self._refuse_x11  # type: ignore[method-assign,assignment]
        refusal = self.limiter.admit(self.source, self.core.clock.now())
        if refusal is None:
            self.admitted = True
            return
        log.warning("ssh.preauth_refused", source=self.source, why=refusal)
        self._audit_soon(Event("auth.preauth_refused", f"ssh:{self.source}", "", "warning",
                               detail={"source": self.source, "why": refusal}))  # fmt: skip
        conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.connections.discard(self)
        self.close_upstreams()
        if self.admitted and not self.state.authenticated:
            self.limiter.closed_unauthenticated(self.source)
            why = str(exc) if exc else "client left"
            detail = {"source": self.source, "why": why, "failures": self.state.failures,
                      "first_factor": self.state.first_factor}  # fmt: skip
            self._audit_soon(Event("auth.failed", f"ssh:{self.source}",
                                   self.state.login.user, "notice", detail=detail))  # fmt: skip

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

    def _audit_soon(self, event: Event) -> None:
        """Audit from a synchronous callback; the write is still durable, just not awaited."""
        task = asyncio.get_running_loop().create_task(self._audit(event))
        _AUDITS.add(task)  # held until done, so the loop cannot drop it half-written
        task.add_done_callback(_AUDITS.discard)

    async def _audit(self, event: Event) -> None:
        try:
            await self.core.audit(event)
        except Exception as exc:  # the store failed: nothing more can be recorded
            log.error("audit.write_failed", error=str(exc), kind=event.kind)

    # -- first factor -------------------------------------------------------------------

    async def begin_auth(self, username: str) -> bool:
        self.state.login = parse_login(username)
        user = self.state.login.user
        found = await self.core.run(self.core.store.find_user, user) if user else None
        if found is not None and found.disabled_at is None:
            keys = await self.core.run(self.core.store.ssh_keys, user)
            self.state.known = True
            self.state.key_fingerprints = frozenset(k.fingerprint for k in keys)
            self.state.has_password = found.has_password
        return True

    def public_key_auth_supported(self) -> bool:
        return self.state.first_factor is None

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        fingerprint = key.get_fingerprint("sha256")
        if fingerprint in self.state.key_fingerprints:
            self.state.key_fingerprint = fingerprint
            return True
        return False

    def password_auth_supported(self) -> bool:
        state = self.state
        return state.first_factor is None and state.has_password and not state.key_fingerprints

    async def validate_password(self, username: str, password: str) -> bool:
        if not self.password_auth_supported():
            return False
        ok = await self.core.run(self.core.identity.check_password, self.state.login.user, password)
        if not ok:
            self._failed("password")
        return ok

    def first_factor_proven(self, method: str, key_data: bytes | None) -> None:
        """Called by the two-factor handlers once a signature or password checked out."""
        if key_data is not None:
            key = decode_ssh_public_key(key_data)

            self.state.key_fingerprint = key.get_fingerprint("sha256")
        self.state.first_factor = method

    # -- second factor ------------------------------------------------------------------

    def kbdint_auth_supported(self) -> bool:
        return self.state.first_factor is not None and not self.state.authenticated

    def get_kbdint_challenge(self, username: str, lang: str, submethods: str) -> Any:
        if self.state.first_factor is None:
            return False
        return ("", "", "", [(PROMPT, False)])

    async def validate_kbdint_response(self, username: str, responses: Sequence[str]) -> Any:
        if self.state.first_factor is None or len(responses) != 1:
            return False
        self.state.codes_tried += 1
        via = f"ssh:{self.source}"
        outcome = await self.core.run(
            self.core.identity.check_totp, self.state.login.user, responses[0], via
        )
        if outcome.result is TotpResult.ACCEPTED:
            self.state.authenticated = True
            return True
        self._failed(f"totp {outcome.result.value}")
        if outcome.result in (TotpResult.WRONG, TotpResult.REPLAYED) and (
            self.state.codes_tried < MAX_CODES_PER_CONNECTION
        ):
            return ("", refusal_text(outcome), "", [(PROMPT, False)])
        if self.conn is not None:
            self.conn.send_auth_banner(f"bastion: {refusal_text(outcome)}\r\n")
        return False

    def _failed(self, what: str) -> None:
        self.state.failures.append(what)
        if self.limiter.failed(self.source, self.core.clock.now()):
            self._audit_soon(Event("auth.source_blocked", f"ssh:{self.source}", "", "high",
                                   detail={"source": self.source}))  # fmt: skip

    def auth_completed(self) -> None:
        self.limiter.authenticated(self.source)
        log.info("ssh.authenticated", user=self.state.login.user, source=self.source,
                 first_factor=self.state.first_factor)  # fmt: skip

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
