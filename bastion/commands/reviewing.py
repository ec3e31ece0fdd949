"""Reviewers' reads and checks as audit events: who read the query log, and who verified what.

`queries.listed` is chained, and read back, before a row of the query log is shown: a
listing that cannot be recorded is not shown at all. `audit.verified` is chained after a
check, with its result; never onto a chain whose end was just found in question (that would
move the head file past the damage), and a store that cannot take it is said, not fatal.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from bastion.audit import Event
from bastion.commands.app import App
from bastion.errors import StoreError
from bastion.reviewing import audited


def record_reading(
    app: App, filters: Mapping[str, Any], count: int, unit: str, span: tuple[int, int] | None
) -> None:
    """`queries.listed` for any way of reading statements, chained and read back before
    anything is shown (bastion/reviewing/audited.py)."""
    audited.record_reading(app.store, app.actor, filters, count, unit=unit, span=span)


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
