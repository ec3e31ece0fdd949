"""Counting repeated pre-login events per address: one audit summary a minute, not a row each.

A hostile client can make the doors refuse something thousands of times a second (cancel
requests with made-up keys, connections from a blocked address). Writing one durable
audit row for each would let it spend the store's time and disk; the doors note each one
here instead, and write one summary per kind and address when its window closes (and
whatever is left when the door stops). The count also rate-limits: past `budget` in one
window, the door stops doing any work for that kind and address until the window ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bastion.access.preauth import source_key

MAX_KEYS = 10_000  # (kind, address) pairs counted at once; past that, the oldest close early


@dataclass
class Count:
    """How often one kind of event came from one address in one window."""

    kind: str
    source: str
    first: datetime
    last: datetime
    count: int = 0
    details: dict[str, int] = field(default_factory=dict)  # e.g. why -> how many

    def summary(self) -> dict[str, Any]:
        """The audit event's detail."""
        return {"source": self.source, "count": self.count, "first": self.first.isoformat(),
                "last": self.last.isoformat(), "why": dict(self.details)}  # fmt: skip


@dataclass
class Tally:
    """Counts per (kind, address) in windows of `window`; the door flushes closed windows."""

    window: timedelta = timedelta(minutes=1)
    budget: int = 100  # events of one kind from one address worth any work, per window
    _counts: dict[tuple[str, str], Count] = field(default_factory=dict)
    _closed: list[Count] = field(default_factory=list)  # pushed out early by MAX_KEYS

    def note(self, kind: str, source: str, now: datetime, why: str = "") -> bool:
        """Count one event; False once this address has used up its budget for the window
        (the door then drops the request without doing its work). An IPv6 address counts
        by its /64, as the limits do, so a client rotating through its share gains nothing."""
        source = source_key(source)
        key = (kind, source)
        found = self._counts.get(key)
        if found is not None and now - found.first >= self.window:
            self._closed.append(self._counts.pop(key))
            found = None
        if found is None:
            if len(self._counts) >= MAX_KEYS:
                self._closed.append(self._counts.pop(next(iter(self._counts))))
            found = self._counts[key] = Count(kind, source, now, now)
        found.count += 1
        found.last = now
        if why:
            found.details[why] = found.details.get(why, 0) + 1
        return found.count <= self.budget

    def due(self, now: datetime) -> list[Count]:
        """The counts whose window has closed, forgotten here (the caller writes them)."""
        done, self._closed = self._closed, []
        for key, count in list(self._counts.items()):
            if now - count.first >= self.window:
                done.append(self._counts.pop(key))
        return done

    def drain(self) -> list[Count]:
        """Every count, closed or not (the door is stopping)."""
        done, self._closed = [*self._closed, *self._counts.values()], []
        self._counts = {}
        return done
