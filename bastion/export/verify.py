"""Checking exported records as a SIEM holds them (pure): each MAC under the chain key, each
link to the record before it, and no record missing between two that should touch."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bastion.audit.chain import ChainedEvent, ChainKey, canonical_json, keyed_row_holds

FIELDS = ("seq", "at", "kind", "severity", "actor", "subject", "session_id", "detail", "prev",
          "mac", "alg")  # fmt: skip


@dataclass
class Checked:
    """What a check of exported records found: how many, which seqs, and what is wrong."""

    records: int = 0
    first: int | None = None
    last: int | None = None
    repeats: int = 0  # the same seq and MAC again (a replay after a reconnect): harmless
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (after, before) with none between
    problems: list[str] = field(default_factory=list)
    filtered: list[tuple[int, int]] = field(default_factory=list)  # gaps the filter explains


def as_event(record: dict[str, Any]) -> ChainedEvent:
    """The chained event a record says (ValueError when it is not one)."""
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise ValueError(f"no {', '.join(missing)}")
    r = record
    return ChainedEvent(int(r["seq"]), str(r["at"]), str(r["kind"]), str(r["severity"]),
                        str(r["actor"]), str(r["subject"]), r["session_id"],
                        canonical_json(r["detail"]), str(r["prev"]), str(r["mac"]),
                        str(r["alg"]))  # fmt: skip


def check_lines(lines: Iterable[bytes], key: ChainKey) -> Checked:
    """Check JSON-lines records in the order given (a file sink's, oldest file first)."""
    found = Checked()
    seen: dict[int, str] = {}
    previous: ChainedEvent | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = as_event(json.loads(line))
        except (ValueError, TypeError, KeyError) as exc:
            found.problems.append(f"line {number}: not an exported record ({exc})"[:200])
            continue
        if seen.get(event.seq) == event.row_hash:
            found.repeats += 1
            continue
        _one(found, event, previous, key)
        seen[event.seq], previous = event.row_hash, event
    return found


def _one(found: Checked, event: ChainedEvent, previous: ChainedEvent | None,
         key: ChainKey) -> None:  # fmt: skip
    found.records += 1
    found.first = event.seq if found.first is None else found.first
    found.last = event.seq
    if not keyed_row_holds(event, key):
        found.problems.append(f"event {event.seq}: its MAC does not hold under this chain key")
    if previous is None:
        return
    if event.seq <= previous.seq:
        found.problems.append(f"event {event.seq} comes after event {previous.seq}")
    elif event.seq == previous.seq + 1 and event.prev_hash != previous.row_hash:
        found.problems.append(f"event {event.seq} does not link to event {previous.seq}")
    elif event.seq > previous.seq + 1:
        found.gaps.append((previous.seq, event.seq))


def explain_gaps(found: Checked, cursor: int,
                 stored: Callable[[int, int], Iterable[ChainedEvent]],
                 takes: Callable[[str, str], bool]) -> None:  # fmt: skip
    """Sort a filtered sink's gaps (its cursor and filter given): one whose every event the
    store still holds and the filter passes over moves to `filtered`; the others stay gaps.
    Events after the last record up to the cursor that the filter takes are a gap too (a
    truncated file, a dropped newest file). `stored(after, upto)`: the chain's events."""
    if found.last is not None and cursor > found.last:
        found.gaps.append((found.last, cursor + 1))
    kept = []
    for after, before in found.gaps:
        events = list(stored(after, before - 1))  # read twice below
        whole = [e.seq for e in events] == list(range(after + 1, before))
        if whole and not any(takes(e.kind, e.severity) for e in events):
            found.filtered.append((after, before))
        else:
            kept.append((after, before))
    found.gaps = kept
