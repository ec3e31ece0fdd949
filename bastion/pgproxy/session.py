"""One database connection from start to end: login, access check, upstream, relay, close."""

from __future__ import annotations

import contextlib
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog

from bastion import pgwire, sqlparse
from bastion.access.admission import Admission, PasswordProof
from bastion.access.grants import Decision
from bastion.access.tickets import REUSABLE_PREFIX, TICKET_REFUSED
from bastion.audit import Event, QueryEnd
from bastion.audit.records import Target
from bastion.core import STOPPING_REFUSAL, Core
from bastion.errors import BastionError, Denied, StoreError
from bastion.identity.service import TICKET_PREFIX, refusal_text
from bastion.pgproxy import masked, upstream
from bastion.pgproxy.client import CANNOT_CONNECT_NOW, Client, ClientRefused, split_password
from bastion.pgproxy.guard import Guard
from bastion.pgproxy.pump import Pump
from bastion.pgproxy.readnames import ReadNames
from bastion.pgproxy.relay import Relay
from bastion.pgproxy.tracker import TooManyInFlight
from bastion.pgwire.state import TooMany

log = structlog.get_logger("bastion.postgres")

AUDIT_LOST = "the bastion could not write its audit trail, so it ended the session"


@dataclass
class Login:
    admission: Admission  # the proven login (bastion/access/admission.py)
    target: Target
    decision: Decision
    ticket_id: int | None = None  # the reusable ticket that opened it, if one did

    @property
    def user(self) -> str:
        return self.admission.user


def login_failed(user: str, target: str) -> ClientRefused:
    """One answer for a wrong password, an unknown user and an unknown target alike."""
    return ClientRefused("28P01", f"password authentication failed for user {user!r} on"
                         f" target {target!r} (send your password followed by your 6-digit"
                         " code; repeated failures lock the account for a while)")  # fmt: skip


def refuse_if_stopping(core: Core) -> None:
    """On a draining node a login is refused (57P03, as PostgreSQL's own shutdown answers)
    before anything of it is checked or spent; counted as decide()'s refusal."""
    if core.stopping:
        core.metrics.access_refused("postgres", STOPPING_REFUSAL, node="stopping")
        raise ClientRefused(CANNOT_CONNECT_NOW, STOPPING_REFUSAL)


async def authenticate(core: Core, client: Client, startup: pgwire.StartupMessage) -> Login:
    """Password + TOTP (or a ticket) inside TLS, then the access check; ClientRefused if not.

    The password is asked for before anything is looked up, and an unknown user, a user
    without a password and an unknown target each cost the same argon2 verify and get the
    same answer as a wrong password: nothing before login tells who or what exists."""
    user = startup.params.get("user", "")
    name = startup.params.get("database") or user
    client.send(pgwire.authentication_cleartext_password())
    await client.writer.drain()
    frame = await client.next_frame()
    if frame is None or frame.type != b"p":
        raise ClientRefused("28P01", "expected a password message")
    refuse_if_stopping(core)  # draining since its start-up: no ticket or code spent
    secret = bytes(frame.body).rstrip(b"\x00").decode("utf-8", "replace")
    admission = core.admission("postgres", client.address, user)
    ticket = None
    try:
        if secret.startswith((REUSABLE_PREFIX, TICKET_PREFIX)):
            try:
                ticket = await core.admit_ticket(admission, name, secret)
            except Denied as exc:
                raise ClientRefused("28P01", TICKET_REFUSED) from exc  # the reason is audited
        else:
            await _password_and_code(core, admission, name, secret)
    except ClientRefused:
        await core.login_failed(admission)
        raise
    target = await core.find_target(name)
    decision = await core.decide(admission, name, "postgres")
    if target is None or target.kind != "postgres":
        raise login_failed(user, name)  # audited as access.denied; the client learns nothing
    if not decision.allowed:
        stopping = decision.reason == STOPPING_REFUSAL  # draining: as PostgreSQL says it
        raise ClientRefused(CANNOT_CONNECT_NOW if stopping else "28000", decision.reason)
    if ticket is None:
        return Login(admission, target, decision)
    # A reusable ticket's session runs under the ticket's own grant, whatever else is live.
    row, grant = ticket
    reason = f"reusable ticket {row.id} under grant {grant.id} ({grant.mode})"
    return Login(admission, target, Decision(True, reason, grant), row.id)


