"""Each report column's type, shared by the JSON Schema, the JSON, CSV and SQLite renderings.

TABLES (bastion/reports/model.py) names the columns; this says what each holds, so the
published schema, the typed SQLite tables and the cells written agree. Every cell may be
empty (None). `cell` checks a value against its column and fails loudly on a mismatch: a
report whose data does not fit its published schema is not written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from bastion.reports.model import TABLES, Cell

TEXT, INTEGER, NUMBER, BOOLEAN = "text", "integer", "number", "boolean"

# Text from the store may hold lone surrogates (bytes that were not UTF-8, kept by
# surrogateescape); an insider must not be able to stop the report with one. Renderings
# encode with this handler, which writes such a character as its escape (\udcff).
UNENCODABLE = "backslashreplace"


def encodable(text: str) -> str:
    """`text`, with any character UTF-8 cannot encode written as its backslash escape."""
    if text.isascii():
        return text
    return text.encode("utf-8", UNENCODABLE).decode("utf-8")


_AT = {"at": TEXT}
COLUMN_TYPES: Mapping[str, Mapping[str, str]] = {
    "sessions": {"id": TEXT, "person": TEXT, "target": TEXT, "door": TEXT,
                 "client_address": TEXT, "started_at": TEXT, "ended_at": TEXT,
                 "hours": NUMBER, "state": TEXT, "end_reason": TEXT,
                 "recording_sha256": TEXT},
    "access": {"grant_id": INTEGER, "person": TEXT, "group": TEXT, "target": TEXT,
               "mode": TEXT, "starts_at": TEXT, "ends_at": TEXT, "granted_by": TEXT,
               "reason": TEXT, "ticket": TEXT, "break_glass": BOOLEAN, "standing": BOOLEAN},
    "changes": {**_AT, "kind": TEXT, "actor": TEXT, "person": TEXT, "target": TEXT,
                "reason": TEXT, "window": TEXT, "detail": TEXT},
    "people": {"person": TEXT, "targets": TEXT, "sessions": INTEGER, "hours": NUMBER,
               "first_at": TEXT, "last_at": TEXT, "statements": INTEGER,
               "commands": INTEGER, "refused": INTEGER},
    "notable": {**_AT, "person": TEXT, "target": TEXT, "session": TEXT, "kind": TEXT,
                "text": TEXT, "why": TEXT, "offset": NUMBER, "replay": TEXT},
    "transfers": {**_AT, "person": TEXT, "target": TEXT, "session": TEXT,
                  "operation": TEXT, "path": TEXT, "bytes": INTEGER, "sha256": TEXT},
    "reviewers": {**_AT, "reviewer": TEXT, "action": TEXT, "what": TEXT},
    "consent": {"unmask_id": INTEGER, "person": TEXT, "target": TEXT, "subject": TEXT,
                "consent_ref": TEXT, "document_sha256": TEXT, "state": TEXT,
                "approved_by": TEXT, "rows_shown": INTEGER, **_AT},
}  # fmt: skip


def column_types(table: str) -> tuple[tuple[str, str], ...]:
    """A table's (column, type) pairs in TABLES' order."""
    types = COLUMN_TYPES[table]
    return tuple((name, types[name]) for name in TABLES[table])


def cell(kind: str, value: Cell, where: str = "") -> Cell:
    """`value` as a cell of a column of type `kind`; ValueError when it does not fit."""
    if value is None:
        return None
    if kind == TEXT and isinstance(value, str):
        return value
    if kind == BOOLEAN and isinstance(value, bool):
        return value
    if kind == BOOLEAN and isinstance(value, int) and value in (0, 1):
        return bool(value)
    if kind == INTEGER and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == NUMBER and isinstance(value, int | float) and not isinstance(value, bool):  # noqa: SIM102
        if math.isfinite(value):
            return value
    raise ValueError(f"{where or 'cell'}: {value!r} is not a {kind}")
