"""Primitive field readers and writers shared by the message codecs."""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Protocol

from bastion.pgwire.errors import ProtocolError

INT16 = struct.Struct(">h")
UINT16 = struct.Struct(">H")
INT32 = struct.Struct(">i")
UINT32 = struct.Struct(">I")
FIELD = struct.Struct(">IhIhih")  # a RowDescription field after its name


class Framed(Protocol):
    """Anything carrying a whole typed message as ``raw`` (a Frame)."""

    @property
    def raw(self) -> bytes: ...


Source = Framed | bytes | memoryview


class Cursor:
    """Reads the fields of one message body, checking every length against what is left.

    ``buf`` is the message's bytes (often a whole frame, with ``pos`` at its body), so
    strings are found with ``bytes.find`` and nothing is copied until a field is returned.
    """

    __slots__ = ("buf", "end", "pos", "what")

    def __init__(self, buf: bytes, pos: int, what: str) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf)
        self.what = what

    @property
    def left(self) -> int:
        """Bytes not yet read."""
        return self.end - self.pos

    def truncated(self) -> ProtocolError:
        """The error for a field that runs past the end of the message."""
        return ProtocolError(f"truncated {self.what} message")

    def int16(self) -> int:
        """A signed 16-bit integer."""
        pos = self.pos
        if pos + 2 > self.end:
            raise self.truncated()
        self.pos = pos + 2
        return int(INT16.unpack_from(self.buf, pos)[0])

    def count(self, item_size: int) -> int:
        """An Int16 item count, refused when negative or larger than the bytes left."""
        n = self.int16()
        if n < 0:
            raise ProtocolError(f"negative count in {self.what} message")
        if n * item_size > self.left:
            raise self.truncated()
        return n

    def int32(self) -> int:
        """A signed 32-bit integer."""
        pos = self.pos
        if pos + 4 > self.end:
            raise self.truncated()
        self.pos = pos + 4
        return int(INT32.unpack_from(self.buf, pos)[0])

    def uint32(self) -> int:
        """An unsigned 32-bit integer (an OID)."""
        pos = self.pos
        if pos + 4 > self.end:
            raise self.truncated()
        self.pos = pos + 4
        return int(UINT32.unpack_from(self.buf, pos)[0])

    def byte(self) -> int:
        """One byte as an integer."""
        pos = self.pos
        if pos >= self.end:
            raise self.truncated()
        self.pos = pos + 1
        return self.buf[pos]

    def take(self, n: int) -> bytes:
        """Exactly ``n`` bytes."""
        pos = self.pos
        if n < 0 or pos + n > self.end:
            raise self.truncated()
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def rest(self) -> bytes:
        """Everything not yet read."""
        data = self.buf[self.pos : self.end]
        self.pos = self.end
        return data

    def cstr(self) -> str:
        """A NUL-terminated UTF-8 string."""
        pos = self.pos
        nul = self.buf.find(b"\0", pos, self.end)
        if nul < 0:
            raise ProtocolError(f"unterminated string in {self.what} message")
        self.pos = nul + 1
        try:
            return self.buf[pos:nul].decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"invalid UTF-8 in {self.what} message") from None

    def done(self) -> None:
        """Refuse bytes left over after the last field."""
        if self.pos != self.end:
            raise ProtocolError(f"trailing bytes in {self.what} message")


def sole_cstr(raw: bytes, what: str) -> str:
    """The body of a whole message `raw` that is one NUL-terminated UTF-8 string (Query,
    CommandComplete): what a Cursor reading one cstr and checking done() gives, in one step."""
    end = len(raw) - 1
    nul = raw.find(b"\0", 5)
    if nul < 0:
        raise ProtocolError(f"unterminated string in {what} message")
    try:
        text = raw[5:nul].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"invalid UTF-8 in {what} message") from None
    if nul != end:
        raise ProtocolError(f"trailing bytes in {what} message")
    return text


def cursor(source: Source, what: str) -> Cursor:
    """A cursor over a message body given as a Frame (no copy), bytes or memoryview."""
    if isinstance(source, bytes):
        return Cursor(source, 0, what)
    if isinstance(source, memoryview):
        return Cursor(source.tobytes(), 0, what)
    return Cursor(source.raw, 5, what)


def cstr(text: str) -> bytes:
    """``text`` as a NUL-terminated UTF-8 string; ValueError if it holds a NUL."""
    if "\0" in text:
        raise ValueError(f"string holds a NUL byte: {text!r}")
    return text.encode("utf-8") + b"\0"


def message(type_: bytes, *parts: bytes) -> bytes:
    """A typed message: ``type_`` + Int32 length (counting itself) + the parts."""
    body = b"".join(parts)
    return type_ + INT32.pack(len(body) + 4) + body


def int16s(values: Iterable[int]) -> bytes:
    """An Int16 count followed by that many Int16 values."""
    items = tuple(values)
    return INT16.pack(len(items)) + struct.pack(f">{len(items)}h", *items)


def uint32s(values: Iterable[int]) -> bytes:
    """An Int16 count followed by that many unsigned Int32 values (OIDs)."""
    items = tuple(values)
    return INT16.pack(len(items)) + struct.pack(f">{len(items)}I", *items)
