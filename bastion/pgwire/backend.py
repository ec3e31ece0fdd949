"""Backend (server to client) messages: decoders, encoders and the DataRow fast path."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from bastion.pgwire.errors import ProtocolError
from bastion.pgwire.framing import Frame
from bastion.pgwire.startup import MAX_CANCEL_KEY, MIN_CANCEL_KEY
from bastion.pgwire.wire import FIELD, INT16, Cursor, Source, cursor, sole_cstr

AUTH_OK = 0
AUTH_KERBEROS_V5 = 2
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_GSS = 7
AUTH_GSS_CONTINUE = 8
AUTH_SSPI = 9
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12
_AUTH_DATA_SIZE = {AUTH_OK: 0, AUTH_KERBEROS_V5: 0, AUTH_CLEARTEXT: 0, AUTH_MD5: 4}
_AUTH_DATA_SIZE |= {AUTH_GSS: 0, AUTH_SSPI: 0}
_AUTH_ANY_DATA = frozenset((AUTH_GSS_CONTINUE, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL))
_TEXT_OR_BINARY = (0, 1)


@dataclass(frozen=True, slots=True)
class Authentication:
    """An authentication request 'R': ``code`` (AUTH_*) and the bytes after it."""

    code: int
    data: bytes  # MD5: the 4-byte salt; SASL: the mechanism list; SASL continue/final: data


@dataclass(frozen=True, slots=True)
class ParameterStatus:
    """ParameterStatus 'S': a run-time parameter's current value."""

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class BackendKeyData:
    """BackendKeyData 'K': the (pid, key) a CancelRequest must quote."""

    pid: int
    key: bytes


@dataclass(frozen=True, slots=True)
class ReadyForQuery:
    """ReadyForQuery 'Z' with the transaction status: 'I' idle, 'T' in one, 'E' failed."""

    status: str


@dataclass(frozen=True, slots=True)
class Field:
    """One result column of a RowDescription; table_oid/column are 0 if not a table column."""

    name: str
    table_oid: int
    column: int
    type_oid: int
    type_size: int
    type_mod: int
    format: int


@dataclass(frozen=True, slots=True)
class RowDescription:
    """RowDescription 'T': the columns of the rows that follow."""

    fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class CommandComplete:
    """CommandComplete 'C' with its tag, e.g. "SELECT 3" or "INSERT 0 1"."""

    tag: str


class _Fields:
    """The readable properties shared by ErrorResponse and NoticeResponse."""

    __slots__ = ()
    fields: dict[str, str]

    @property
    def sqlstate(self) -> str:
        """The SQLSTATE code ('C'), or "" if absent."""
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        """The primary message ('M'), or "" if absent."""
        return self.fields.get("M", "")

    @property
    def severity(self) -> str:
        """The non-localized severity ('V') if sent, else the localized one ('S')."""
        return self.fields.get("V") or self.fields.get("S", "")


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Fields):
    """ErrorResponse 'E': fields keyed by their one-letter codes (S, V, C, M, D, H, ...)."""

    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Fields):
    """NoticeResponse 'N': the same fields as an ErrorResponse, but only a warning or note."""

    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class CopyResponse:
    """CopyInResponse 'G', CopyOutResponse 'H' or CopyBothResponse 'W' (``kind``)."""

    kind: str
    format: int  # 0 text, 1 binary, for the whole COPY
    column_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NotificationResponse:
    """NotificationResponse 'A': a NOTIFY on ``channel`` from backend ``pid``."""

    pid: int
    channel: str
    payload: str


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion:
    """NegotiateProtocolVersion 'v': newest minor version and unrecognised options."""

    minor: int
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ParameterDescription:
    """ParameterDescription 't': the type OIDs of a statement's parameters."""

    type_oids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FunctionCallResponse:
    """FunctionCallResponse 'V': a fast-path call's result (None is NULL)."""

    value: bytes | None


BackendMessage: TypeAlias = (
    Authentication
    | ParameterStatus
    | BackendKeyData
    | ReadyForQuery
    | RowDescription
    | CommandComplete
    | ErrorResponse
    | NoticeResponse
    | CopyResponse
    | NotificationResponse
    | NegotiateProtocolVersion
    | ParameterDescription
    | FunctionCallResponse
)


