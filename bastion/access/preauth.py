"""Pre-authentication limits: logins in progress, per address and in all, and failures (pure).

A door holds one PreauthLimiter and gives each connection its own view of it
(`for_connection`), which knows how to end that connection. Then the limiter can shed
load itself, without asking the door:

- When every seat in login is taken, a newcomer from an address with fewer logins in
  progress than the busiest address takes the oldest seat of that busiest address (whose
  connection is ended). A flood from a few addresses cannot keep a real user out; a flood
  from as many addresses as there are seats still can, and the cap then bounds the memory.
- When an address fails too often, its other connections still in login are ended at
  once, so none of them can go on guessing while the address is blocked.
"""

from __future__ import annotations

import copy
import ipaddress
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bastion.config_policies import DoorLimits

Evict = Callable[[str], None]  # ends one connection in login, telling it why
MAX_TRACKED = 10_000  # addresses with failures kept before the ones that are over are dropped


def source_key(address: str) -> str:
    """What the limits count by: the address, or for IPv6 its /64 (one host's share, which
    a single client can rotate through freely)."""
    try:
        ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    except ValueError:
        return address
    if not isinstance(ip, ipaddress.IPv6Address):
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


@dataclass(frozen=True)
class PreauthPolicy:
    """How much an unauthenticated source may do before it is turned away."""

    max_unauthenticated_per_source: int = 10
    max_failures: int = 10  # failed auth attempts per source within the window...
    failure_window: timedelta = timedelta(minutes=5)
    block_for: timedelta = timedelta(minutes=5)  # ...then new connections are refused this long
    max_logins_in_progress: int = 1000  # seats in login across every address


@dataclass
class _Seat:
    """One connection in login."""

    source: str
    evict: Evict | None  # None: the connection can't be ended from here


@dataclass
class PreauthLimiter:
    """Counts per source address and in all; the door asks before a connection may log in."""

    policy: PreauthPolicy = field(default_factory=PreauthPolicy)
    # shared by every view of the limiter (for_connection makes shallow copies):
    _pending: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _seats: dict[object, _Seat] = field(default_factory=dict)  # oldest first
    _anonymous: dict[str, deque[object]] = field(default_factory=lambda: defaultdict(deque))
    _failures: dict[str, deque[datetime]] = field(default_factory=lambda: defaultdict(deque))
    _blocked_until: dict[str, datetime] = field(default_factory=dict)
    # this view's own connection (None on the door's shared limiter):
    _token: object | None = None
    _evict: Evict | None = None
    _close_when_blocked: bool = False

    def for_connection(self, evict: Evict, *, close_when_blocked: bool = False) -> PreauthLimiter:
        """A view for one connection: the same counts, and `evict` ends this connection.
        With close_when_blocked, this connection's own failure that blocks its address ends
        it too (a door whose protocol allows several attempts per connection)."""
        view = copy.copy(self)
        view._token, view._evict, view._close_when_blocked = object(), evict, close_when_blocked
        return view

    @property
    def in_progress(self) -> int:
        """Connections in login now, from every address."""
        return len(self._seats)

    def admit(self, source: str, now: datetime) -> str | None:
        """None to let the connection in, or why it is refused."""
        source = source_key(source)
        until = self._blocked_until.get(source)
        if until is not None:
            if now < until:
                return f"too many failed logins from {source}; try again after {until:%H:%M:%S} UTC"
            del self._blocked_until[source]
        if self._pending[source] >= self.policy.max_unauthenticated_per_source:
            return f"too many unauthenticated connections from {source}"
        if len(self._seats) >= self.policy.max_logins_in_progress and not self._shed(source):
            return "too many connections are logging in; try again shortly"
        token = self._token
        if token is None:
            token = object()
            self._anonymous[source].append(token)
        self._drop(token)
        self._seats[token] = _Seat(source, self._evict)
        self._pending[source] += 1
        return None

    def blocked(self, source: str, now: datetime) -> bool:
        """True while the address is refused for failing too often."""
        source = source_key(source)
        until = self._blocked_until.get(source)
        return until is not None and now < until

    def authenticated(self, source: str) -> None:
        """The connection logged in: it no longer counts as unauthenticated."""
        self._release(source)

    def closed_unauthenticated(self, source: str) -> None:
        self._release(source)

    def failed(self, source: str, now: datetime) -> bool:
        """Count a failed attempt; True when this one blocks the source (and then its other
        connections in login are ended)."""
        source = source_key(source)
        if len(self._failures) >= MAX_TRACKED:
            self._forget_old(now)
        window = self._failures[source]
        window.append(now)
        while window and now - window[0] > self.policy.failure_window:
            window.popleft()
        if len(window) < self.policy.max_failures:
            return False
        self._blocked_until[source] = now + self.policy.block_for
        del self._failures[source]
        why = f"too many failed logins from {source}"
        for token, seat in list(self._seats.items()):
            mine = token is self._token
            if (
                seat.source == source
                and seat.evict is not None
                and (not mine or self._close_when_blocked)
            ):
                self._drop(token)
                seat.evict(why)
        return True

    def _shed(self, newcomer: str) -> bool:
        """Make room for `newcomer` by ending the oldest login of the busiest address, if that
        address has more logins in progress than the newcomer's; False if none qualifies."""
        counts: dict[str, int] = defaultdict(int)
        for seat in self._seats.values():
            if seat.evict is not None:
                counts[seat.source] += 1
        if not counts:
            return False
        busiest = max(counts, key=counts.__getitem__)
        if counts[busiest] <= self._pending.get(newcomer, 0):
            return False
        for token, seat in self._seats.items():
            if seat.source == busiest and seat.evict is not None:
                self._drop(token)
                seat.evict("too many connections are logging in; try again shortly")
                return True
        return False  # pragma: no cover - counts said there was one

    def _forget_old(self, now: datetime) -> None:
        """Drop failure windows and blocks that are over (many addresses, each failing once)."""
        for key, window in list(self._failures.items()):
            if not window or now - window[-1] > self.policy.failure_window:
                del self._failures[key]
        for key, until in list(self._blocked_until.items()):
            if until <= now:
                del self._blocked_until[key]

    def _release(self, source: str) -> None:
        source = source_key(source)
        token = self._token
        if token is None:
            queue = self._anonymous.get(source)
            if not queue:
                return
            token = queue.popleft()
            if not queue:
                del self._anonymous[source]
        self._drop(token)

    def _drop(self, token: object) -> None:
        """Forget one seat (released, or evicted: a later release of it changes nothing)."""
        seat = self._seats.pop(token, None)
        if seat is None:
            return
        source = seat.source
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
        max_logins_in_progress=limits.max_logins_in_progress,
    ))  # fmt: skip
