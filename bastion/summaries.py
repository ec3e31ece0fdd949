"""Writes a door's tally of repeated pre-login events to the audit trail, a minute at a time."""

from __future__ import annotations

import asyncio

import structlog

from bastion.access.tally import Count, Tally
from bastion.audit import Event
from bastion.core import Core
from bastion.errors import BastionError
from bastion.tasks import spawn

log = structlog.get_logger("bastion.audit")

FLUSH_EVERY = 1.0  # seconds between looks for windows that have closed


class Summaries:
    """One door's tally and the task that writes its closed windows as summary events."""

    def __init__(self, core: Core, door: str, tally: Tally | None = None) -> None:
        self.core = core
        self.door = door
        self.tally = tally or Tally()
        self._task: asyncio.Task[None] | None = None

    def note(self, kind: str, source: str, why: str = "") -> bool:
        """Count one event (see Tally.note); False once the address is over its budget."""
        return self.tally.note(kind, source, self.core.clock.now(), why)

    def start(self) -> None:
        self._task = spawn(self._run(), name=f"{self.door}-summaries")

    async def stop(self) -> None:
        """Write everything counted so far (the door is stopping)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._write(self.tally.drain())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self._write(self.tally.due(self.core.clock.now()))

    async def _write(self, counts: list[Count]) -> None:
        if not counts:
            return
        events = [Event(c.kind, f"{self.door}:{c.source}", "", "warning", detail=c.summary())
                  for c in counts]  # fmt: skip
        try:
            await self.core.audit_all(events)
        except BastionError as exc:  # the store is failing: the doors find out on their own
            log.error("audit.write_failed", error=exc.message, kind="summaries")
