"""Rewrite a DataRow's masked columns and copy the rest as it came (pure; bytes in, bytes out)."""

from __future__ import annotations

import struct
from collections.abc import Mapping

from bastion.masking.values import Masker

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")


class RowError(ValueError):
    """A DataRow whose column lengths do not add up: never forwarded."""


def mask_row(body: bytes | memoryview, maskers: Mapping[int, Masker]) -> bytes:
    """A DataRow body (column count, then each column's length and bytes) with the columns in
    `maskers` replaced; columns after the last masked one are copied in one slice. A NULL stays
    NULL. Raises RowError when the lengths run past the body or leave bytes over."""
    view = memoryview(body)
    if len(view) < 2:
        raise RowError("DataRow too short for its column count")
    (count,) = _I16.unpack_from(view, 0)
    last = max((i for i in maskers if i < count), default=-1)
    out = [bytes(view[:2])]
    pos = 2
    for index in range(count):
        if index > last:
            out.append(bytes(view[pos:]))
            pos = _skip(view, pos, count - index)
            break
        if pos + 4 > len(view):
            raise RowError(f"DataRow ends inside column {index + 1}'s length")
        (size,) = _I32.unpack_from(view, pos)
        end = pos + 4 + max(size, 0)
        if size < -1 or end > len(view):
            raise RowError(f"DataRow column {index + 1} claims {size} bytes")
        mask = maskers.get(index)
        if mask is None or size == -1:
            out.append(bytes(view[pos:end]))
        else:
            masked = mask(bytes(view[pos + 4 : end]))
            out.append(_I32.pack(-1) if masked is None else _I32.pack(len(masked)) + masked)
        pos = end
    if pos != len(view):
        raise RowError(f"DataRow has {len(view) - pos} bytes after its {count} columns")
    return b"".join(out)


def _skip(view: memoryview, pos: int, columns: int) -> int:
    """Walk the remaining columns' lengths (checking them) and return where they end."""
    for _ in range(columns):
        if pos + 4 > len(view):
            raise RowError("DataRow ends inside a column's length")
        (size,) = _I32.unpack_from(view, pos)
        if size < -1:
            raise RowError(f"DataRow column claims {size} bytes")
        pos += 4 + max(size, 0)
        if pos > len(view):
            raise RowError("DataRow column runs past the message")
    return pos


def columns(body: bytes | memoryview) -> list[bytes | None]:
    """Every column's bytes (None for NULL); for tests and the content detectors."""
    view = memoryview(body)
    (count,) = _I16.unpack_from(view, 0)
    pos, found = 2, []
    for _ in range(count):
        (size,) = _I32.unpack_from(view, pos)
        pos += 4
        found.append(None if size == -1 else bytes(view[pos : pos + size]))
        pos += max(size, 0)
    return found


def data_row(values: list[bytes | None]) -> bytes:
    """A DataRow body from column values (None for NULL); for tests and benchmarks."""
    parts = [_I16.pack(len(values))]
    for value in values:
        parts.append(_I32.pack(-1) if value is None else _I32.pack(len(value)) + value)
    return b"".join(parts)
