"""A relay's reads from one side, paused while any reason holds (a full peer, a slow disk)."""

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
