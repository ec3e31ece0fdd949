"""What the session watcher and the console hold of a live session: the session to end, the
console's change feed, the row it lists, and where its recording goes (the uploads)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from bastion.audit.records import SessionRecord


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


class SessionFeed:
    """Word that the live sessions changed, for one subscriber (a console's stream); closed
    when the server stops watching sessions."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self.closed = False

    def notify(self) -> None:
        self._changed.set()

    def close(self) -> None:
        self.closed = True
        self._changed.set()

    async def wait(self, timeout: float) -> None:
        """Until the next change (or close), or `timeout` seconds at most."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()


@dataclass(frozen=True)
class LiveSession:
    """An open session as the console shows it: the store's row, and how long it is idle
    (None when no door of this process serves it)."""

    record: SessionRecord
    idle_seconds: int | None
    kill_requested: bool


class Uploads(Protocol):
    """Where recordings go once in the spool (bastion.recording.upload.Uploader)."""

    def track(self, path: Path) -> None: ...

    def finish(self, path: Path) -> None: ...

    def health(self) -> dict[str, object]: ...
