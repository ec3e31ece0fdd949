"""Whether this node may serve: not once it has gone longer than [cluster] store_grace without
completing a look at the store (fail closed), and again as soon as a look completes.

The session watcher starts a look at the store every tick and tells this tracker whether the
last one completed (`looked`) or is still running or failed (`missed`). Time is the
injectable clock's. The grace runs from the first tick that found no completed look (at most
one tick after the last look that completed began), and a loss also needs MISSES_TO_LOSE
such ticks in a row, so a clock that jumps while one look is in flight (a test's clock) is no
loss. Pure: no store, no asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.clock import iso

MISSES_TO_LOSE = 4  # ticks in a row without a completed look before the grace is judged


@dataclass
class StoreGrace:
    grace: timedelta
    reached_at: datetime | None = None  # when the last look that completed began
    missing_from: datetime | None = None  # the first tick of this run without a look
    lost_since: datetime | None = None  # the store's last proof, once the grace ran out
    misses: int = 0

    def looked(self, began: datetime) -> bool:
        """A look that began at `began` completed; True when that ends a loss."""
        if self.reached_at is None or began > self.reached_at:
            self.reached_at = began
        self.misses, self.missing_from = 0, None
        recovered, self.lost_since = self.lost_since is not None, None
        return recovered

    def missed(self, now: datetime) -> bool:
        """A tick found no completed look (still running, or it failed); True when the grace
        has just run out: the caller ends every live session on this node."""
        self.misses += 1
        if self.missing_from is None:
            self.missing_from = now
        if self.lost_since is not None or self.misses < MISSES_TO_LOSE:
            return False
        if now - self.missing_from <= self.grace:
            return False
        self.lost_since = self.reached_at or self.missing_from
        return True

    @property
    def lost(self) -> bool:
        return self.lost_since is not None

    def ended_message(self) -> str:
        """What a session ended for the loss shows its engineer."""
        return (
            f"this bastion lost its audit store for more than {self._seconds()} s;"
            " the session is over"
        )

    def refusal(self) -> str | None:
        """The one line a new login hears while the store is lost, else None."""
        if self.lost_since is None:
            return None
        return (
            f"this bastion cannot reach its audit store (since {iso(self.lost_since)});"
            " logins are refused until it is back: try another node"
        )

    def _seconds(self) -> int:
        return int(self.grace.total_seconds())
