"""What the session watcher and the console hold of a live session: the session to end, the
console's change feed, the row it lists, where its recording goes (the uploads), and what an
admin who asked for its end is told."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
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
        with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for could
            async with asyncio.timeout(timeout):  # swallow a cancel landing as it is set
                await self._changed.wait()
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


def kill_asked(session: SessionRecord, live_nodes: Collection[str]) -> tuple[str, bool]:
    """What an admin who asked for a session's end is told, by `bastion sessions kill` and by
    the console alike: which node was asked, and plainly when that node's presence has run
    out (nobody ends the session now); with whether that node is alive on the store."""
    node, held = session.node, f"session {session.id} ({session.user} on {session.target})"
    asked = "the bastion" if node is None else f"node {node}"
    if node is None or node in live_nodes:
        return f"asked {asked} to end {held}; it ends within a few seconds", True
    return (f"asked {asked} to end {held}, but that node is not alive on the store: it ended"
            " its sessions when it lost the store, or it stopped; the session closes as"
            f" interrupted when node {node} starts again"), False  # fmt: skip
