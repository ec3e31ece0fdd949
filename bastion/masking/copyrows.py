"""COPY TO STDOUT rows as PostgreSQL sends them, one row per CopyData message (text, csv,
binary): parsed into values, masked, and written back with only the masked fields changed
(pure, sans-I/O; bytes in, bytes out).

Strict on purpose: the parser accepts exactly what PostgreSQL's COPY TO writes (every escape
and quote it uses, and nothing else), so a message that is not one whole row of the planned
width raises CopyError and nothing of it is forwarded.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bastion.masking.values import Masker

Value = bytes | None  # a field's value as the server's text or binary form; None is NULL
Clear = Callable[[Sequence[Value]], frozenset[int]]  # positions an unmask grant shows in a row

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_HEADER = len(SIGNATURE) + 8  # signature, flags, header extension length
_TRAILER = _I16.pack(-1)
# Text format: what a backslash escape stands for (the delimiter escapes as itself too).
_UNESCAPE = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v",
             b"\\": b"\\"}  # fmt: skip
_ESCAPE = {v[0]: b"\\" + k for k, v in _UNESCAPE.items()}


class CopyError(ValueError):
    """A CopyData message that is not exactly one whole row of the planned width."""


@dataclass(frozen=True)
class CopyFormat:
    """How COPY writes its rows: the statement's options as PostgreSQL reads them."""

    kind: str = "text"  # text, csv or binary
    delimiter: bytes = b"\t"
    null: bytes = b"\\N"
    quote: bytes = b'"'
    escape: bytes = b'"'
    header: bool = False

    @property
    def binary(self) -> bool:
        return self.kind == "binary"


def csv_format(**options: bytes | bool) -> CopyFormat:
    """The csv defaults (delimiter ',', NULL '', QUOTE '"', ESCAPE as QUOTE), then `options`."""
    base: dict[str, bytes | bool] = {"delimiter": b",", "null": b"", "quote": b'"'}
    base.update(options)
    base.setdefault("escape", base["quote"])
    return CopyFormat("csv", **base)  # type: ignore[arg-type]


# -- text format ---------------------------------------------------------------------------


def _text_escape(value: bytes, fmt: CopyFormat) -> bytes:
    """A value as COPY's text format writes it: backslash, the delimiter and \\b \\f \\n \\r \\t
    \\v escaped (a tab as \\t even when it is the delimiter); every other byte as it is."""
    return _escaper(fmt.delimiter).sub(_escape_one, value)


@functools.lru_cache(maxsize=32)
def _escaper(delimiter: bytes) -> re.Pattern[bytes]:
    return re.compile(b"[" + re.escape(bytes(_ESCAPE) + delimiter) + b"]")


def _escape_one(match: re.Match[bytes]) -> bytes:
    found = match.group()
    return _ESCAPE.get(found[0], b"\\" + found)


def _text_unescape(raw: bytes, fmt: CopyFormat) -> bytes:
    if b"\\" not in raw:
        return raw
    out = bytearray()
    pos, size = 0, len(raw)
    while pos < size:
        cut = raw.find(b"\\", pos)
        if cut < 0:
            out += raw[pos:]
            break
        out += raw[pos:cut]
        code = raw[cut + 1 : cut + 2]
        if code == fmt.delimiter:
            out += code
        elif code in _UNESCAPE:
            out += _UNESCAPE[code]
        else:
            raise CopyError("a backslash escape COPY does not write")
        pos = cut + 2
    return bytes(out)


def _text_fields(line: bytes, fmt: CopyFormat) -> list[bytes]:
    """The raw fields of one text-format row (without its newline)."""
    if b"\n" in line or b"\r" in line:
        raise CopyError("a raw line break inside a text-format row")
    if b"\\" not in line:
        return line.split(fmt.delimiter)
    # A backslash and the byte after it are one escape (a lone one at the end fails later).
    fields, start = [], 0
    splitter = re.compile(rb"\\.|" + re.escape(fmt.delimiter), re.DOTALL)
    for match in splitter.finditer(line):
        if match.group() == fmt.delimiter:
            fields.append(line[start : match.start()])
            start = match.end()
    fields.append(line[start:])
    return fields


def text_encode(values: Sequence[Value], fmt: CopyFormat) -> bytes:
    """One row in text format, newline included (as COPY TO writes it)."""
    parts = [fmt.null if v is None else _text_escape(v, fmt) for v in values]
    return fmt.delimiter.join(parts) + b"\n"


# -- csv format ----------------------------------------------------------------------------


def _csv_quote(value: bytes, fmt: CopyFormat) -> bytes:
    """A value in quotes, its quote and escape characters escaped (always quoted: a quoted
    value is never read as NULL)."""
    quote, escape = fmt.quote, fmt.escape
    out = value.replace(escape, escape + escape) if escape != quote else value
    return quote + out.replace(quote, escape + quote) + quote


