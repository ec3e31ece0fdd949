"""Encoders for backend (server to client) messages, which the proxy sends as the server."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from bastion.pgwire.backend import Field
from bastion.pgwire.startup import MAX_CANCEL_KEY, MIN_CANCEL_KEY
from bastion.pgwire.wire import FIELD, INT16, INT32, cstr, int16s, message, uint32s

_SQLSTATE = re.compile(r"[0-9A-Z]{5}")
_STATUSES = ("I", "T", "E")
_KINDS = ("G", "H", "W")


def _auth(code: int, data: bytes = b"") -> bytes:
    """An authentication request with ``code`` and its data."""
    return message(b"R", INT32.pack(code), data)


def authentication_ok() -> bytes:
    """AuthenticationOk."""
    return _auth(0)


def authentication_cleartext_password() -> bytes:
    """AuthenticationCleartextPassword."""
    return _auth(3)


def authentication_md5(salt: bytes) -> bytes:
    """AuthenticationMD5Password with its 4-byte ``salt``."""
    if len(salt) != 4:
        raise ValueError(f"MD5 salt must be 4 bytes, not {len(salt)}")
    return _auth(5, salt)


def authentication_sasl(mechanisms: Iterable[str]) -> bytes:
    """AuthenticationSASL offering ``mechanisms`` (e.g. ["SCRAM-SHA-256"])."""
    names = [cstr(name) for name in mechanisms]
    if not names or b"\0" in names:  # an empty name would end the list early
        raise ValueError("AuthenticationSASL needs at least one non-empty mechanism name")
    return _auth(10, b"".join(names) + b"\0")


def authentication_sasl_continue(data: bytes) -> bytes:
    """AuthenticationSASLContinue carrying the server's challenge."""
    return _auth(11, data)


def authentication_sasl_final(data: bytes) -> bytes:
    """AuthenticationSASLFinal carrying the server's final message."""
    return _auth(12, data)


def parameter_status(name: str, value: str) -> bytes:
    """ParameterStatus."""
    return message(b"S", cstr(name), cstr(value))


def backend_key_data(pid: int, key: bytes) -> bytes:
    """BackendKeyData with a 4-byte key (protocol 3.0) or up to 256 bytes (3.2)."""
    if not MIN_CANCEL_KEY <= len(key) <= MAX_CANCEL_KEY:
        raise ValueError(f"cancel key of {len(key)} bytes (want 4 to 256)")
    return message(b"K", INT32.pack(pid), key)


def ready_for_query(status: str) -> bytes:
    """ReadyForQuery with status 'I' (idle), 'T' (in a transaction) or 'E' (failed one)."""
    if status not in _STATUSES:
        raise ValueError(f"transaction status must be I, T or E, not {status!r}")
    return message(b"Z", status.encode("ascii"))


def fields_message(type_: bytes, fields: Mapping[str, str]) -> bytes:
    """An ErrorResponse (b"E") or NoticeResponse (b"N") with these one-letter fields."""
    parts = []
    for code, value in fields.items():
        if len(code) != 1 or code == "\0" or not code.isascii():
            raise ValueError(f"error field code must be one ASCII character, not {code!r}")
        parts.append(code.encode("ascii") + cstr(value))
    return message(type_, *parts, b"\0")


def _report(
    type_: bytes, severity: str, sqlstate: str, text: str, *, detail: str | None, hint: str | None
) -> bytes:
    """An ErrorResponse or NoticeResponse from its usual fields."""
    if not _SQLSTATE.fullmatch(sqlstate):
        raise ValueError(f"SQLSTATE must be five digits or capitals, not {sqlstate!r}")
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": text}
    if detail is not None:
        fields["D"] = detail
    if hint is not None:
        fields["H"] = hint
    return fields_message(type_, fields)


def error_response(
    severity: str, sqlstate: str, message: str, detail: str | None = None, hint: str | None = None
) -> bytes:
    """ErrorResponse (severity ERROR, FATAL or PANIC), writing S and V both."""
    return _report(b"E", severity, sqlstate, message, detail=detail, hint=hint)


def notice_response(
    severity: str, sqlstate: str, message: str, detail: str | None = None, hint: str | None = None
) -> bytes:
    """NoticeResponse (severity WARNING, NOTICE, DEBUG, INFO or LOG), writing S and V both."""
    return _report(b"N", severity, sqlstate, message, detail=detail, hint=hint)


def command_complete(tag: str) -> bytes:
    """CommandComplete with ``tag`` (e.g. "SELECT 1")."""
    return message(b"C", cstr(tag))


def empty_query_response() -> bytes:
    """EmptyQueryResponse."""
    return b"I\0\0\0\x04"


def row_description(fields: Sequence[Field]) -> bytes:
    """RowDescription of ``fields``."""
    parts = [INT16.pack(len(fields))]
    for f in fields:
        parts.append(cstr(f.name))
        parts.append(
            FIELD.pack(f.table_oid, f.column, f.type_oid, f.type_size, f.type_mod, f.format)
        )
    return message(b"T", *parts)


def data_row(values: Sequence[bytes | None]) -> bytes:
    """DataRow of ``values`` (None is NULL)."""
    parts = [INT16.pack(len(values))]
    append, pack = parts.append, INT32.pack
    for value in values:
        if value is None:
            append(b"\xff\xff\xff\xff")
        else:
            append(pack(len(value)))
            append(value)
    return message(b"D", *parts)


def no_data() -> bytes:
    """NoData."""
    return b"n\0\0\0\x04"


def parse_complete() -> bytes:
    """ParseComplete."""
    return b"1\0\0\0\x04"


def bind_complete() -> bytes:
    """BindComplete."""
    return b"2\0\0\0\x04"


def close_complete() -> bytes:
    """CloseComplete."""
    return b"3\0\0\0\x04"


def portal_suspended() -> bytes:
    """PortalSuspended."""
    return b"s\0\0\0\x04"


def copy_response(kind: str, format: int, column_formats: Sequence[int]) -> bytes:
    """CopyInResponse ('G'), CopyOutResponse ('H') or CopyBothResponse ('W')."""
    if kind not in _KINDS:
        raise ValueError(f"COPY response kind must be G, H or W, not {kind!r}")
    return message(kind.encode("ascii"), bytes((format,)), int16s(column_formats))


def notification_response(pid: int, channel: str, payload: str) -> bytes:
    """NotificationResponse."""
    return message(b"A", INT32.pack(pid), cstr(channel), cstr(payload))


def negotiate_protocol_version(minor: int, options: Sequence[str] = ()) -> bytes:
    """NegotiateProtocolVersion: newest supported minor version, unrecognised options."""
    names = b"".join(cstr(option) for option in options)
    return message(b"v", INT32.pack(minor), INT32.pack(len(options)), names)


def parameter_description(type_oids: Sequence[int]) -> bytes:
    """ParameterDescription of the parameter type OIDs."""
    return message(b"t", uint32s(type_oids))


def function_call_response(value: bytes | None) -> bytes:
    """FunctionCallResponse (None is NULL)."""
    if value is None:
        return message(b"V", INT32.pack(-1))
    return message(b"V", INT32.pack(len(value)), value)
