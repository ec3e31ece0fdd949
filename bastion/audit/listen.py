"""Every node hears every decision: LISTEN on one dedicated connection, resync by seq on connect.

A PostgreSQL store tells listeners when an event that ends or refuses access is appended
(migration 0023: a statement trigger on audit_events, the kinds in DECISION_KINDS, one notice
"<schema> <seq>" on the channel bastion_decisions, sent when the transaction commits).
`DecisionFeed` holds ONE asyncpg connection of its own per node, LISTENs on it, and wakes
its consumer (the session watcher, bastion/core.py) on each notice, so a revocation, an
offboarding, a `sessions kill` or a lockout made on any node or on the CLI is acted on by
every node at once instead of at its next poll.

The connection must reach PostgreSQL itself, never a transaction-mode pooler (PgBouncer
and the like): a pooler hands the server connection to someone else after each statement,
so the LISTEN would be lost and no notice would ever arrive. Notices are not queued for a
connection that is down; so on every (re)connect, and every `heartbeat` seconds, the feed
reads the highest seq past the last one it looked at and wakes its consumer if an event of
a decision kind is among them: a decision made while it was away is never missed. The
heartbeat also finds a connection that died without saying so. The poll of the store by
the watcher stays the backstop whatever happens here.

On loss the feed reconnects with exponential backoff and reports its state (connected, or
disconnected since when, and why) for /healthz. Everything is asynchronous: it never blocks
the event loop, and `close()` ends it cleanly. Nothing it logs or reports holds a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from bastion.audit.location import PgLocation
from bastion.clock import Clock
from bastion.tasks import spawn

log = structlog.get_logger("bastion.audit.listen")

CHANNEL = "bastion_decisions"
# The kinds migration 0023's bastion_decision_kinds() lists (the test keeps them equal): each
# records a decision after which a live session may have to end, or a login be refused.
DECISION_KINDS = frozenset(
    {
        "grant.revoked",
        "group.member_removed",
        "session.kill_requested",
        "target.removed",
        "ticket.revoked",
        "unmask.revoked",
        "user.disabled",
        "user.locked",
        "web.signed_out",
        "web.signed_out_everywhere",
    }
)
HEAD = "SELECT coalesce(max(seq), 0) FROM audit_events"
SINCE = (
    "SELECT max(seq) AS head,"
    " max(seq) FILTER (WHERE kind = ANY (bastion_decision_kinds())) AS decided,"
    " (SELECT coalesce(max(seq), 0) FROM audit_events) AS top"
    " FROM audit_events WHERE seq > $1"
)
HEARTBEAT_S = 5.0  # a resync this often: finds a silent dead connection, and a missed notice
QUERY_TIMEOUT_S = 10.0  # a resync that takes longer counts as a lost connection
CONNECT_TIMEOUT_S = 10.0
BACKOFF_S = (0.1, 5.0)  # first and longest pause between reconnects (doubling)
HEARD_KEPT = 32  # the last notices' payloads, kept for diagnostics and tests

Connector = Callable[[], Awaitable[Any]]  # returns a new asyncpg.Connection


@dataclass(frozen=True)
class FeedState:
    """What /healthz says about the feed: connected or not, since when, and why not."""

    connected: bool
    since: datetime | None  # when it connected, or when it was first found down
    error: str | None  # why the last connection failed or ended (never a password)
    checked_to: int | None  # every event up to this seq has been looked at


def location_connector(location: PgLocation, node: str | None = None) -> Connector:
    """Connections straight to the store's server, as the store's own settings say (its
    schema first on the search path), named `bastion-listen/<node>` for pg_stat_activity."""
    url, password, _schema, _head = location.handoff()
    settings = location.server_settings(node or socket.gethostname())
    settings["application_name"] = settings["application_name"].replace(
        "bastion-store/", "bastion-listen/", 1
    )

    async def connect() -> Any:
        return await asyncpg.connect(
            url,
            password=password,
            server_settings=settings,
            timeout=CONNECT_TIMEOUT_S,
            statement_cache_size=0,  # two statements, run a few times a minute
        )

    return connect


def _why(exc: BaseException) -> str:
    """One line about a failure: its type and message (asyncpg's never hold the password)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class DecisionFeed:
    """One node's ear on the store: wakes `wait()` when any node (or the CLI) decided."""

    def __init__(
        self,
        connect: Connector,
        clock: Clock,
        *,
        schema: str = "public",
        heartbeat: float = HEARTBEAT_S,
        backoff: tuple[float, float] = BACKOFF_S,
        query_timeout: float = QUERY_TIMEOUT_S,
    ) -> None:
        self._connect = connect
        self.clock = clock
        self.schema = schema
        self.heartbeat = heartbeat
        self.backoff = backoff
        self.query_timeout = query_timeout
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._state = FeedState(False, clock.now(), "not connected yet", None)
        self.heard: deque[str] = deque(maxlen=HEARD_KEPT)  # payloads, as they arrived
        self.wakes = 0  # times the consumer was woken (by a notice or by a resync)
        self.resync_wakes = 0  # of which by a resync: a decision found by seq
        self.resyncs = 0  # looks by seq (each connect, each heartbeat)
        self.connects = 0  # connections made (the first, and each reconnect)
        self.attempts = 0  # connections tried

    @classmethod
    def on(cls, location: PgLocation, clock: Clock, node: str | None = None,
           **options: Any) -> DecisionFeed:  # fmt: skip
        """A feed on the store at `location` (its own connection; see the module's doc)."""
        return cls(location_connector(location, node), clock, schema=location.schema, **options)

    # -- the consumer's side ---------------------------------------------------------------

    async def wait(self, timeout: float) -> bool:
        """Until a decision is heard (True) or `timeout` seconds pass (False)."""
        if self._woken.is_set():
            self._woken.clear()
            return True
        try:  # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancel that lands
            async with asyncio.timeout(timeout):  # as the event is set (the stop then hangs)
                await self._woken.wait()
        except TimeoutError:
            return False
        self._woken.clear()
        return True

    def state(self) -> FeedState:
        return self._state

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection, while there is one."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Connect and listen in the background, until close()."""
        if self._task is None:
            self._task = spawn(self._run(), name="decision-feed")

    async def close(self) -> None:
        """Stop listening and close the connection; the consumer is woken once more."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._state = FeedState(False, self.clock.now(), "closed", self._state.checked_to)
        self._woken.set()

    # -- the connection ----------------------------------------------------------------------

    async def _run(self) -> None:
        pause = self.backoff[0]
        while True:
            self.attempts += 1
            try:
                conn = await self._connect()
            except Exception as exc:  # whatever it was, try again later (the poll goes on)
                self._down(exc)
            else:
                self._conn = conn
                try:
                    await self._serve(conn)
                except Exception as exc:  # lost, timed out, or refused: reconnect
                    if self._state.connected:  # it was up: reconnect soon, then back off again
                        pause = self.backoff[0]
                    self._down(exc)
                finally:
                    self._conn = None
                    await self._drop(conn)
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.backoff[1])

    async def _serve(self, conn: Any) -> None:
        """LISTEN, resync, then heartbeat until the connection is lost (raises)."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, self._heard)
        self.connects += 1
        await self._resync(conn)
        self._state = FeedState(True, self.clock.now(), None, self._state.checked_to)
        log.info("decision_feed.listening", channel=CHANNEL, checked_to=self._state.checked_to)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat):  # a cancel is never swallowed
                    await lost.wait()
            if lost.is_set() or conn.is_closed():
                raise ConnectionError("the listening connection was closed")
            await self._resync(conn)

    async def _resync(self, conn: Any) -> None:
        """Look at every event past the last seq looked at; wake if a decision is among them.
        The first time, only learn where the chain's head is (the watcher looks at start)."""
        self.resyncs += 1
        checked = self._state.checked_to
        if checked is None:
            head = await conn.fetchval(HEAD, timeout=self.query_timeout)
            self._checked(int(head))
            return
        row = await conn.fetchrow(SINCE, checked, timeout=self.query_timeout)
        if row["head"] is not None:
            self._checked(int(row["head"]))
        went_back = int(row["top"]) < checked  # a restored store: its chain is shorter now
        if went_back:
            self._checked(int(row["top"]))
        if row["decided"] is not None or went_back:
            self.resync_wakes += 1
            self._wake()

    def _checked(self, seq: int) -> None:
        s = self._state
        self._state = FeedState(s.connected, s.since, s.error, seq)

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        """A notice: wake the consumer if it is about this store (the channel is shared by
        every schema of the database). Anyone who can connect to the database can NOTIFY,
        so a notice only ever makes the watcher look sooner; it is trusted for nothing else."""
        self.heard.append(payload)
        schema, _, seq = payload.partition(" ")
        if schema == self.schema and seq.isdigit():
            self._wake()

    def _wake(self) -> None:
        self.wakes += 1
        self._woken.set()

    def _down(self, exc: BaseException) -> None:
        """Count the connection as lost; say so once per outage (retries say nothing)."""
        was = self._state
        since = self.clock.now() if was.connected or was.since is None else was.since
        self._state = FeedState(False, since, _why(exc), was.checked_to)
        if was.connected or self.attempts == 1:
            log.warning("decision_feed.lost", error=self._state.error)
        else:
            log.debug("decision_feed.connect_failed", error=self._state.error)

    async def _drop(self, conn: Any) -> None:
        """Close a connection politely, or cut it when the server does not answer."""
        if conn.is_closed():
            return
        try:
            await asyncio.wait_for(conn.close(), self.query_timeout)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn.terminate()
        except asyncio.CancelledError:  # closed while closing: cut it, and stop
            conn.terminate()
            raise
