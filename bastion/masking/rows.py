"""Rewrite a DataRow's masked columns and copy the rest as it came (pure; bytes in, bytes out)."""

from __future__ import annotations

import struct
from collections.abc import Mapping

from bastion.masking import _fastrows
from bastion.masking.detect import candidates
from bastion.masking.freetext import Scan
from bastion.masking.values import Masker, full, null, partial

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_NULL = _I32.pack(-1)
_CALL = 3  # the compiled rewriter's kinds: 0 NULL, 1 full, 2 partial, 3 call the masker,
_SCAN = 4  # 4 + (shapes << 8): call the masker only when the value holds one of those shapes
_KINDS: dict[Masker, int] = {null: 0, full: 1, partial: 2}


class RowError(ValueError):
    """A DataRow whose column lengths do not add up: never forwarded."""


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


def mask_run(data: bytes | memoryview, maskers: Mapping[int, Masker]) -> bytes:
    """A run of whole DataRow messages ('D', length, body) with the columns in `maskers`
    replaced, in one pass (compiled: _fastrows.c; mask_run_python is the reference it is
    tested against). Raises RowError when a row does not add up; nothing is returned then."""
    plan = tuple((index, _kind(mask), mask) for index, mask in sorted(maskers.items()))
    try:
        return _fastrows.mask_run(data, plan)
    except _fastrows.RowShape as exc:
        raise RowError(str(exc)) from None


def _kind(mask: Masker) -> int:
    if isinstance(mask, Scan):
        return _SCAN | mask.classes << 8
    return _KINDS.get(mask, _CALL)


def mask_run_python(data: bytes, maskers: Mapping[int, Masker]) -> bytes:
    """mask_run in Python: each row's unmasked stretches are copied as slices of the run, and
    only its length word is written anew."""
    order = sorted(maskers.items())
    unpack, pack, count_of = _I32.unpack_from, _I32.pack, _I16.unpack_from
    out: list[bytes] = []
    append = out.append
    pos, total = 0, len(data)
    while pos < total:
        if pos + 7 > total or data[pos] != 0x44:  # "D"
            raise RowError("not a whole DataRow where a row starts")
        (length,) = unpack(data, pos + 1)
        end = pos + 1 + length
        if length < 6 or end > total:
            raise RowError("DataRow length does not fit its run")
        (count,) = count_of(data, pos + 5)
        if count < 0:
            raise RowError("DataRow claims a negative column count")
        pieces, copied, at, column, delta = [], pos + 5, pos + 7, 0, 0
        for index, mask in order:
            if index >= count:
                break
            while True:
                if at + 4 > end:
                    raise RowError(f"DataRow ends inside column {column + 1}'s length")
                (size,) = unpack(data, at)
                stop = at + 4 + (size if size > 0 else 0)
                if size < -1 or stop > end:
                    raise RowError(f"DataRow column {column + 1} claims {size} bytes")
                if column == index:
                    break
                at, column = stop, column + 1
            value = data[at + 4 : stop]
            passes = isinstance(mask, Scan) and not candidates(value) & mask.classes
            if size != -1 and not passes:
                masked = mask(value)
                pieces.append(data[copied:at])
                pieces.append(_NULL if masked is None else pack(len(masked)) + masked)
                delta += -size if masked is None else len(masked) - size
                copied = stop
            at, column = stop, column + 1
        append(b"D")
        append(pack(length + delta))
        out.extend(pieces)
        append(data[copied:end])
        pos = end
    return b"".join(out)
