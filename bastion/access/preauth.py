"""Pre-authentication limits: logins in progress and failures per source address (pure)."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bastion.config import DoorLimits


@dataclass(frozen=True)
class PreauthPolicy:
    """How much an unauthenticated source may do before it is turned away."""

    max_unauthenticated_per_source: int = 10
    max_failures: int = 10  # failed auth attempts per source within the window...
    failure_window: timedelta = timedelta(minutes=5)
    block_for: timedelta = timedelta(minutes=5)  # ...then new connections are refused this long


@dataclass
class PreauthLimiter:
    """Counts per source address; the door asks before it lets a connection try to log in."""

    policy: PreauthPolicy = field(default_factory=PreauthPolicy)
    _pending: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _failures: dict[str, deque[datetime]] = field(default_factory=lambda: defaultdict(deque))
    _blocked_until: dict[str, datetime] = field(default_factory=dict)

    def admit(self, source: str, now: datetime) -> str | None:
        """None to let the connection in, or why it is refused."""
        until = self._blocked_until.get(source)
        if until is not None:
            if now < until:
                return f"too many failed logins from {source}; try again after {until:%H:%M:%S} UTC"
            del self._blocked_until[source]
        if self._pending[source] >= self.policy.max_unauthenticated_per_source:
            return f"too many unauthenticated connections from {source}"
        self._pending[source] += 1
        return None

    def blocked(self, source: str, now: datetime) -> bool:
        """True while the source is blocked: its open connections may not go on trying."""
        until = self._blocked_until.get(source)
        return until is not None and now < until

    def authenticated(self, source: str) -> None:
        """The connection logged in: it no longer counts as unauthenticated."""
        self._release(source)

    def closed_unauthenticated(self, source: str) -> None:
        self._release(source)

    def failed(self, source: str, now: datetime) -> bool:
        """Count a failed attempt; True when this one blocks the source."""
        window = self._failures[source]
        window.append(now)
        while window and now - window[0] > self.policy.failure_window:
            window.popleft()
        if len(window) >= self.policy.max_failures:
            self._blocked_until[source] = now + self.policy.block_for
            window.clear()
            return True
        return False

    def _release(self, source: str) -> None:
        if self._pending.get(source, 0) > 0:
            self._pending[source] -= 1
            if self._pending[source] == 0:
                del self._pending[source]


def limiter_for(limits: DoorLimits) -> PreauthLimiter:
    """A door's limiter, from its [ssh] or [postgres] settings."""
    return PreauthLimiter(PreauthPolicy(
        max_unauthenticated_per_source=limits.max_unauthenticated_per_source,
        max_failures=limits.max_failures_per_source,
        failure_window=limits.failure_window,
        block_for=limits.block_for,
    ))  # fmt: skip
