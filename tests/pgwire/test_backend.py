"""Backend messages: every encoder round-trips, DataRow helpers, malformed bodies refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bastion import pgwire as pw
from tests.pgwire.streams import FIELDS
from tests.pgwire.test_frontend import frame, i16, i32, typed

ERROR_FIELDS = {
    "S": "ERROR",
    "V": "ERROR",
    "C": "23505",
    "M": "duplicate key",
    "D": "Key (id)=(1) already exists.",
    "H": "pick another",
}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (pw.authentication_ok(), pw.Authentication(0, b"")),
        (pw.authentication_cleartext_password(), pw.Authentication(3, b"")),
        (pw.authentication_md5(b"salt"), pw.Authentication(5, b"salt")),
        (pw.authentication_sasl(["SCRAM-SHA-256"]), pw.Authentication(10, b"SCRAM-SHA-256\0\0")),
        (
            pw.authentication_sasl_continue(b"r=abc,s=xyz,i=4096"),
            pw.Authentication(11, b"r=abc,s=xyz,i=4096"),
        ),
        (pw.authentication_sasl_final(b"v=signature"), pw.Authentication(12, b"v=signature")),
        (
            pw.parameter_status("TimeZone", "Europe/Paris"),
            pw.ParameterStatus("TimeZone", "Europe/Paris"),
        ),
        (pw.parameter_status("x", ""), pw.ParameterStatus("x", "")),
        (
            pw.backend_key_data(123, b"\xde\xad\xbe\xef"),
            pw.BackendKeyData(123, b"\xde\xad\xbe\xef"),
        ),
        (pw.backend_key_data(1, bytes(32)), pw.BackendKeyData(1, bytes(32))),
        (pw.ready_for_query("I"), pw.ReadyForQuery("I")),
        (pw.ready_for_query("T"), pw.ReadyForQuery("T")),
        (pw.ready_for_query("E"), pw.ReadyForQuery("E")),
        (pw.row_description(FIELDS), pw.RowDescription(FIELDS)),
        (pw.row_description([]), pw.RowDescription(())),
        (pw.command_complete("INSERT 0 1"), pw.CommandComplete("INSERT 0 1")),
        (pw.fields_message(b"E", ERROR_FIELDS), pw.ErrorResponse(ERROR_FIELDS)),
        (pw.fields_message(b"N", {"M": "x"}), pw.NoticeResponse({"M": "x"})),
        (pw.copy_response("H", 0, (0, 0)), pw.CopyResponse("H", 0, (0, 0))),
        (pw.copy_response("G", 1, (1,)), pw.CopyResponse("G", 1, (1,))),
        (pw.copy_response("W", 0, ()), pw.CopyResponse("W", 0, ())),
        (
            pw.notification_response(9, "chan", "payload ✓"),
            pw.NotificationResponse(9, "chan", "payload ✓"),
        ),
        (pw.negotiate_protocol_version(0, ["_pq_.x"]), pw.NegotiateProtocolVersion(0, ("_pq_.x",))),
        (pw.negotiate_protocol_version(2), pw.NegotiateProtocolVersion(2, ())),
        (pw.parameter_description([23, 2**32 - 1]), pw.ParameterDescription((23, 2**32 - 1))),
        (pw.function_call_response(b"\x00\x01"), pw.FunctionCallResponse(b"\x00\x01")),
        (pw.function_call_response(None), pw.FunctionCallResponse(None)),
        (pw.data_row([b"1"]), None),
        (pw.copy_data(b"row\n"), None),
        (pw.copy_done(), None),
        (pw.empty_query_response(), None),
        (pw.no_data(), None),
        (pw.parse_complete(), None),
        (pw.bind_complete(), None),
        (pw.close_complete(), None),
        (pw.portal_suspended(), None),
    ],
)
def test_round_trip(raw: bytes, message: pw.BackendMessage | None) -> None:
    assert pw.decode_backend(frame(raw)) == message


def test_error_and_notice_responses() -> None:
    error = pw.decode_backend(
        frame(pw.error_response("FATAL", "28000", "no grant", detail="ask", hint="bastion request"))
    )
    assert isinstance(error, pw.ErrorResponse)
    assert (error.severity, error.sqlstate, error.message) == ("FATAL", "28000", "no grant")
    assert error.fields == {
        "S": "FATAL",
        "V": "FATAL",
        "C": "28000",
        "M": "no grant",
        "D": "ask",
        "H": "bastion request",
    }
    notice = pw.decode_backend(frame(pw.notice_response("WARNING", "01000", "careful")))
    assert isinstance(notice, pw.NoticeResponse) and not isinstance(notice, pw.ErrorResponse)
    assert (notice.severity, notice.sqlstate, notice.message) == ("WARNING", "01000", "careful")
    assert "D" not in notice.fields
    localized = pw.decode_error(frame(pw.fields_message(b"E", {"S": "ERREUR"})))
    assert (localized.severity, localized.sqlstate, localized.message) == ("ERREUR", "", "")


def test_sasl_mechanisms() -> None:
    auth = pw.decode_backend(frame(pw.authentication_sasl(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])))
    assert isinstance(auth, pw.Authentication)
    assert pw.sasl_mechanisms(auth.data) == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
    for bad in (b"\0", b"", b"SCRAM\0", b"SCRAM\0\0x"):
        with pytest.raises(pw.ProtocolError):
            pw.sasl_mechanisms(bad)


def test_data_row_helpers() -> None:
    values = (b"1", None, b"", "é".encode(), b"\xff" * 1000)
    row = frame(pw.data_row(values))
    assert pw.data_row_columns(row.body) == 5
    assert pw.data_row_values(row) == values
    assert pw.data_row_values(row.body) == values
    assert pw.data_row_columns(frame(pw.data_row([])).body) == 0
    with pytest.raises(pw.ProtocolError, match="truncated DataRow"):
        pw.data_row_columns(memoryview(b"\x00"))
    with pytest.raises(pw.ProtocolError, match="negative column count"):
        pw.data_row_columns(memoryview(b"\xff\xff"))
    for body in (i16(1) + i32(5) + b"abc", i16(2) + i32(-1), i16(1) + i32(-2), i16(0) + b"x"):
        with pytest.raises(pw.ProtocolError, match="DataRow"):
            pw.data_row_values(body)


@pytest.mark.parametrize(
    ("type_", "payload", "error"),
    [
        (b"R", b"", "truncated Authentication"),
        (b"R", i32(0) + b"x", "authentication request 0 with 1 data bytes"),
        (b"R", i32(5) + b"abc", "authentication request 5 with 3 data bytes"),
        (b"R", i32(6), "unknown authentication request code 6"),
        (b"R", i32(10) + b"SCRAM-SHA-256\0", "unterminated string in AuthenticationSASL"),
        (b"S", b"name\0", "unterminated string in ParameterStatus"),
        (b"S", b"name\0v\0x", "trailing bytes in ParameterStatus"),
        (b"K", i32(1) + b"abc", "key of 3 bytes"),
        (b"K", i32(1) + bytes(257), "key of 257 bytes"),
        (b"Z", b"", "truncated ReadyForQuery"),
        (b"Z", b"X", "invalid transaction status 'X'"),
        (b"Z", b"II", "trailing bytes in ReadyForQuery"),
        (b"T", i16(1), "truncated RowDescription"),
        (b"T", i16(1) + b"id\0" + bytes(17), "truncated RowDescription"),
        (b"T", i16(1) + b"id" + bytes(18), "truncated RowDescription"),
        (b"T", i16(-1), "negative count in RowDescription"),
        (b"T", i16(0) + b"x", "trailing bytes in RowDescription"),
        (b"C", b"SELECT 1", "unterminated string in CommandComplete"),
        (b"E", b"", "truncated ErrorResponse"),
        (b"E", b"Mmsg\0", "truncated ErrorResponse"),
        (b"E", b"Mmsg", "unterminated string in ErrorResponse"),
        (b"N", b"M\xc3\0\0", "invalid UTF-8 in NoticeResponse"),
        (b"H", b"\x00" + i16(2) + i16(0), "truncated CopyResponse"),
        (b"H", b"\x02" + i16(0), "unsupported format code in CopyResponse"),
        (b"G", b"\x00" + i16(1) + i16(7), "unsupported format code in CopyResponse"),
        (b"A", i32(1) + b"chan\0", "unterminated string in NotificationResponse"),
        (b"v", i32(0) + i32(2) + b"a\0", "unterminated string in NegotiateProtocolVersion"),
        (b"v", i32(0) + i32(-1), "truncated NegotiateProtocolVersion"),
        (b"t", i16(2) + i32(23), "truncated ParameterDescription"),
        (b"V", i32(4) + b"ab", "truncated FunctionCallResponse"),
        (b"1", b"x", "trailing bytes in ParseComplete"),
        (b"I", b"\0", "trailing bytes in EmptyQueryResponse"),
        (b"Q", b"", "unknown backend message type b'Q'"),
    ],
)
def test_malformed_bodies(type_: bytes, payload: bytes, error: str) -> None:
    with pytest.raises(pw.ProtocolError, match=error):
        pw.decode_backend(typed(type_, payload))


MISUSES: list[Callable[[], bytes]] = [
    lambda: pw.authentication_md5(b"abc"),
    lambda: pw.authentication_sasl([]),
    lambda: pw.authentication_sasl([""]),
    lambda: pw.backend_key_data(1, b"abc"),
    lambda: pw.ready_for_query("X"),
    lambda: pw.error_response("ERROR", "bad", "m"),
    lambda: pw.error_response("ERROR", "42601", "a\0b"),
    lambda: pw.fields_message(b"E", {"MM": "x"}),
    lambda: pw.copy_response("Q", 0, ()),
]


@pytest.mark.parametrize("call", MISUSES)
def test_encoders_refuse_misuse(call: Callable[[], bytes]) -> None:
    with pytest.raises(ValueError):
        call()
