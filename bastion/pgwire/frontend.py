"""Frontend (client to server) messages of the normal phase: decoders and encoders."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeAlias

from bastion.pgwire.errors import ProtocolError
from bastion.pgwire.framing import Frame
from bastion.pgwire.wire import (
    INT16,
    INT32,
    Cursor,
    Source,
    cstr,
    cursor,
    int16s,
    message,
    sole_cstr,
    uint32s,
)


@dataclass(frozen=True, slots=True)
class Query:
    """Simple query 'Q': one string that may hold several statements."""

    sql: str


@dataclass(frozen=True, slots=True)
class Parse:
    """Parse 'P': prepare ``sql`` as statement ``name`` ("" is the unnamed one)."""

    name: str
    sql: str
    param_types: tuple[int, ...]  # OIDs; 0 leaves the type to the server


@dataclass(frozen=True, slots=True)
class Bind:
    """Bind 'B': make ``portal`` from ``statement`` with parameter values."""

    portal: str
    statement: str
    param_formats: tuple[int, ...]  # none = all text, one = for all, else one each
    params: tuple[bytes | None, ...]  # None is SQL NULL
    result_formats: tuple[int, ...]  # same rule, per result column

    def param_format(self, index: int) -> int:
        """The format code (0 text, 1 binary) of parameter ``index``."""
        formats = self.param_formats
        return formats[index] if len(formats) > 1 else (formats[0] if formats else 0)


@dataclass(frozen=True, slots=True)
class Execute:
    """Execute 'E': run ``portal``, returning at most ``max_rows`` rows (0 = all)."""

    portal: str
    max_rows: int


@dataclass(frozen=True, slots=True)
class Describe:
    """Describe 'D' of a statement (kind 'S') or portal (kind 'P')."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close 'C' of a statement (kind 'S') or portal (kind 'P')."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class PasswordMessage:
    """A 'p' message: a password, or a SASLInitialResponse/SASLResponse body, as sent."""

    data: bytes = field(repr=False)  # a secret: kept out of reprs, logs and tracebacks

    @property
    def password(self) -> str:
        """The data read as a PasswordMessage's one NUL-terminated UTF-8 string."""
        cur = Cursor(self.data, 0, "PasswordMessage")
        text = cur.cstr()
        cur.done()
        return text


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """Fast-path FunctionCall 'F' of the function with this OID (arguments not decoded)."""

    oid: int


@dataclass(frozen=True, slots=True)
class CopyData:
    """CopyData 'd' (either direction): a chunk of COPY data."""

    data: bytes


@dataclass(frozen=True, slots=True)
class CopyDone:
    """CopyDone 'c' (either direction): the end of COPY data."""


@dataclass(frozen=True, slots=True)
class CopyFail:
    """CopyFail 'f': the client aborts COPY FROM STDIN with this message."""

    message: str


FrontendMessage: TypeAlias = (
    Query | Parse | Bind | Execute | Describe | Close | PasswordMessage | FunctionCall | CopyFail
)
_FORMATS = frozenset((0, 1))
_KINDS = ("S", "P")


def decode_query(source: Source) -> Query:
    """Decode a Query body."""
    cur = cursor(source, "Query")
    sql = cur.cstr()
    cur.done()
    return Query(sql)


def query_text(frame: Frame) -> str:
    """A Query's text: decode_query's result for a relay's hot path, without the objects."""
    return sole_cstr(frame.raw, "Query")


def decode_parse(source: Source) -> Parse:
    """Decode a Parse body."""
    cur = cursor(source, "Parse")
    name, sql = cur.cstr(), cur.cstr()
    n = cur.count(4)
    types = tuple(cur.uint32() for _ in range(n))
    cur.done()
    return Parse(name, sql, types)


def _formats(cur: Cursor) -> tuple[int, ...]:
    """An Int16 count of Int16 format codes, each 0 (text) or 1 (binary)."""
    n = cur.count(2)  # checked against the bytes left
    if n == 0:
        return ()
    formats: tuple[int, ...] = struct.unpack_from(f">{n}h", cur.buf, cur.pos)
    cur.pos += 2 * n
    if not _FORMATS.issuperset(formats):
        raise ProtocolError(f"unsupported format code in {cur.what} message")
    return formats


