"""Whether this node may serve: not once it has gone longer than [cluster] store_grace without
completing a look at the store (fail closed), and again once a recent look completes; and how
long its presence lease lasts, so that no other node takes it for gone while it still serves.

The session watcher starts a look at the store every tick and tells this tracker whether the
last one completed (`looked`) or is still running or failed (`missed`). Durations are measured
on the clock's monotonic reading: a step of the wall clock (an admin, NTP) neither ends the
sessions nor stretches the grace; the wall clock only names the moment ("since ..."). A loss
also needs MISSES_TO_LOSE ticks since that look began, so a test's clock that jumps while a
look is in flight is no loss when the look completes in time. Pure: no store, no asyncio.

Why others never take a serving node for gone (each look renews the presence lease after it
began, so the last renewal happens at or after B, the beginning of the last completed look,
and the store stamps it R on the store's clock: the database server's on PostgreSQL, one
clock for every node, bastion/audit/storetime.py):
- the node judges a loss at the first tick past B + grace that is also MISSES_TO_LOSE ticks
  or more after B: at most JUDGED_WITHIN after B + grace while its event loop ticks (grace
  at least 2 s), and it cuts every session in that tick, before any store call;
- others see it gone only once the store's clock passes R + presence_ttl(grace), whatever
  their own clocks say: grace + JUDGED_WITHIN + SKEW after the renewal, so at
  B + grace + JUDGED_WITHIN + SKEW or later.
SKEW is the margin for the one clock itself: a step of the store's clock forward (an admin,
NTP on the database host), or its rate against the node's monotonic clock; the nodes' own
wall clocks judge no lease. What this cannot cover: a node whose whole event loop stops
(SIGSTOP, a paused VM) relays nothing and judges nothing; and a step of the store's clock
forward by more than SKEW makes presences run out early (then [cluster] lost_after, 30 s at
least, passes on that clock before any node's sessions are closed as lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.clock import iso

MISSES_TO_LOSE = 4  # ticks in a row without a completed look before the grace is judged
TICK_AT_MOST = 1.0  # seconds between two ticks of a watcher that runs (it asks for 0.5)
JUDGED_WITHIN = timedelta(seconds=(MISSES_TO_LOSE + 1) * TICK_AT_MOST)
SKEW = timedelta(seconds=5)  # a step (or drift) of the store's clock that leases absorb


def presence_ttl(grace: timedelta) -> timedelta:
    """How long a node's presence lease lasts from each renewal: past the moment it ends its
    sessions for a lost store, so another node never takes it for gone while it serves."""
    return grace + JUDGED_WITHIN + SKEW


@dataclass(frozen=True)
class Moment:
    """One tick of the watcher: its number, the monotonic reading and the wall clock's."""

    tick: int
    seconds: float
    wall: datetime


@dataclass
class StoreGrace:
    grace: timedelta
    reached: Moment | None = None  # when the last look that completed began
    missing_from: Moment | None = None  # the first tick of this run without a look
    lost_since: datetime | None = None  # the store's last proof, once the grace ran out
    misses: int = 0  # ticks in a row without a completed look

    def looked(self, began: Moment, now: Moment) -> bool:
        """A look that began at `began` completed by `now`; True when that ends a loss. A
        look that began longer than the grace ago ends none: the lease it renewed may have
        run out meanwhile (others took the node for gone), and the next look decides."""
        if self.reached is None or began.seconds > self.reached.seconds:
            self.reached = began
        self.misses, self.missing_from = 0, None
        if self.lost_since is None or now.seconds - began.seconds > self._seconds():
            return False
        self.lost_since = None
        return True

    def missed(self, now: Moment) -> bool:
        """A tick found no completed look (still running, or it failed); True when the grace
        has just run out: the caller ends every live session on this node. It runs from the
        beginning of the last look that completed, and needs MISSES_TO_LOSE ticks since."""
        self.misses += 1
        if self.missing_from is None:
            self.missing_from = now
        start = self.reached or self.missing_from
        if self.lost_since is not None or now.tick - start.tick < MISSES_TO_LOSE:
            return False
        if now.seconds - start.seconds <= self._seconds():
            return False
        self.lost_since = start.wall
        return True

    @property
    def lost(self) -> bool:
        return self.lost_since is not None

    def ended_message(self) -> str:
        """What a session ended for the loss shows its engineer."""
        return (
            f"this bastion lost its audit store for more than {int(self._seconds())} s;"
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

    def _seconds(self) -> float:
        return self.grace.total_seconds()