def _ended(cur: Cursor, value: str) -> str:
    """``value``, after checking it was the message's last field."""
    cur.done()
    return value


def decode_authentication(source: Source) -> Authentication:
    """Decode an authentication request body."""
    cur = cursor(source, "Authentication")
    code = cur.int32()
    data = cur.rest()
    size = _AUTH_DATA_SIZE.get(code)
    if size is None and code not in _AUTH_ANY_DATA:
        raise ProtocolError(f"unknown authentication request code {code}")
    if size is not None and len(data) != size:
        raise ProtocolError(f"authentication request {code} with {len(data)} data bytes")
    if code == AUTH_SASL:
        sasl_mechanisms(data)
    return Authentication(code, data)


def sasl_mechanisms(data: bytes) -> list[str]:
    """The mechanism names of an AuthenticationSASL request's data (at least one)."""
    cur = Cursor(bytes(data), 0, "AuthenticationSASL")
    names: list[str] = []
    while name := cur.cstr():
        names.append(name)
    cur.done()
    if not names:
        raise ProtocolError("AuthenticationSASL names no mechanism")
    return names


def decode_parameter_status(source: Source) -> ParameterStatus:
    """Decode a ParameterStatus body."""
    cur = cursor(source, "ParameterStatus")
    name = cur.cstr()
    return ParameterStatus(name, _ended(cur, cur.cstr()))


def decode_backend_key_data(source: Source) -> BackendKeyData:
    """Decode a BackendKeyData body (a 4-byte key in 3.0, 4 to 256 bytes in 3.2)."""
    cur = cursor(source, "BackendKeyData")
    pid = cur.int32()
    if not MIN_CANCEL_KEY <= cur.left <= MAX_CANCEL_KEY:
        raise ProtocolError(f"BackendKeyData key of {cur.left} bytes (want 4 to 256)")
    return BackendKeyData(pid, cur.rest())


def decode_ready_for_query(source: Source) -> ReadyForQuery:
    """Decode a ReadyForQuery body."""
    cur = cursor(source, "ReadyForQuery")
    status = chr(cur.byte())
    cur.done()
    if status not in "ITE":
        raise ProtocolError(f"invalid transaction status {status!r} in ReadyForQuery")
    return ReadyForQuery(status)


def decode_row_description(source: Source) -> RowDescription:
    """Decode a RowDescription body."""
    cur = cursor(source, "RowDescription")
    n = cur.count(1 + FIELD.size)
    fields = []
    buf, unpack = cur.buf, FIELD.unpack_from
    for _ in range(n):
        name = cur.cstr()
        pos = cur.pos
        if pos + FIELD.size > cur.end:
            raise cur.truncated()
        cur.pos = pos + FIELD.size
        fields.append(Field(name, *unpack(buf, pos)))
    cur.done()
    return RowDescription(tuple(fields))


def decode_command_complete(source: Source) -> CommandComplete:
    """Decode a CommandComplete body."""
    cur = cursor(source, "CommandComplete")
    return CommandComplete(_ended(cur, cur.cstr()))


def command_tag(frame: Frame) -> str:
    """A CommandComplete's tag: decode_command_complete's, for a relay's hot path."""
    return sole_cstr(frame.raw, "CommandComplete")


def error_fields(source: Source, what: str = "ErrorResponse") -> dict[str, str]:
    """The (code -> value) fields of an ErrorResponse or NoticeResponse body."""
    cur = cursor(source, what)
    fields: dict[str, str] = {}
    while code := cur.byte():
        fields[chr(code)] = cur.cstr()
    cur.done()
    return fields


def decode_error(source: Source) -> ErrorResponse:
    """Decode an ErrorResponse body."""
    return ErrorResponse(error_fields(source))


def decode_notice(source: Source) -> NoticeResponse:
    """Decode a NoticeResponse body."""
    return NoticeResponse(error_fields(source, "NoticeResponse"))


