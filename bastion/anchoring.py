"""What /healthz says about the anchor sinks: when each last took the chain's signed head,
since when it fails, and whether rounds still run at all (fail closed: a round that hangs, or
a loop that stopped, is failing, never the last "ok" repeated).

The server tells it when each round begins and how it ended; the health check reads it on
the event loop. Time is the injectable clock's: the wall clock names moments, the monotonic
reading says whether a round is overdue. No sink's address is shown (a webhook's URL may
carry a token, and the health check answers anyone who reaches the port): sinks are listed
by kind, in the order of `[audit] anchors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.audit.anchors import parse_spec
from bastion.clock import Clock, iso

STALL = timedelta(seconds=30)  # a round may take this long past its due time (a webhook's timeout)


@dataclass
class SinkHealth:
    kind: str
    written_at: datetime | None = None  # the last head this sink took
    failing_since: datetime | None = None  # the first round of this run it failed


class AnchorHealth:
    """The anchor sinks' state, round by round."""

    def __init__(self, specs: Sequence[str], every: timedelta, clock: Clock) -> None:
        self.sinks = [SinkHealth(parse_spec(spec)[0]) for spec in specs]
        self._every, self._clock = every, clock
        self._due = clock.monotonic() + (every + STALL).total_seconds()  # the first round's end
        self._due_wall = clock.now() + every + STALL
        self._unread_since: datetime | None = None  # rounds fail before any sink: no head

    def began(self) -> None:
        """A round begins: it must end within the stall allowance."""
        self._due = self._clock.monotonic() + STALL.total_seconds()
        self._due_wall = self._clock.now() + STALL

    def ended(self, delivered: Sequence[bool] | None) -> None:
        """A round ended: which sinks took the head, or None when the head could not be read
        (no sink was tried). The next round is due within anchor_every."""
        now = self._clock.now()
        if delivered is None:
            self._unread_since = self._unread_since or now
        else:
            self._unread_since = None
            for sink, ok in zip(self.sinks, delivered, strict=True):
                if ok:
                    sink.written_at, sink.failing_since = now, None
                else:
                    sink.failing_since = sink.failing_since or now
        self._due = self._clock.monotonic() + (self._every + STALL).total_seconds()
        self._due_wall = now + self._every + STALL

    def health(self) -> dict[str, object]:
        """{"status": "ok" | "pending" | "failing", "last_written", "failing_since", "sinks"}:
        "failing" when a sink failed the last round, the chain's head could not be read, or
        no round ended when due; "pending" before the first round ends."""
        overdue = self._clock.monotonic() > self._due
        since = [s.failing_since for s in self.sinks if s.failing_since is not None]
        if self._unread_since is not None:
            since.append(self._unread_since)
        if overdue:
            since.append(self._due_wall)
        written = [s.written_at for s in self.sinks]
        pending = not since and any(when is None for when in written)
        status = "failing" if since else "pending" if pending else "ok"
        last = None if any(when is None for when in written) else min(w for w in written if w)
        return {"status": status, "last_written": _when(last),
                "failing_since": _when(min(since) if since else None),
                "overdue": overdue, "sinks": [_sink(s) for s in self.sinks]}  # fmt: skip


def _sink(sink: SinkHealth) -> dict[str, object]:
    status = "failing" if sink.failing_since else "ok" if sink.written_at else "pending"
    return {"kind": sink.kind, "status": status, "last_written": _when(sink.written_at),
            "failing_since": _when(sink.failing_since)}  # fmt: skip


def _when(at: datetime | None) -> str | None:
    return None if at is None else iso(at)
