"""Reading the audit chain as a log: filtered searches newest first, its head, its last check.

A search walks the chain backwards from a seq (the keyset cursor, never an OFFSET) in
windows of WINDOW events, one statement each, so the store's lock is let go between
windows and no search holds the doors' writes for long; and it stops after `budget` events
looked at, saying where it stopped, so a filter matching nothing costs a bounded amount
however long the history is. Every value is a bound parameter: a filter's text is matched
as itself, exactly (a kind prefix as a range of the kind's text, never a LIKE pattern).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.audit.base import StoreBase, where
from bastion.audit.chain import ChainedEvent
from bastion.clock import iso

WINDOW = 20_000  # events read by one statement of a search
BUDGET = 500_000  # events a search looks at, at most, before it says where it stopped
VERIFIED = "audit.verified"  # chained by `bastion audit verify` and `report verify`


@dataclass(frozen=True)
class EventFilter:
    """What an audit log search asks for; None leaves a filter out. `kind` ending in "."
    is a prefix (every kind under it); `severities` the severities shown."""

    since: datetime | None = None
    until: datetime | None = None  # excluded
    kind: str | None = None
    actor: str | None = None
    subject: str | None = None
    session_id: str | None = None
    severities: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EventPage:
    """Events found, newest first; `next` the seq to continue below (None: the chain's
    start was reached); `looked_from` the lowest seq this search looked at."""

    events: list[ChainedEvent]
    next: int | None
    looked_from: int
    looked_to: int  # the highest seq looked at (0: the chain is empty)


def _kind(kind: str | None) -> list[tuple[str, Any]]:
    if kind is None:
        return []
    if not kind.endswith("."):
        return [("kind = ?", kind)]
    after = kind[:-1] + chr(ord(kind[-1]) + 1)  # "session." .. "session/": every session.*
    return [("kind >= ? AND kind < ?", (kind, after))]


def _conditions(wanted: EventFilter) -> list[tuple[str, Any]]:
    severities = wanted.severities
    return [
        ("at >= ?", iso(wanted.since) if wanted.since else None),
        ("at < ?", iso(wanted.until) if wanted.until else None),
        *_kind(wanted.kind),
        ("actor = ?", wanted.actor),
        ("subject = ?", wanted.subject),
        ("session_id = ?", wanted.session_id),
        (f"severity IN ({','.join('?' * len(severities))})" if severities else "",
         tuple(severities) if severities else None),
    ]  # fmt: skip


class EventLogQueries(StoreBase):
    """The audit chain searched and summed up for the console's audit log."""

    def search_events(
        self, wanted: EventFilter, *, before: int | None, limit: int, budget: int = BUDGET,
        window: int = WINDOW,
    ) -> EventPage:  # fmt: skip
        """Up to `limit` events matching `wanted` with seq below `before` (None: from the
        head), newest first, looking at `budget` events at most, `window` per statement."""
        top = self.chain_head()[0] + 1
        top = top if before is None else min(before, top)
        hi, found = top, list[ChainedEvent]()
        while hi > 1 and len(found) <= limit and top - hi < budget:
            lo = max(1, hi - min(window, budget - (top - hi)))
            clause, params = where([("seq >= ?", lo), ("seq < ?", hi), *_conditions(wanted)])
            rows = self._rows("SELECT * FROM audit_events" + clause + " ORDER BY seq DESC"
                              " LIMIT ?", [*params, limit + 1 - len(found)])  # fmt: skip
            found += [ChainedEvent(**row) for row in rows]
            hi = lo
        if len(found) > limit:
            found = found[:limit]
            return EventPage(found, found[-1].seq, found[-1].seq, top - 1)
        return EventPage(found, hi if hi > 1 else None, hi, top - 1)

    def chain_top(self) -> tuple[int, str | None]:
        """The last event's seq and time (0 and None when the chain is empty)."""
        rows = self._rows("SELECT seq, at FROM audit_events ORDER BY seq DESC LIMIT 1")
        return (int(rows[0]["seq"]), str(rows[0]["at"])) if rows else (0, None)

    def last_verification(self) -> ChainedEvent | None:
        """The last `audit.verified` event in the chain (None: never recorded)."""
        rows = self._rows("SELECT * FROM audit_events WHERE kind = ? ORDER BY seq DESC LIMIT 1",
                          [VERIFIED])  # fmt: skip
        return ChainedEvent(**rows[0]) if rows else None

    def recorded_sessions(self, ids: Iterable[str]) -> set[str]:
        """Which of these sessions have a recording."""
        wanted = sorted(set(ids))
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        rows = self._rows(f"SELECT id FROM sessions WHERE id IN ({marks})"
                          " AND recording_path IS NOT NULL", wanted)  # fmt: skip
        return {str(row["id"]) for row in rows}

    def session_event_details(self, session_id: str, kind: str) -> list[dict[str, Any]]:
        """The detail of every chained event of this kind about this session, oldest first."""
        rows = self._rows("SELECT detail FROM audit_events WHERE session_id = ? AND kind = ?"
                          " ORDER BY seq", [session_id, kind])  # fmt: skip
        found = [json.loads(row["detail"]) for row in rows]
        return [detail for detail in found if isinstance(detail, dict)]