def decode_copy_response(kind: str, source: Source) -> CopyResponse:
    """Decode a CopyInResponse ('G'), CopyOutResponse ('H') or CopyBothResponse ('W') body."""
    cur = cursor(source, "CopyResponse")
    overall = cur.byte()
    n = cur.count(2)
    formats = tuple(cur.int16() for _ in range(n))
    cur.done()
    if overall not in _TEXT_OR_BINARY or any(f not in _TEXT_OR_BINARY for f in formats):
        raise ProtocolError("unsupported format code in CopyResponse message")
    return CopyResponse(kind, overall, formats)


def decode_notification(source: Source) -> NotificationResponse:
    """Decode a NotificationResponse body."""
    cur = cursor(source, "NotificationResponse")
    pid, channel = cur.int32(), cur.cstr()
    return NotificationResponse(pid, channel, _ended(cur, cur.cstr()))


def decode_negotiate(source: Source) -> NegotiateProtocolVersion:
    """Decode a NegotiateProtocolVersion body."""
    cur = cursor(source, "NegotiateProtocolVersion")
    minor, n = cur.int32(), cur.int32()
    if n < 0 or n > cur.left:
        raise cur.truncated()
    options = tuple(cur.cstr() for _ in range(n))
    cur.done()
    return NegotiateProtocolVersion(minor, options)


def decode_parameter_description(source: Source) -> ParameterDescription:
    """Decode a ParameterDescription body."""
    cur = cursor(source, "ParameterDescription")
    n = cur.count(4)
    oids = tuple(cur.uint32() for _ in range(n))
    cur.done()
    return ParameterDescription(oids)


def decode_function_call_response(source: Source) -> FunctionCallResponse:
    """Decode a FunctionCallResponse body."""
    cur = cursor(source, "FunctionCallResponse")
    size = cur.int32()
    value = None if size == -1 else cur.take(size)
    cur.done()
    return FunctionCallResponse(value)


_DECODERS: dict[bytes, Callable[[Frame], BackendMessage]] = {
    b"R": decode_authentication,
    b"S": decode_parameter_status,
    b"K": decode_backend_key_data,
    b"Z": decode_ready_for_query,
    b"T": decode_row_description,
    b"C": decode_command_complete,
    b"E": decode_error,
    b"N": decode_notice,
    b"G": lambda frame: decode_copy_response("G", frame),
    b"H": lambda frame: decode_copy_response("H", frame),
    b"W": lambda frame: decode_copy_response("W", frame),
    b"A": decode_notification,
    b"v": decode_negotiate,
    b"t": decode_parameter_description,
    b"V": decode_function_call_response,
}
_EMPTY = {
    b"1": "ParseComplete",
    b"2": "BindComplete",
    b"3": "CloseComplete",
    b"n": "NoData",
    b"s": "PortalSuspended",
    b"I": "EmptyQueryResponse",
    b"c": "CopyDone",
}
_BLIND = frozenset((b"D", b"d"))  # DataRow, CopyData: forwarded without a look


def decode_backend(frame: Frame) -> BackendMessage | None:
    """Decode a server message; None for DataRow, CopyData and the empty acknowledgements.

    DataRow bodies are not read here (see data_row_columns / data_row_values); the
    empty ones are checked to be empty; an unknown type byte is a ProtocolError.
    """
    type_ = frame.type
    if type_ in _BLIND:
        return None
    decoder = _DECODERS.get(type_)
    if decoder is not None:
        return decoder(frame)
    name = _EMPTY.get(type_)
    if name is None:
        raise ProtocolError(f"unknown backend message type {type_!r}")
    if len(frame.raw) != 5:
        raise ProtocolError(f"trailing bytes in {name} message")
    return None


def data_row_columns(body: memoryview | bytes) -> int:
    """The column count of a DataRow body, read without looking further."""
    if len(body) < 2:
        raise ProtocolError("truncated DataRow message")
    n = int(INT16.unpack_from(body, 0)[0])
    if n < 0:
        raise ProtocolError("negative column count in DataRow message")
    return n


def data_row_values(source: Source) -> tuple[bytes | None, ...]:
    """Every value of a DataRow (None is NULL), each length checked against the body."""
    cur = cursor(source, "DataRow")
    n = cur.count(4)
    values: list[bytes | None] = []
    for _ in range(n):
        size = cur.int32()
        values.append(None if size == -1 else cur.take(size))
    cur.done()
    return tuple(values)