def _csv_field(line: bytes, pos: int, fmt: CopyFormat) -> tuple[bytes, Value, int]:
    """The field starting at `pos`: its raw bytes, its value, and where it ends."""
    quote, escape, delim = fmt.quote[0], fmt.escape[0], fmt.delimiter[0]
    size = len(line)
    if pos < size and line[pos] == quote:
        out, at = [], pos + 1
        while True:  # from one quote or escape character to the next
            cut = line.find(fmt.quote, at)
            if cut < 0:
                raise CopyError("a csv row ends inside quotes")
            if escape != quote:
                found = line.find(fmt.escape, at, cut)
                cut = cut if found < 0 else found
            out.append(line[at:cut])
            following = line[cut + 1] if cut + 1 < size else -1
            escaped = following == quote or (following == escape and escape != quote)
            if line[cut] == escape and escaped:
                out.append(line[cut + 1 : cut + 2])
                at = cut + 2
            elif line[cut] == quote:
                at = cut + 1
                break
            else:  # an escape character escaping nothing stands for itself, as COPY FROM reads
                out.append(line[cut : cut + 1])
                at = cut + 1
        if at < size and line[at] != delim:
            raise CopyError("text after a closing quote in a csv row")
        return line[pos:at], b"".join(out), at
    stop = line.find(fmt.delimiter, pos)
    stop = size if stop < 0 else stop
    raw = line[pos:stop]
    if fmt.quote in raw or b"\n" in raw or b"\r" in raw:
        raise CopyError("a quote or line break in an unquoted csv field")
    return raw, (None if raw == fmt.null else raw), stop


def _csv_fields(line: bytes, fmt: CopyFormat) -> list[tuple[bytes, Value]]:
    fields, pos = [], 0
    while True:
        raw, value, pos = _csv_field(line, pos, fmt)
        fields.append((raw, value))
        if pos >= len(line):
            return fields
        pos += 1  # the delimiter
        if pos == len(line):
            fields.append((b"", None if fmt.null == b"" else b""))
            return fields


def csv_encode(values: Sequence[Value], fmt: CopyFormat) -> bytes:
    """One row in csv format, newline included; every value quoted, NULL as the NULL string."""
    parts = [fmt.null if v is None else _csv_quote(v, fmt) for v in values]
    return fmt.delimiter.join(parts) + b"\n"


# -- binary format -------------------------------------------------------------------------


def binary_header() -> bytes:
    """The file header COPY's binary format starts with: no OIDs, no header extension."""
    return SIGNATURE + _I32.pack(0) + _I32.pack(0)


def binary_encode(values: Sequence[Value]) -> bytes:
    """One tuple: its field count, then each field's length (-1 for NULL) and bytes."""
    parts = [_I16.pack(len(values))]
    for v in values:
        parts.append(_I32.pack(-1) if v is None else _I32.pack(len(v)) + v)
    return b"".join(parts)


def binary_trailer() -> bytes:
    return _TRAILER


def _binary_fields(body: bytes, pos: int) -> list[Value]:
    """The fields of the one tuple from `pos` to the end of `body`."""
    if pos + 2 > len(body):
        raise CopyError("a binary tuple ends inside its field count")
    (count,) = _I16.unpack_from(body, pos)
    if count < 0:
        raise CopyError("a binary tuple claims a negative field count")
    pos += 2
    values: list[Value] = []
    for index in range(count):
        if pos + 4 > len(body):
            raise CopyError(f"a binary tuple ends inside field {index + 1}'s length")
        (size,) = _I32.unpack_from(body, pos)
        pos += 4
        if size < -1 or pos + max(size, 0) > len(body):
            raise CopyError(f"binary field {index + 1} claims {size} bytes")
        values.append(None if size == -1 else body[pos : pos + size])
        pos += max(size, 0)
    if pos != len(body):
        raise CopyError("bytes after a binary tuple in its CopyData message")
    return values


class _Lazy(Sequence[Value]):
    """A text or csv row's values, each read from its raw field when first asked for (most
    fields are never masked, so never unescaped)."""

    __slots__ = ("_fmt", "_null", "_raws")

    def __init__(self, raws: list[bytes], null: bytes, fmt: CopyFormat | None) -> None:
        self._raws, self._null, self._fmt = raws, null, fmt  # fmt None: csv, nothing escaped

    def __len__(self) -> int:
        return len(self._raws)

    def __getitem__(self, index: int) -> Value:  # type: ignore[override]
        raw = self._raws[index]
        if raw == self._null:
            return None
        return raw if self._fmt is None else _text_unescape(raw, self._fmt)


Values = Sequence[Value]


# -- one COPY's stream ---------------------------------------------------------------------