async def _password_and_code(core: Core, admission: Admission, target: str, secret: str) -> None:
    password, code = split_password(secret)
    if not await core.prove(admission, PasswordProof(password)):
        raise login_failed(admission.user, target)
    outcome = await core.second_factor(admission, code)
    if not admission.authenticated:
        raise ClientRefused("28P01", refusal_text(outcome))


class PgSession:
    """Everything about one client connection; the door keeps it for cancels and kills."""

    def __init__(self, core: Core, client: Client, maskings: masked.Maskings | None = None,
                 read_names: ReadNames | None = None) -> None:  # fmt: skip
        self.core = core
        self.maskings = maskings or masked.Maskings()
        self.read_names = read_names or ReadNames()
        self.client = client
        self.id = str(uuid.uuid4())
        self.relay: Relay | None = None
        self.up: upstream.Upstream | None = None
        self.cancel_key = (0, b"")
        self.ending: tuple[str, str] | None = None
        self.target_name = ""
        self.opened_at = core.clock.now()

    @property
    def last_input(self) -> datetime:
        """When the client last sent anything (its relay keeps count)."""
        return self.relay.last_input if self.relay is not None else self.opened_at

    async def open(self, login: Login, passed: dict[str, str]) -> None:
        """Record the session and log in upstream (the door greets the client: greet())."""
        target, user = login.target, login.user
        grant = login.decision.grant
        read_only = grant is None or grant.mode == "read"
        config = self.core.config  # one config for the whole session, whatever a reload does
        masking = config.target_policy(target.name).masking.enabled
        if masking:
            masked.check_startup(passed)
        elif read_only:
            _check_read_startup(passed)
        grant_id = grant.id if grant else None
        await self.core.open_session(login.admission, self.id, target.name, grant_id,
                                     ticket_id=login.ticket_id, config=config)  # fmt: skip
        params = {**passed, "application_name": f"bastion:{user}:{self.id}"}
        if read_only:
            params["default_transaction_read_only"] = "on"
        grants = await self.core.unmask_grants(user, target.name) if masking else []
        if masking:
            params["search_path"] = ", ".join(masked.SEARCH_PATH)
            role, password = await masked.login_for(self.core, target, grants)
        else:
            role, password = target.login, (await self.core.target_secret(target.name)).decode()
        policy = config.target_policy(target.name)
        self.up = await upstream.connect(
            target.host, target.port, user=role, password=password,
            database=target.database or target.name, params=params,
            tls=upstream.tls_context(policy), auth=policy.upstream_auth,
        )  # fmt: skip
        guard: Guard | None = None
        if masking:
            guard = await self.maskings.guard(self.core, target, role, self.up, config)
            guard.set_grants(grants)
        names, names_missed = None, None
        if read_only or masking:  # both check for calls in disguise
            names = await self.read_names.get(target.name, role, self.up)
            names_missed = self.read_names.forgetter(target.name, role, names)
        self.relay = Relay(self.id, user, target.name, read_only, self.core.clock.now(), guard,
                           names, names_missed, keep_literals=config.audit.keep_literals,
                           max_message=config.postgres.max_message,
                           max_prepared=config.postgres.max_prepared,
                           upstream_read_only=_reported_read_only(self.up))  # fmt: skip
        self.target_name = target.name
        self.opened_at = self.relay.last_input

    async def greet(self) -> None:
        """Tell the client it is logged in, as the server would (once the door let it go live)."""
        assert self.up is not None
        greeting = [pgwire.authentication_ok(), *self.up.parameters,
                    pgwire.backend_key_data(*self.cancel_key), self.up.ready]  # fmt: skip
        self.client.send(b"".join(greeting))
        with contextlib.suppress(ConnectionError, ssl.SSLError):  # gone: the relay sees it
            await self.client.writer.drain()

    async def run(self) -> tuple[str, str]:
        """Relay until one side ends; returns (state, reason) for the session row."""
        assert self.relay is not None and self.up is not None
        pump = Pump(self.core, self.relay, self.client, self.up)
        try:
            ended = await pump.run()
        finally:
            pump.close()
        why, error = ended.why, ended.error
        if isinstance(error, pgwire.ProtocolError):
            side = "the client" if ended.side == "client" else "the database"
            why = f"error: {side} sent a malformed message: {error.message}"
            self._last_words("08P01", f"protocol error: {side} sent a malformed message"
                              f" ({error.message})")  # fmt: skip
        elif isinstance(error, StoreError):
            why = "error: the audit trail could not be written"
            self._last_words("58030", AUDIT_LOST)
        elif isinstance(error, TooManyInFlight | TooMany):
            why = f"error: {error}"
            self._last_words("54000", str(error))
        elif isinstance(error, BastionError | ConnectionError):
            why = f"error: {error}"
        elif error is not None:  # a bug: the session ends, saying so, and the door stays up
            log.error("postgres.relay_failed", session=self.id, error=repr(error))
            why = f"error: internal error in the bastion ({type(error).__name__})"
            self._last_words("XX000", "internal error in the bastion; the session was ended")
        return await self._wind_down(why, pump)

    async def _wind_down(self, why: str, pump: Pump) -> tuple[str, str]:
        assert self.relay is not None and self.up is not None
        if self.ending is not None:
            return self.ending
        if why == "upstream_lost":
            self._last_words("08006", f"the bastion lost its connection to {self.relay.target}")
            pump.post_ends(self._abandon("upstream lost"))
            return "upstream_lost", "the database closed the connection"
        if self.relay.tracker.busy:
            await self.cancel("client left mid-statement")
            pump.post_ends(self._abandon("client disconnected"))
        return "closed", why

    def _abandon(self, why: str) -> list[QueryEnd]:
        assert self.relay is not None
        return self.relay.abandon(why, self.core.clock.now(), time.monotonic_ns())

    def _last_words(self, sqlstate: str, message: str) -> None:
        """FATAL to the client, who hears it now, not after the bastion's own bookkeeping (a
        cancel, audit rows) is done."""
        self.client.fatal(sqlstate, message)
        self.client.finish()

    async def cancel(self, why: str) -> None:
        """Cancel what the backend is running (client's cancel key, disconnect, kill)."""
        if self.up is None:
            return
        await upstream.send_cancel(self.up.host, self.up.port, self.up.pid, self.up.key)
        relay = self.relay
        if relay is not None:
            try:
                await self.core.audit(Event("query.cancelled", relay.user, relay.target,
                                            "notice", self.id, {"why": why}))  # fmt: skip
            except StoreError as exc:  # the cancel went anyway: stopping work is always safe
                log.warning("postgres.cancel_not_recorded", session=self.id, error=str(exc))

    async def terminate(self, state: str, message: str) -> None:
        """End from the bastion's side (kill, expiry): FATAL 57P01 to the client."""
        if self.ending is not None:
            return
        self.ending = (state, message)
        self.client.fatal("57P01", message)  # first: the client hears why, not the cancel
        self.client.close()
        await self.cancel(message)
        if self.up is not None:
            self.up.close()


def _reported_read_only(up: upstream.Upstream) -> bool:
    """Whether the server said at login that the session is read-only (the role `target
    harden` made sets it; PostgreSQL 14 and later report it)."""
    for raw in up.parameters:
        status = pgwire.decode_backend(pgwire.Frame(raw[:1], raw))
        if isinstance(status, pgwire.ParameterStatus) and status.name == (
            "default_transaction_read_only"
        ):
            return status.value == "on"
    return False


def _check_read_startup(params: dict[str, str]) -> None:
    """A read grant's start-up search_path obeys the rule SET search_path does (pg_catalog
    first, or left out), so an unqualified function name stays the allowed built-in."""
    refusal = sqlparse.search_path_refusal([params.get("search_path", "")])
    if refusal is not None:
        raise ClientRefused("42501", f"refused by the bastion: {refusal}")