def decode_bind(source: Source) -> Bind:
    """Decode a Bind body."""
    cur = cursor(source, "Bind")
    portal, statement = cur.cstr(), cur.cstr()
    param_formats = _formats(cur)
    n = cur.count(4)
    if len(param_formats) > 1 and len(param_formats) != n:
        raise ProtocolError(f"Bind message has {len(param_formats)} formats for {n} parameters")
    params: list[bytes | None] = []
    for _ in range(n):
        size = cur.int32()
        params.append(None if size == -1 else cur.take(size))
    result_formats = _formats(cur)
    cur.done()
    return Bind(portal, statement, param_formats, tuple(params), result_formats)


def decode_execute(source: Source) -> Execute:
    """Decode an Execute body."""
    cur = cursor(source, "Execute")
    portal, max_rows = cur.cstr(), cur.int32()
    cur.done()
    return Execute(portal, max_rows)


def _target(source: Source, what: str) -> tuple[str, str]:
    """The (kind, name) of a Describe or Close body."""
    cur = cursor(source, what)
    kind = chr(cur.byte())
    if kind not in _KINDS:
        raise ProtocolError(f"invalid {what} kind {kind!r}")
    name = cur.cstr()
    cur.done()
    return kind, name


def decode_describe(source: Source) -> Describe:
    """Decode a Describe body."""
    return Describe(*_target(source, "Describe"))


def decode_close(source: Source) -> Close:
    """Decode a Close body."""
    return Close(*_target(source, "Close"))


def decode_password(source: Source) -> PasswordMessage:
    """Decode a 'p' body (its meaning depends on the authentication request it answers)."""
    return PasswordMessage(cursor(source, "PasswordMessage").rest())


def parse_sasl_initial(source: Source) -> tuple[str, bytes | None]:
    """The (mechanism, initial response or None) of a SASLInitialResponse body."""
    cur = cursor(source, "SASLInitialResponse")
    mechanism = cur.cstr()
    size = cur.int32()
    data = None if size == -1 else cur.take(size)
    cur.done()
    return mechanism, data


def decode_function_call(source: Source) -> FunctionCall:
    """Decode the OID of a FunctionCall body."""
    return FunctionCall(cursor(source, "FunctionCall").uint32())


def decode_copy_fail(source: Source) -> CopyFail:
    """Decode a CopyFail body."""
    cur = cursor(source, "CopyFail")
    text = cur.cstr()
    cur.done()
    return CopyFail(text)


def decode_copy(type_: bytes, source: Source) -> CopyData | CopyDone | CopyFail:
    """Decode a COPY sub-protocol message of type 'd', 'c' or 'f'."""
    if type_ == b"d":
        return CopyData(cursor(source, "CopyData").rest())
    if type_ == b"c":
        cursor(source, "CopyDone").done()
        return CopyDone()
    if type_ == b"f":
        return decode_copy_fail(source)
    raise ProtocolError(f"unexpected message type {type_!r} during COPY")


_DECODERS: dict[bytes, Callable[[Source], FrontendMessage]] = {
    b"Q": decode_query,
    b"P": decode_parse,
    b"B": decode_bind,
    b"E": decode_execute,
    b"D": decode_describe,
    b"C": decode_close,
    b"p": decode_password,
    b"F": decode_function_call,
    b"f": decode_copy_fail,
}
_EMPTY = frozenset((b"S", b"H", b"X", b"c"))  # Sync, Flush, Terminate, CopyDone


def decode_frontend(frame: Frame) -> FrontendMessage | None:
    """Decode a client message; None for Sync, Flush, Terminate, CopyData and CopyDone.

    Those are forwarded blindly (the empty ones are still checked to be empty);
    an unknown type byte is a ProtocolError.
    """
    if frame.type in _REPEATED and len(frame.raw) <= _REPEATED_MAX:
        return _decode_repeated(frame.raw)
    decoder = _DECODERS.get(frame.type)
    if decoder is not None:
        return decoder(frame)
    if frame.type == b"d":
        return None
    if frame.type in _EMPTY:
        if len(frame.raw) != 5:
            raise ProtocolError(f"trailing bytes in {_NAMES[frame.type]} message")
        return None
    raise ProtocolError(f"unknown frontend message type {frame.type!r}")


