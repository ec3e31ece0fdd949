"""Reviewers' reads and checks as audit events: who read the query log, and who verified what.

`queries.listed` is chained, and read back, before a row of the query log is shown: a
listing that cannot be recorded is not shown at all. `audit.verified` is chained after a
check, with its result; never onto a chain whose end was just found in question (that would
move the head file past the damage), and a store that cannot take it is said, not fatal.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from bastion.audit import Event
from bastion.audit.queries import QueryRow
from bastion.commands.app import App
from bastion.errors import StoreError


def record_listing(app: App, filters: Mapping[str, Any], rows: Sequence[QueryRow]) -> None:
    """Chain who listed the query log, with which filters and how many rows (never their
    text); raise StoreError, so nothing is shown, if the event is not in the chain after."""
    ids = [row.id for row in rows]
    record_reading(app, filters, len(rows), "ids", (min(ids), max(ids)) if ids else None)


def record_reading(
    app: App, filters: Mapping[str, Any], count: int, unit: str, span: tuple[int, int] | None
) -> None:
    """`queries.listed` for any way of reading statements (`unit`: what `span` counts, the
    query log's ids or the chain's seqs), chained and read back before anything is shown."""
    given = {key: value for key, value in filters.items() if value is not None}
    detail: dict[str, Any] = {"filters": given, "rows": count}
    if span is not None:
        detail[unit] = list(span)
    event = Event("queries.listed", app.actor, str(given.get("user") or ""), "notice",
                  detail=detail)  # fmt: skip
    try:
        [chained] = app.store.append_events([event])
        held = app.store.mac_at(chained.seq)
    except StoreError as exc:
        raise StoreError(f"the query log is not shown: reading it could not be recorded in"
                         f" the audit chain ({exc.message})") from exc  # fmt: skip
    if held != chained.row_hash:
        raise StoreError("the query log is not shown: the audit chain does not hold the event"
                         " recording this reading (was the store altered?)")  # fmt: skip


def record_verification(app: App, detail: Mapping[str, Any], *, end_in_doubt: bool) -> bool:
    """Chain `audit.verified` with the check's result and range; whether it was recorded.
    `end_in_doubt`: the check found the chain broken or cut short, so it is left as found."""
    if end_in_doubt:
        _note("this verification is not recorded in the audit chain: the chain is left as"
              " found, for whoever investigates")  # fmt: skip
        return False
    event = Event("audit.verified", app.actor, "", "notice" if detail.get("ok") else "warning",
                  detail=dict(detail))  # fmt: skip
    try:
        app.store.append_events([event])
    except StoreError as exc:
        _note(f"this verification is not recorded in the audit chain: {exc.message}")
        return False
    return True


def _note(line: str) -> None:
    sys.stderr.write(f"bastion: {line}\n")
    sys.stderr.flush()
