"""The core the doors share: store, identity, access, clock, secrets, and a thread for the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import ParamSpec, Protocol, TypeVar

import structlog

from bastion.access.enforce import overstayed
from bastion.access.grants import Access
from bastion.access.tickets import Tickets
from bastion.access.unmask import Unmasking
from bastion.audit import Event, Store
from bastion.audit.writer import AuditWriter
from bastion.clock import Clock
from bastion.config import Config
from bastion.errors import StoreError
from bastion.identity import passwords
from bastion.identity.sealing import SecretBox
from bastion.identity.service import Identity

P = ParamSpec("P")
WATCH_EVERY = 0.5  # seconds between looks for kills and ended access
HASH_THREADS = 2  # argon2 verifies at once (64 MiB each), never on the store's thread
log = structlog.get_logger("bastion.core")


class Killable(Protocol):
    """A live session the bastion can end: an admin's kill, access that ended, idleness."""

    @property
    def target_name(self) -> str: ...

    @property
    def opened_at(self) -> datetime: ...

    @property
    def last_input(self) -> datetime:
        """When the engineer last sent anything (on the bastion's clock)."""

    async def terminate(self, state: str, message: str) -> None:
        """Show `message` to the user, end the session and close its row as `state`."""


T = TypeVar("T")


@dataclass
class Core:
    """Everything a door may ask; doors never open the store or read the config file."""

    config: Config
    store: Store
    box: SecretBox
    clock: Clock
    identity: Identity = field(init=False)
    access: Access = field(init=False)
    unmasking: Unmasking = field(init=False)
    tickets: Tickets = field(init=False)
    _executor: ThreadPoolExecutor = field(init=False)
    _hasher: ThreadPoolExecutor = field(init=False)
    writer: AuditWriter | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.identity = Identity(
            self.store, self.box, self.clock, self.config.totp, self.config.lockout
        )
        self.access = Access(self.store, self.config, self.clock)
        self.unmasking = Unmasking(self.store, self.config, self.clock)
        self.tickets = Tickets(self.store, self.config, self.clock, self.access, self.identity)
        # One thread owns store calls from the event loop: SQLite and argon2 never block it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-store")
        # argon2 has threads of its own, so a guessing client never stalls the store's.
        self._hasher = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="bastion-argon2")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking core call off the event loop, in the store's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def check_password(self, name: str, password: str, via: str) -> bool:
        """Identity.check_password with argon2 in its own threads: the store's thread only
        reads the hash and counts a failure. Unknown, locked and key-only users cost one
        verify against a stand-in hash, like everyone else."""
        stored = await self.run(self.identity.password_to_verify, name)
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._hasher, passwords.verify_or_pretend, stored,
                                        password)  # fmt: skip
        if not ok:
            await self.run(self.identity.password_failed, name, via)
        return ok

    async def audit(self, event: Event) -> None:
        """Write one audit event durably before returning (raises StoreError if it cannot)."""
        await self.run(self.store.append_events, [event])

    def audit_writer(self) -> AuditWriter:
        """The group-commit writer the doors share (started by the server)."""
        if self.writer is None:
            raise StoreError("the audit writer is not running")
        return self.writer

    async def start_writer(self) -> None:
        if self.writer is None:
            self.writer = AuditWriter(self.store)
            await self.writer.start()

    async def stop_writer(self) -> None:
        if self.writer is not None:
            await self.writer.stop()
            self.writer = None

    async def watch_sessions(self, lives: Sequence[Mapping[str, Killable]]) -> None:
        """End the live sessions (every door's) that an admin killed (`bastion sessions kill`)
        or whose access ended: grant expired or revoked, user disabled, idle, too long, outside
        allowed hours; and expire requests left pending too long. One watcher for all doors;
        it looks every WATCH_EVERY, and no fault in one look or one session stops it."""
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                await self._watch_once(lives)
            except Exception as exc:  # keep watching; the store may come back
                log.error("session_watch_failed", error=repr(exc))

    async def _watch_once(self, lives: Sequence[Mapping[str, Killable]]) -> None:
        live = {key: session for sessions in lives for key, session in sessions.items()}
        await self.run(self.store.expire_requests)
        kills = await self.run(self.store.pending_kills)
        ended = await self.run(self.access.endings) if live else []
        for session_id, who, reason in kills:
            session = live.get(session_id)
            if session is not None:
                message = f"session ended by {who}: {reason or 'no reason given'}"
                await self._end(session_id, session, "killed", message)
        for ending in ended:
            session = live.get(ending.session_id)
            if session is not None:
                await self._end(ending.session_id, session, ending.state, ending.message)
        await self._end_overstayed(live)

    async def _end(self, session_id: str, session: Killable, state: str, message: str) -> None:
        """End one session; a fault there is logged and never keeps the others from ending."""
        try:
            await session.terminate(state, message)
        except Exception as exc:
            log.error("session_end_failed", session=session_id, state=state, error=repr(exc))

    async def _end_overstayed(self, live: Mapping[str, Killable]) -> None:
        now = self.clock.now()
        for session_id, session in list(live.items()):
            try:
                limits = self.config.session_limits(session.target_name)
                found = overstayed(session.target_name, session.opened_at, session.last_input,
                                   now, limits)  # fmt: skip
            except Exception as exc:
                log.error("session_watch_failed", session=session_id, error=repr(exc))
                continue
            if found is not None:
                await self._end(session_id, session, *found)

    def shutdown(self) -> None:
        self._hasher.shutdown(wait=True)
        self._executor.shutdown(wait=True)