_REPEATED = frozenset((b"P", b"E", b"D", b"C"))
"""Messages a driver sends byte for byte the same again and again (the same Parse for every
execution, an unnamed portal's Execute): decoded once each, as the results are immutable."""
_REPEATED_MAX = 2048  # bytes: the cache holds at most 1024 of them


@lru_cache(maxsize=1024)
def _decode_repeated(raw: bytes) -> FrontendMessage:
    return _DECODERS[raw[:1]](raw[5:])


_NAMES = {b"S": "Sync", b"H": "Flush", b"X": "Terminate", b"c": "CopyDone"}


# --- encoders ---------------------------------------------------------------------------


def query(sql: str) -> bytes:
    """A Query message."""
    return message(b"Q", cstr(sql))


def parse(name: str, sql: str, types: Sequence[int] = ()) -> bytes:
    """A Parse message; ``types`` are parameter type OIDs (0 = let the server infer)."""
    return message(b"P", cstr(name), cstr(sql), uint32s(types))


def bind(
    portal: str,
    stmt: str,
    params: Sequence[bytes | None],
    param_formats: Sequence[int] = (),
    result_formats: Sequence[int] = (),
) -> bytes:
    """A Bind message; a None parameter is SQL NULL."""
    values = b"".join(
        INT32.pack(-1) if value is None else INT32.pack(len(value)) + value for value in params
    )
    return message(
        b"B",
        cstr(portal),
        cstr(stmt),
        int16s(param_formats),
        INT16.pack(len(params)),
        values,
        int16s(result_formats),
    )


def _kind(kind: str) -> bytes:
    """The kind byte of a Describe or Close: 'S' statement or 'P' portal."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'S' or 'P', not {kind!r}")
    return kind.encode("ascii")


def describe(kind: str, name: str) -> bytes:
    """A Describe message for a statement ('S') or portal ('P')."""
    return message(b"D", _kind(kind), cstr(name))


def execute(portal: str, max_rows: int = 0) -> bytes:
    """An Execute message (``max_rows`` 0 = no limit)."""
    return message(b"E", cstr(portal), INT32.pack(max_rows))


def close(kind: str, name: str) -> bytes:
    """A Close message for a statement ('S') or portal ('P')."""
    return message(b"C", _kind(kind), cstr(name))


def sync() -> bytes:
    """A Sync message."""
    return b"S\0\0\0\x04"


def flush() -> bytes:
    """A Flush message."""
    return b"H\0\0\0\x04"


def terminate() -> bytes:
    """A Terminate message."""
    return b"X\0\0\0\x04"


def password_message(data: bytes) -> bytes:
    """A PasswordMessage carrying ``data`` (a password or md5_password()) plus its NUL."""
    if b"\0" in data:
        raise ValueError("password holds a NUL byte")
    return message(b"p", data, b"\0")


def sasl_initial_response(mechanism: str, data: bytes | None) -> bytes:
    """A SASLInitialResponse naming ``mechanism``; None sends no initial response."""
    size = INT32.pack(-1 if data is None else len(data))
    return message(b"p", cstr(mechanism), size, data or b"")


def sasl_response(data: bytes) -> bytes:
    """A SASLResponse carrying ``data``."""
    return message(b"p", data)


def copy_data(data: bytes) -> bytes:
    """A CopyData message (valid in either direction)."""
    return message(b"d", data)


def copy_done() -> bytes:
    """A CopyDone message (valid in either direction)."""
    return b"c\0\0\0\x04"


def copy_fail(text: str) -> bytes:
    """A CopyFail message."""
    return message(b"f", cstr(text))


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """The answer to AuthenticationMD5Password: "md5" + md5(md5(password + user) + salt)."""
    inner = hashlib.md5((password + user).encode("utf-8"), usedforsecurity=False).hexdigest()
    outer = hashlib.md5(inner.encode("ascii") + salt, usedforsecurity=False).hexdigest()
    return b"md5" + outer.encode("ascii")
