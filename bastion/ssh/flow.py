"""A relay's flow: reads paused while any reason holds; output read in one turn sent as one."""

from __future__ import annotations

from typing import Any


class Valve:
    """Pauses reading from one channel while at least one reason holds; resumes when none do.

    asyncssh's pause_reading() and resume_reading() do not nest: a resume for one reason
    (the engineer's client took its data) must not undo a pause for another (the recording's
    disk is behind). Each reason is held and released on its own here.
    """

    def __init__(self) -> None:
        self._channel: Any = None
        self._reasons: set[str] = set()

    @property
    def reasons(self) -> frozenset[str]:
        return frozenset(self._reasons)

    def attach(self, channel: Any) -> None:
        """The channel to pause; a reason already held pauses it at once."""
        self._channel = channel
        if self._reasons:
            channel.pause_reading()

    def hold(self, reason: str) -> None:
        if not self._reasons and self._channel is not None:
            self._channel.pause_reading()
        self._reasons.add(reason)

    def release(self, reason: str) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons and self._channel is not None:
            self._channel.resume_reading()


class Batch:
    """Output read in one turn of the loop, kept to be sent as one, one stream at a time."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._datatype: int | None = None

    def __bool__(self) -> bool:
        return bool(self._parts)

    def add(self, data: bytes, datatype: int | None) -> tuple[bytes, int | None] | None:
        """Keep data; when it is another stream's than what is kept, return what was kept
        (send it first: stdout and stderr keep their order)."""
        earlier = self.take() if self._parts and datatype != self._datatype else None
        self._parts.append(data)
        self._datatype = datatype
        return earlier

    def take(self) -> tuple[bytes, int | None] | None:
        """What is kept, joined, with its stream; None when nothing is."""
        if not self._parts:
            return None
        parts, self._parts = self._parts, []
        return (parts[0] if len(parts) == 1 else b"".join(parts)), self._datatype
