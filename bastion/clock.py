"""Clocks: the real one, and a settable one so tests never wait for time to pass."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime, and, for measuring how
    long something lasted, seconds that only ever move forward (no step of the wall clock
    moves them)."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """Wall-clock time in UTC; the system's monotonic clock for durations."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to; for tests and simulations. `advance` is time
    passing (both readings move); `set` is the wall clock stepped (the monotonic one stays)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._seconds = 1000.0  # any origin: only differences of monotonic() mean anything

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._seconds

    def advance(self, delta: timedelta | float) -> None:
        """Move forward by a timedelta or a number of seconds."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        self._now += delta
        self._seconds += max(0.0, delta.total_seconds())  # back: a step, as set() makes

    def set(self, when: datetime) -> None:
        """Step the wall clock (an admin, NTP): no time passes on the monotonic clock."""
        self._now = when


def iso(when: datetime) -> str:
    """Format a datetime the way the store keeps it: UTC, microseconds, 'Z'."""
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_iso(text: str) -> datetime:
    """Read a timestamp written by iso() (exactly that shape; fromisoformat is 30x faster
    than strptime, which matters when the session watcher reads every live grant)."""
    if len(text) != 27 or text[10] != "T" or text[19] != "." or text[-1] != "Z":
        raise ValueError(f"{text!r} is not a timestamp as the store writes them")
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
