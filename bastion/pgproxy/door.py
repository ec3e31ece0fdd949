"""The PostgreSQL front door: accept, TLS, log in, relay; cancel requests and admin kills."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import ssl
from typing import Any

import structlog

from bastion import pgwire
from bastion.access.preauth import PreauthLimiter, limiter_for
from bastion.access.seats import Seats
from bastion.audit import Event, Leftovers
from bastion.config import Listener, Paths
from bastion.core import Core
from bastion.errors import BastionError
from bastion.pgproxy.cancels import KEY_BYTES, CancelRoutes, pinned_certificate
from bastion.pgproxy.client import CANNOT_CONNECT_NOW, Client, ClientRefused, check_startup
from bastion.pgproxy.masked import Maskings
from bastion.pgproxy.readnames import ReadNames
from bastion.pgproxy.session import Login, PgSession, authenticate, refuse_if_stopping
from bastion.pgproxy.upstream import UpstreamError
from bastion.proxied import ProxiedListener, Trusted, open_streams
from bastion.reload import STOPPING, tls_context
from bastion.summaries import Summaries

log = structlog.get_logger("bastion.postgres")

PLAIN_REFUSAL_WAIT = 5.0  # seconds a refused address has to send its start-up packet
STOP_GRACE = 10.0  # seconds for ended sessions to record their end when the bastion stops
PRELOGIN_MAX_MESSAGE = 8192  # bytes: a password, code or ticket fits many times over
PRELOGIN_READ = 16 * 1024  # bytes read ahead of the login (the relay reads on its own)


class PgDoor:
    """Listens for psql and drivers; each connection is a PgSession."""

    name = "postgres"

    def __init__(self, listener: Listener, core: Core) -> None:
        self.listener = listener
        self.core = core
        self.port = listener.port
        self.tls = self._tls_context()
        self.live: dict[str, PgSession] = {}
        self.by_key: dict[int, PgSession] = {}
        self._server: asyncio.Server | None = None
        self._proxied: ProxiedListener | None = None  # behind load balancers (proxy_from)
        self._handlers: set[asyncio.Task[Any]] = set()
        self._in_login: set[asyncio.Task[Any]] = set()  # not logged in yet (or a cancel's)
        self.limiter = limiter_for(core.config.postgres)
        policy = core.config.postgres
        self.seats = Seats(policy.max_sessions, policy.max_sessions_per_user)
        # Cancel requests and refused connections: counted, one audit summary a minute.
        self.summaries = Summaries(core, "postgres")
        self.maskings = Maskings()  # each target's catalog snapshot and plan cache
        self.read_names = ReadNames()  # each target's names, for read grants' guard
        self.routes = CancelRoutes(core)  # pids unique across nodes; cancels sent to owners
        self._stopped = False  # stop() has ended the live sessions: one opening now ends too

    def _tls_context(self) -> ssl.SSLContext | None:
        context = tls_context(self.core.config.paths)
        if context is None:
            log.warning("postgres.no_tls", detail="no certificate: only loopback clients")
        return context

    def reload_tls(self, context: ssl.SSLContext | None, tls: Paths) -> str | None:
        """New handshakes use `context` (a reload read the certificate again, from `tls`);
        connections already made keep theirs. Going to or from no TLS needs a restart."""
        if (context is None) != (self.tls is None):
            return "paths.tls_cert"
        self.tls = context
        self.routes.pin = pinned_certificate(tls.tls_cert)  # what peers show from now on
        return None

    async def pause(self) -> None:
        """A stop's drain: live sessions go on, and the listener stays for cancel requests
        only (psql's Ctrl-C, a peer's forwarded cancel); any other connection is refused with
        57P03 before its login (_login), and stop() closes the listener."""

    def tell(self, message: str) -> None:
        """A NoticeResponse to every live session's client (a stop's warning)."""
        for session in list(self.live.values()):
            session.client.send(pgwire.notice_response("WARNING", "01000", message))

    async def stop(self) -> None:
        """End every session with a message and let each close its row before returning
        (one still opening, its row written before the drain began, ends as it goes live)."""
        self._stopped = True
        if self._server is not None:
            self._server.close()
        if self._proxied is not None:
            await self._proxied.close()
        for task in list(self._in_login):  # the drain is over: its cancel window and every
            task.cancel()  # login still in progress (one silent since before it too)
        for session in list(self.live.values()):
            await session.terminate("interrupted", STOPPING)
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=STOP_GRACE)
        if self._server is not None:
            await self._server.wait_closed()
        await self.summaries.stop()
        await self.routes.stop()

    async def start(self) -> None:
        trusted = Trusted(self.core.config.listeners.proxy_from)
        if trusted:
            where = self.listener.address, self.listener.port
            self._proxied = ProxiedListener(self.name, *where, trusted, self._accepted)
            self.port = await self._proxied.start()
        else:
            self._server = await asyncio.start_server(
                self._handle, self.listener.address, self.listener.port, limit=PRELOGIN_READ
            )
            sockets = list(self._server.sockets or [])
            if sockets:
                self.port = sockets[0].getsockname()[1]
        await self.routes.start(self.port)
        self.summaries.start()

    async def _accepted(self, sock: socket.socket, source: str) -> None:
        """A connection the balancer-aware listener hands over, with its client's address; one
        from a balancer is a balancer's whatever its header named (a LOCAL or UNKNOWN one
        leaves the balancer's own address, which may be loopback: never this machine's)."""
        listener = self._proxied
        balanced = listener is not None and str(sock.getpeername()[0]) in listener.trusted
        await self._handle(*await open_streams(sock, PRELOGIN_READ), source=source,
                           balanced=balanced)  # fmt: skip

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      source: str | None = None, balanced: bool = False) -> None:  # fmt: skip
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
            self._in_login.add(task)  # until its login is done: a stop ends it
            task.add_done_callback(self._in_login.discard)
        peer = writer.get_extra_info("peername") or ("?", 0)
        frames = pgwire.FrameReader(PRELOGIN_MAX_MESSAGE)
        address = source or str(peer[0])
        proxied = balanced or address != str(peer[0])
        client = Client(reader, writer, frames, address, proxied=proxied)
        try:
            found = await self._admitted(client)
            self._in_login.discard(task)  # logged in (or refused): a stop lets it close its row
            if found is not None:
                await self._serve(client, *found)
        except ClientRefused as exc:
            client.fatal(exc.sqlstate, exc.message)
        except pgwire.ProtocolError as exc:
            client.fatal("08P01", f"protocol error: {exc.message}")
        except UpstreamError as exc:
            client.fatal("08006", exc.message)
        except BastionError as exc:
            client.fatal("58000", f"refused by the bastion: {exc.message}")
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.CancelledError):
                await writer.drain()  # the last error reaches the client; shutdown may cancel
            client.close()

    def _seat(self, client: Client) -> PreauthLimiter:
        """The limiter as this connection sees it: it may end the connection while in login."""

        handler = asyncio.current_task()

        def evict(why: str) -> None:
            log.warning("postgres.preauth_ended", source=client.address, why=why)
            client.fatal("53300", why)
            client.close()
            if handler is not None and handler is not asyncio.current_task():
                handler.cancel()  # no password check, code or session for a login ended

        return self.limiter.for_connection(evict)

    async def _admitted(self, client: Client) -> tuple[Login, dict[str, str]] | None:
        """TLS, start-up and login within the grace time, counted against the address."""
        source, now = client.address, self.core.clock.now()
        seat = self._seat(client)
        refusal = seat.admit(source, now)
        if refusal is not None:
            self.core.metrics.preauth_refused("postgres")
            await self._refuse(client, refusal)
        found = None
        try:
            grace = self.core.config.postgres.login_grace.total_seconds()
            found = await asyncio.wait_for(self._login(client), grace)
            return found
        except ClientRefused as exc:
            if exc.sqlstate == "28P01" and seat.failed(source, self.core.clock.now()):
                await self.core.audit(Event("auth.source_blocked", f"postgres:{source}", "",
                                            "high", detail={"source": source}))  # fmt: skip
            raise
        finally:
            if found is not None:
                seat.authenticated(source)
                client.frames.allow(self.core.config.postgres.max_message)
            else:
                seat.closed_unauthenticated(source)

    async def _refuse(self, client: Client, refusal: str) -> None:
        """Turn a connection away; counted, and politely (in plain text, once its start-up
        packet is here) only while its address has not used up its minute's budget."""
        source = client.address
        polite = self.summaries.note("auth.preauth_refused", source, refusal)
        if not polite:
            client.close()
            raise ConnectionResetError("refused without an answer")
        # libpq shows an error sent after its start-up packet, not one in reply to SSLRequest.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.start(None), PLAIN_REFUSAL_WAIT)
        raise ClientRefused("53300", refusal)

    async def _login(self, client: Client) -> tuple[Login, dict[str, str]] | None:
        first = await client.start(self.tls)
        if first is None:
            return None
        if isinstance(first, pgwire.CancelRequest):
            await self._cancel(client, first)
            return None
        refuse_if_stopping(self.core)  # draining: cancels only
        passed = check_startup(client, first)
        return await authenticate(self.core, client, first), passed

    async def _serve(self, client: Client, login: Login, passed: dict[str, str]) -> None:
        """A proven login gets a seat (within the door's and the person's caps), then its
        session; the refusal is audited and told in one line."""
        refusal = self.seats.take(login.user)
        if refusal is not None:
            event = login.admission.denied_event(login.target.name, refusal, severity="warning")
            await self.core.audit(event)
            raise ClientRefused("53300", refusal)
        try:
            await self._seated(client, login, passed)
        finally:
            self.seats.give_back(login.user)

    async def _seated(self, client: Client, login: Login, passed: dict[str, str]) -> None:
        session = PgSession(self.core, client, self.maskings, self.read_names)
        pid = await self.routes.claim(self.by_key, session.id)
        self.by_key[pid] = session
        session.cancel_key = (pid, secrets.token_bytes(KEY_BYTES))
        opened = False
        try:
            await session.open(login, passed)
            opened = True
        except UpstreamError as exc:
            await self.core.audit(Event("session.upstream_failed", login.user, login.target.name,
                                        "warning", session.id, {"detail": exc.detail}))  # fmt: skip
            await self._close(session, "upstream_failed", exc.message)
            raise
        except BaseException as exc:
            if session.id in self.core.started_with:  # its row is open: it closes, saying so
                why = f"error: the session did not start ({type(exc).__name__})"
                await self._close(session, "error", why)
            raise
        finally:
            if not opened:  # a failed login keeps no cancel key
                await self._forget_key(session)
        await self._refuse_if_draining(session, login)
        self.live[session.id] = session  # from here a drain's warning reaches it
        if self._stopped:  # opened while the stop ended the others: it relays nothing
            await session.terminate("interrupted", STOPPING)
        else:
            await session.greet()
        try:
            state, reason = await session.run()
        except BaseException:
            self.live.pop(session.id, None)
            await self._forget_key(session)
            raise
        finally:
            if session.up is not None:
                session.up.close()
        self.live.pop(session.id, None)
        await self._close(session, state, reason, self._let_go(session))

    async def _refuse_if_draining(self, session: PgSession, login: Login) -> None:
        """Refuse a session opened upstream after a drain began (its decision came before)
        as every login is refused during a drain; its row closes as refused."""
        refusal = self.core.going_live(login.admission, login.target.name)
        if refusal is None:
            return
        if session.up is not None:
            session.up.close()
        await self._close(session, "refused", refusal, self._let_go(session))
        raise ClientRefused(CANNOT_CONNECT_NOW, refusal)

    async def _close(self, session: PgSession, state: str, reason: str,
                     last: Leftovers | None = None) -> None:  # fmt: skip
        with contextlib.suppress(BastionError):
            await self.core.close_session(session.id, state, reason, last=last)

    def _let_go(self, session: PgSession) -> Leftovers | None:
        """The session's cancel key, forgotten here, to release with its close (one write)."""
        pid = session.cancel_key[0]
        if self.by_key.pop(pid, None) is None:
            return None
        return Leftovers(cancel=(pid, self.routes.node))

    async def _forget_key(self, session: PgSession) -> None:
        """The session's cancel key names nothing any more, here or in the store."""
        pid = session.cancel_key[0]
        if self.by_key.pop(pid, None) is not None:
            await self.routes.release(pid, session.id)

    async def _cancel(self, client: Client, request: pgwire.CancelRequest) -> None:
        """Checked here, or forwarded to the node holding it (cancels.py)."""
        await self.routes.handle(client.address, request, self.by_key, self.summaries)
