"""A reading chained before it is shown: the event is written, then read back from the chain."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.audit import ChainedEvent, Event, Store
from bastion.errors import StoreError


def chain_before_showing(store: Store, event: Event, what: str) -> ChainedEvent:
    """Chain `event` and confirm the chain holds it; else StoreError, "`what` is not shown"
    (an insider's trigger that refuses the row, or drops it silently, hides nothing)."""
    try:
        [chained] = store.append_events([event])
        held = store.mac_at(chained.seq)
    except StoreError as exc:
        raise StoreError(f"{what} is not shown: reading it could not be recorded in the"
                         f" audit chain ({exc.message})") from exc  # fmt: skip
    if held != chained.row_hash:
        raise StoreError(f"{what} is not shown: the audit chain does not hold the event"
                         " recording this reading (was the store altered?)")  # fmt: skip
    return chained


def record_reading(
    store: Store, actor: str, filters: Mapping[str, Any], count: int, *, unit: str,
    span: tuple[int, int] | None, what: str = "the query log",
) -> None:  # fmt: skip
    """`queries.listed` for any way of reading statements (`unit`: what `span` counts, the
    query log's ids or the chain's seqs), chained and read back before anything is shown;
    `what` names what is then not shown, when it cannot be."""
    given = {key: value for key, value in filters.items() if value is not None}
    detail: dict[str, Any] = {"filters": given, "rows": count}
    if span is not None:
        detail[unit] = list(span)
    event = Event("queries.listed", actor, str(given.get("user") or ""), "notice",
                  detail=detail)  # fmt: skip
    chain_before_showing(store, event, what)
