"""A planned COPY TO STDOUT's reply in a masked session: its CopyOutResponse checked against the
plan, its CopyData rows masked as DataRows are, its CopyDone checked (pure, sans-I/O).

The reply to a COPY is CopyOutResponse, one CopyData per row, CopyDone, CommandComplete; no
RowDescription. The response must match the plan (format and width) or the session ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bastion.masking.copyplan import copy_fields
from bastion.masking.copyrows import (
    Clear,
    CopyError,
    CopyFormat,
    CopyRows,
    Value,
    copy_data_run,
)
from bastion.masking.session import Masking, Plan, ResultMask
from bastion.masking.subject import Subject, SubjectRows, subject_rows


class CopyMismatch(CopyError):
    """A CopyOutResponse that does not answer the planned COPY (format or width)."""


@dataclass
class CopyOut:
    """One COPY's rows arriving now: the mask they get and the parser that applies it."""

    fmt: CopyFormat
    mask: ResultMask
    rows: CopyRows
    done: bool = False  # CopyDone came: nothing but CommandComplete or an error may follow

    def run(self, raw: bytes) -> bytes:
        """A run of CopyData messages, masked (CopyError when one is not a whole row)."""
        if self.done:
            raise CopyError("CopyData after CopyDone")
        return copy_data_run(raw, self.rows)

    def finish(self) -> None:
        if self.done:
            raise CopyError("a second CopyDone")
        self.rows.done()
        self.done = True


def start_copy(masking: Masking, plan: Plan, response: tuple[int, Sequence[int]], *,
               subjects: Sequence[Subject], shown: dict[int, int]) -> CopyOut:  # fmt: skip
    """The CopyOut for a CopyOutResponse (overall format, column formats) answering `plan`;
    `shown` counts the rows each live unmask grant shows in clear."""
    if plan.copy is None:
        raise CopyMismatch("a CopyOutResponse for a statement that is no COPY")
    fmt, columns = plan.copy, plan.columns or ()
    overall, formats = response
    code = 1 if fmt.binary else 0
    if overall != code or len(formats) != len(columns) or any(f != code for f in formats):
        raise CopyMismatch("the CopyOutResponse does not match the planned COPY")
    fields = copy_fields(masking.catalog, columns, fmt)
    mask = masking.result(plan, fields)
    if mask.maskers and subjects:
        mask.subjects = subject_rows(subjects, columns, fields)
    clear = _clear(mask.subjects, code, shown) if mask.subjects else None
    maskers = mask.for_formats((code,))  # a scan reads binary values in their own layout
    return CopyOut(fmt, mask, CopyRows(fmt, len(columns), maskers, clear))


def _clear(found: list[SubjectRows], code: int, shown: dict[int, int]) -> Clear:
    """The positions shown in clear in a row: a live grant's columns where its key matches."""
    keyed = [(rows, rows.key((code,))) for rows in found]

    def clear(values: Sequence[Value]) -> frozenset[int]:
        positions: set[int] = set()
        for rows, key in keyed:
            index = rows.key_index
            if key is not None and index < len(values) and values[index] == key:
                positions |= rows.clear
                grant = rows.subject.grant_id
                shown[grant] = shown.get(grant, 0) + 1
        return frozenset(positions)

    return clear
