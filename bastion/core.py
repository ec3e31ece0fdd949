"""The core the doors share: store, identity, access, clock, secrets, and a thread for the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from bastion.access.grants import Access
from bastion.audit import Event, Store
from bastion.audit.writer import AuditWriter
from bastion.clock import Clock
from bastion.config import Config
from bastion.errors import StoreError
from bastion.identity.sealing import SecretBox
from bastion.identity.service import Identity

P = ParamSpec("P")
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
    _executor: ThreadPoolExecutor = field(init=False)
    writer: AuditWriter | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.identity = Identity(
            self.store, self.box, self.clock, self.config.totp, self.config.lockout
        )
        self.access = Access(self.store, self.config, self.clock)
        # One thread owns store calls from the event loop: SQLite and argon2 never block it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-store")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking core call off the event loop, in the store's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

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

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
