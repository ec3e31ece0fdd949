"""Which rows of a result belong to the one data subject a live unmask grant names (pure).

A sensitive column is shown in clear only in rows whose subject key, from the same occurrence
of the same table, is in the result as it is and equals the grant's subject. Anything the
analysis cannot prove (an expression, a join of the table with itself, a key in a format we
cannot compare) leaves the row masked.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bastion.masking.catalog import Catalog
from bastion.masking.lineage import Col, Source
from bastion.masking.values import TEXT_LIKE
from bastion.pgwire import Field

_INTS = {21: struct.Struct("!h"), 23: struct.Struct("!i"), 20: struct.Struct("!q")}
_UUID = 2950
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")


@dataclass(frozen=True)
class Subject:
    """A live unmask grant, resolved against the catalog."""

    grant_id: int
    clear: frozenset[Source]  # the sensitive columns it may show
    keys: frozenset[Source]  # every configured subject-key column
    value: str
    shown: str  # "customers.id=4711", for notices


@dataclass
class SubjectRows:
    """Within one result: the key column, what it must hold, and what a match shows."""

    subject: Subject
    key_index: int
    matches: tuple[bytes | None, bytes | None]  # the subject's value as text, as binary
    clear: frozenset[int]  # result positions shown in clear in matching rows
    names: tuple[str, ...]

    def key(self, formats: tuple[int, ...]) -> bytes | None:
        """The key's bytes under a Bind's result formats (none: text; one: for all)."""
        if len(formats) > 1:
            fmt = formats[self.key_index] if self.key_index < len(formats) else -1
        else:
            fmt = formats[0] if formats else 0
        return self.matches[fmt] if fmt in (0, 1) else None


def resolve(catalog: Catalog, grant_id: int, columns: Iterable[str], keys: Iterable[str],
            subject: tuple[str, str]) -> Subject:  # fmt: skip
    """A grant's columns ("customers.email", "public.customers", ...) and the target's subject
    keys as (relation OID, attnum) sources; names that match nothing add nothing."""
    clear = {s for name in columns for s in _sources(catalog, name, whole_table=True)}
    key_sources = {s for name in keys for s in _sources(catalog, name, whole_table=False)}
    key, value = subject
    return Subject(grant_id, frozenset(clear), frozenset(key_sources), value.strip(),
                   f"{key}={value}")  # fmt: skip


def _sources(catalog: Catalog, name: str, *, whole_table: bool) -> set[Source]:
    """schema.table.column or table.column; with whole_table also schema.table or table."""
    parts = name.split(".")
    found: set[Source] = set()
    for r in catalog.relations.values():
        table = whole_table and parts in ([r.schema, r.name], [r.name])
        for a in r.attributes:
            if table or parts in ([r.schema, r.name, a.name], [r.name, a.name]):
                found.add((r.relid, a.attnum))
    return found


def subject_rows(subjects: Sequence[Subject], cols: Sequence[Col] | None,
                 fields: Sequence[Field]) -> list[SubjectRows]:  # fmt: skip
    """For each live grant, where its subject's rows can be recognised in this result."""
    if not subjects or cols is None or len(cols) != len(fields):
        return []
    found: list[SubjectRows] = []
    for subject in subjects:
        for key_index, (col, f) in enumerate(zip(cols, fields, strict=True)):
            origin = (f.table_oid, f.column)
            if origin not in subject.keys or not _proven(col, origin):
                continue
            matches = (key_bytes(subject.value, f.type_oid, 0),
                       key_bytes(subject.value, f.type_oid, 1))  # fmt: skip
            clear = frozenset(
                i for i, (c, g) in enumerate(zip(cols, fields, strict=True))
                if (g.table_oid, g.column) in subject.clear and g.table_oid == f.table_oid
                and _proven(c, (g.table_oid, g.column)) and c.row == col.row
            )  # fmt: skip
            if matches != (None, None) and clear:
                names = tuple(fields[i].name for i in sorted(clear))
                found.append(SubjectRows(subject, key_index, matches, clear, names))
    return found


def _proven(col: Col, origin: Source) -> bool:
    return col.bare and col.row != 0 and col.sources == frozenset({origin})


def key_bytes(value: str, type_oid: int, fmt: int) -> bytes | None:
    """The subject's value as the server sends it in this column, or None when unsure."""
    if type_oid in _INTS:
        return _int_bytes(value, _INTS[type_oid], fmt)
    if type_oid == _UUID:
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            return None
        return str(parsed).encode() if fmt == 0 else parsed.bytes
    if type_oid in TEXT_LIKE and type_oid != 1042:  # bpchar is padded: not compared
        return value.encode()
    return None


def _int_bytes(value: str, packer: struct.Struct, fmt: int) -> bytes | None:
    try:
        number = int(value)
        return str(number).encode() if fmt == 0 else packer.pack(number)
    except (ValueError, struct.error):
        return None


def column_at(body: bytes, index: int) -> bytes | None:
    """One column of a DataRow body (None for NULL or when the row is too short)."""
    (count,) = _I16.unpack_from(body, 0)
    if index >= count:
        return None
    pos = 2
    for _ in range(index):
        (size,) = _I32.unpack_from(body, pos)
        pos += 4 + max(size, 0)
    (size,) = _I32.unpack_from(body, pos)
    return None if size < 0 else body[pos + 4 : pos + 4 + size]
