"""The query log (each reading chained before a row is shown) and the consent ledger."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bastion.access.viewing import Viewer, whose
from bastion.audit import Store, UnmaskGrant
from bastion.audit.queries import QueryRow
from bastion.clock import iso
from bastion.errors import UsageError
from bastion.reports.facts import rows_shown
from bastion.reviewing.audited import record_reading
from bastion.reviewing.sessions import Page, id_cursor, page_size, search_text

STATES = ("pending", "active", "expired", "approved", "denied", "revoked", "cancelled")
SHOWN_ONLY = ("active", "expired")  # states worked out from an approved grant's window


@dataclass(frozen=True)
class QueryFilter:
    """What a query-log search asks for; None leaves a filter out."""

    user: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None  # a substring of the statement, any case
    session: str | None = None


def search_queries(
    store: Store, viewer: Viewer, wanted: QueryFilter, *, cursor: str | None = None,
    limit: int = 200,
) -> Page:  # fmt: skip
    """Statements newest first; `queries.listed` (the filters and the count, never a text)
    is chained and read back before a row is returned."""
    user = whose(viewer, wanted.user)
    text = search_text(wanted.text)
    before = id_cursor(cursor)
    size = page_size(limit)
    found = store.queries(user=user, target=wanted.target, since=wanted.since,
                          until=wanted.until, grep=text,
                          session_id=wanted.session, before=before,
                          limit=size + 1)  # fmt: skip
    more = len(found) > size
    found = found[:size]
    filters = {"user": user, "target": wanted.target,
               "since": iso(wanted.since) if wanted.since else None,
               "until": iso(wanted.until) if wanted.until else None,
               "grep": text, "session": wanted.session, "before": before,
               "limit": size}  # fmt: skip
    ids = [row.id for row in found]
    record_reading(store, viewer.actor, filters, len(found), unit="ids",
                   span=(min(ids), max(ids)) if ids else None)  # fmt: skip
    return Page([query_item(row) for row in found], str(found[-1].id) if more else None)


def query_item(row: QueryRow) -> dict[str, Any]:
    """A statement as listings show it: its masking note parsed, the masked columns named."""
    data = row.public()
    note = json.loads(row.masking) if row.masking else {}
    note = note if isinstance(note, dict) else {}
    data["masking"] = note or None
    data["masked"] = [str(c) for c in note.get("masked", [])] + [
        str(c) for c in note.get("detected", {})
    ]
    return data


def consent_ledger(
    store: Store, viewer: Viewer, now: datetime, *, user: str | None = None,
    target: str | None = None, state: str | None = None, cursor: str | None = None,
    limit: int = 50,
) -> Page:  # fmt: skip
    """Unmask grants newest first, each with its consent reference, the document's hash,
    who asked and who decided, and how many rows it showed in clear."""
    if state is not None and state not in STATES:
        raise UsageError(f"state is one of {', '.join(STATES)}")
    user = whose(viewer, user)
    size = page_size(limit)
    stored = "approved" if state in SHOWN_ONLY else state
    before = id_cursor(cursor)
    items: list[tuple[UnmaskGrant, dict[str, Any]]] = []
    while len(items) <= size:
        batch = store.consent_ledger(user=user, target=target, state=stored, before=before,
                                     limit=size + 1)  # fmt: skip
        for grant in batch:
            data = grant.public(now)
            if state not in SHOWN_ONLY or data["state"] == state:
                items.append((grant, data))
        if len(batch) <= size:
            break
        before = batch[-1].id
    more = len(items) > size
    items = items[:size]
    for grant, data in items:
        data["rows_shown"] = rows_shown(store.unmasked_notes(grant)).get(grant.id, 0)
    following = str(items[-1][0].id) if more else None
    return Page([data for _, data in items], following)