class CopyRows:
    """One COPY TO STDOUT's CopyData messages, in order: each checked to be one whole row of
    `width` fields and returned with the masked fields rewritten. `clear` names the positions
    an unmask grant shows in clear in a given row."""

    def __init__(self, fmt: CopyFormat, width: int, maskers: Mapping[int, Masker],
                 clear: Clear | None = None) -> None:  # fmt: skip
        self.fmt, self.width, self.clear = fmt, width, clear
        self.maskers = sorted(maskers.items())
        self.started = False  # the binary header, or the header line, was seen
        self.ended = False  # the binary trailer was seen
        self.rows = 0

    def message(self, body: bytes) -> bytes:
        """One CopyData body in, the body to forward out; CopyError when it is not one row."""
        if self.ended:
            raise CopyError("CopyData after the binary trailer")
        if self.fmt.binary:
            return self._binary(body)
        if not body.endswith(b"\n"):
            raise CopyError("a CopyData message that does not end a row")
        raws, values = self._split(body[:-1])
        if self.fmt.header and not self.started:
            self.started = True
            return body  # the column names: checked, sent as they are
        changed = self._masked(values)
        if not changed:
            return body
        fmt = self.fmt
        quote = _csv_quote if fmt.kind == "csv" else _text_escape
        for index, new in changed.items():
            raws[index] = fmt.null if new is None else quote(new, fmt)
        return fmt.delimiter.join(raws) + b"\n"

    def done(self) -> None:
        """CopyDone: the stream must be complete (a binary one ends with its trailer)."""
        if self.fmt.binary and not self.ended:
            raise CopyError("CopyDone before the binary trailer")
        if self.fmt.header and not self.started:
            raise CopyError("CopyDone before the header line")

    def _split(self, line: bytes) -> tuple[list[bytes], Values]:
        """A row's raw fields, and its values (read only where the masking needs them)."""
        fmt = self.fmt
        if fmt.kind == "csv" and fmt.quote not in line:  # nothing quoted: fields as they are
            if b"\n" in line or b"\r" in line:
                raise CopyError("a quote or line break in an unquoted csv field")
            raws = line.split(fmt.delimiter)
            values: Values = _Lazy(raws, fmt.null, None)
        elif fmt.kind == "csv":
            fields = _csv_fields(line, fmt)
            raws, values = [raw for raw, _ in fields], [value for _, value in fields]
        else:
            raws = _text_fields(line, fmt)
            values = _Lazy(raws, fmt.null, fmt)
        if len(raws) != self.width:
            raise CopyError(f"a row of {len(raws)} fields where {self.width} were planned")
        return raws, values

    def _masked(self, values: Values) -> dict[int, Value]:
        """The new value of each field the masking changes in this row."""
        self.rows += 1
        clear = self.clear(values) if self.clear is not None else frozenset()
        changed: dict[int, Value] = {}
        for index, masker in self.maskers:
            value = values[index] if index < len(values) else None
            if value is not None and index not in clear:
                new = masker(value)
                if new != value:
                    changed[index] = new
        return changed

    def _binary(self, body: bytes) -> bytes:
        pos = 0
        if not self.started:
            if body[: len(SIGNATURE)] != SIGNATURE or len(body) < _HEADER:
                raise CopyError("the binary COPY header is missing")
            flags, extension = (
                _I32.unpack_from(body, len(SIGNATURE)),
                _I32.unpack_from(body, len(SIGNATURE) + 4),
            )
            if flags != (0,) or extension != (0,):
                raise CopyError("a binary COPY header with flags or an extension")
            self.started, pos = True, _HEADER
        if body[pos:] == _TRAILER:
            self.ended = True
            return body
        values = _binary_fields(body, pos)
        if len(values) != self.width:
            raise CopyError(f"a tuple of {len(values)} fields where {self.width} were planned")
        changed = self._masked(values)
        if not changed:
            return body
        return body[:pos] + binary_encode([changed.get(i, v) for i, v in enumerate(values)])


def parse_row(body: bytes, fmt: CopyFormat, width: int) -> list[Value]:
    """The values of one text or csv row message, or one binary tuple without header (for
    tests and the reference)."""
    if fmt.binary:
        return _binary_fields(body, 0)
    if not body.endswith(b"\n"):
        raise CopyError("a CopyData message that does not end a row")
    return list(CopyRows(fmt, width, {})._split(body[:-1])[1])


def encode_row(values: Sequence[Value], fmt: CopyFormat) -> bytes:
    """One row message body in `fmt` (binary: the tuple alone)."""
    if fmt.binary:
        return binary_encode(values)
    return csv_encode(values, fmt) if fmt.kind == "csv" else text_encode(values, fmt)


def copy_data_run(raw: bytes, rows: CopyRows) -> bytes:
    """A run of whole CopyData messages ('d', length, body), each passed through `rows`."""
    out: list[bytes] = []
    pos, total = 0, len(raw)
    while pos < total:
        if pos + 5 > total or raw[pos] != 0x64:  # "d"
            raise CopyError("a message other than CopyData inside a COPY's rows")
        (length,) = _I32.unpack_from(raw, pos + 1)
        end = pos + 1 + length
        if length < 4 or end > total:
            raise CopyError("a CopyData length that does not fit its run")
        body = raw[pos + 5 : end]
        new = rows.message(body)
        out.append(raw[pos:end] if new is body else b"d" + _I32.pack(len(new) + 4) + new)
        pos = end
    return b"".join(out)
