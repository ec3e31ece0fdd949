"""Bytes captured from real peers (psql 15.18, asyncpg, PostgreSQL 15.18) decode and re-encode.

Captured once through a logging TCP relay; the SCRAM nonces and proofs are from a
throw-away cluster. The last tests are hand-written from the message-format tables
of the protocol chapter.
"""

from __future__ import annotations

from bastion import pgwire as pw
from tests.pgwire.streams import one_by_one, read_all

PSQL_SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16/"
PSQL_STARTUP = (
    b"\x00\x00\x00?\x00\x03\x00\x00user\x00postgres\x00database\x00postgres\x00"
    b"application_name\x00psql\x00\x00"
)
SERVER_WELCOME = (
    b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    b"S\x00\x00\x00\x1aapplication_name\x00psql\x00"
    b"S\x00\x00\x00\x19client_encoding\x00UTF8\x00"
    b"S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00"
    b"S\x00\x00\x00&default_transaction_read_only\x00off\x00"
    b"S\x00\x00\x00\x17in_hot_standby\x00off\x00"
    b"S\x00\x00\x00\x19integer_datetimes\x00on\x00"
    b"S\x00\x00\x00\x1bIntervalStyle\x00postgres\x00"
    b"S\x00\x00\x00\x14is_superuser\x00on\x00"
    b"S\x00\x00\x00\x19server_encoding\x00UTF8\x00"
    b"S\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00"
    b"S\x00\x00\x00#session_authorization\x00postgres\x00"
    b"S\x00\x00\x00#standard_conforming_strings\x00on\x00"
    b"S\x00\x00\x00\x15TimeZone\x00Etc/UTC\x00"
    b"K\x00\x00\x00\x0c\x00\x00\x04 \xcd2\xe4\x1d"
    b"Z\x00\x00\x00\x05I"
)
PSQL_QUERY = b"Q\x00\x00\x006select 1 as one, null::text as n, '\xc3\xa9'::text as e\x00"
SERVER_RESULT = (
    b"T\x00\x00\x00D\x00\x03"
    b"one\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"
    b"n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00"
    b"e\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00"
    b"D\x00\x00\x00\x15\x00\x03\x00\x00\x00\x011\xff\xff\xff\xff\x00\x00\x00\x02\xc3\xa9"
    b"C\x00\x00\x00\rSELECT 1\x00"
    b"Z\x00\x00\x00\x05I"
)
SERVER_ERROR = (
    b'E\x00\x00\x00gSERROR\x00VERROR\x00C42703\x00Mcolumn "nope" does not exist\x00P8\x00'
    b"Fparse_relation.c\x00L3665\x00RerrorMissingColumn\x00\x00"
    b"Z\x00\x00\x00\x05I"
)
SCRAM_CLIENT = [
    b"p\x00\x00\x006SCRAM-SHA-256\x00\x00\x00\x00 n,,n=,r=Rws+b9m/KJuBF3xGerJbfBGo",
    b"p\x00\x00\x00lc=biws,r=Rws+b9m/KJuBF3xGerJbfBGoZkNHRuBaoXQmPeuAerLJTHTJ,"
    b"p=zHiDyWVVd2UzHFIbGWVhbcNIQ20DcP8pBGB/bQIMimA=",
]
SCRAM_SERVER = [
    b"R\x00\x00\x00\x17\x00\x00\x00\nSCRAM-SHA-256\x00\x00",
    b"R\x00\x00\x00\\\x00\x00\x00\x0br=Rws+b9m/KJuBF3xGerJbfBGoZkNHRuBaoXQmPeuAerLJTHTJ,"
    b"s=rS7JKBFklKKMgsZOLTX9tQ==,i=4096",
    b"R\x00\x00\x006\x00\x00\x00\x0cv=PierZ9T/4LYO5DlpOKzAqnaftvbNNsZTIlESeVeIJPE=",
]
ASYNCPG_PREPARE = (
    b"P\x00\x00\x00@__asyncpg_stmt_1__\x00select $1::int + 1 as n, $2::text as t\x00\x00\x00"
    b"D\x00\x00\x00\x18S__asyncpg_stmt_1__\x00"
    b"H\x00\x00\x00\x04"
)
SERVER_DESCRIBED = (
    b"1\x00\x00\x00\x04"
    b"t\x00\x00\x00\x0e\x00\x02\x00\x00\x00\x17\x00\x00\x00\x19"
    b"T\x00\x00\x00.\x00\x02"
    b"n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"
    b"t\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00"
)
ASYNCPG_EXECUTE = (
    b"B\x00\x00\x000\x00__asyncpg_stmt_1__\x00\x00\x02\x00\x01\x00\x01\x00\x02"
    b"\x00\x00\x00\x04\x00\x00\x00)\xff\xff\xff\xff\x00\x01\x00\x01"
    b"E\x00\x00\x00\t\x00\x00\x00\x00\x00"
    b"S\x00\x00\x00\x04"
)
SERVER_EXECUTED = (
    b"2\x00\x00\x00\x04"
    b"D\x00\x00\x00\x12\x00\x02\x00\x00\x00\x04\x00\x00\x00*\xff\xff\xff\xff"
    b"C\x00\x00\x00\rSELECT 1\x00"
    b"Z\x00\x00\x00\x05I"
)
SERVER_COPY_OUT = (
    b"H\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00"
    b"d\x00\x00\x00\x081\ta\n"
    b"c\x00\x00\x00\x04"
    b"C\x00\x00\x00\x0bCOPY 1\x00"
    b"Z\x00\x00\x00\x05I"
)
SERVER_NOTIFY = (
    b"C\x00\x00\x00\x0bNOTIFY\x00A\x00\x00\x00\r\x00\x00\x05\x03c\x00hi\x00Z\x00\x00\x00\x05I"
)
SERVER_NOTICE = (
    b"N\x00\x00\x00wSNOTICE\x00VNOTICE\x00C00000\x00Mn1\x00"
    b"WPL/pgSQL function inline_code_block line 1 at RAISE\x00Fpl_exec.c\x00L3891\x00"
    b"Rexec_stmt_raise\x00\x00"
)
INT4, TEXT = 23, 25


def frames(data: bytes) -> list[pw.Frame]:
    """``data`` framed whole, checked against framing it one byte at a time."""
    whole = read_all(pw.FrameReader(), [data])
    assert read_all(pw.FrameReader(), one_by_one(data)) == whole
    assert b"".join(frame.raw for frame in whole) == data
    return whole


def backend(data: bytes) -> list[pw.BackendMessage | None]:
    """Every message of a server stream, decoded."""
    return [pw.decode_backend(frame) for frame in frames(data)]


def test_psql_startup() -> None:
    reader = pw.FrameReader()
    reader.feed(PSQL_SSL_REQUEST + PSQL_STARTUP)
    assert reader.next_startup() == pw.SSLRequest()
    params = {"user": "postgres", "database": "postgres", "application_name": "psql"}
    assert reader.next_startup() == pw.StartupMessage(pw.PROTOCOL_3_0, params)
    assert pw.ssl_request() == PSQL_SSL_REQUEST
    assert pw.startup_message(params) == PSQL_STARTUP


def test_server_welcome() -> None:
    messages = backend(SERVER_WELCOME)
    assert messages[0] == pw.Authentication(pw.AUTH_OK, b"")
    assert messages[10] == pw.ParameterStatus("server_version", "15.18 (Debian 15.18-0+deb12u1)")
    assert messages[-2] == pw.BackendKeyData(1056, b"\xcd2\xe4\x1d")
    assert messages[-1] == pw.ReadyForQuery("I")
    assert pw.backend_key_data(1056, b"\xcd2\xe4\x1d") == frames(SERVER_WELCOME)[-2].raw


def test_simple_query_result() -> None:
    assert pw.decode_frontend(frames(PSQL_QUERY)[0]) == pw.Query(
        "select 1 as one, null::text as n, 'é'::text as e"
    )
    fields = (
        pw.Field("one", 0, 0, INT4, 4, -1, 0),
        pw.Field("n", 0, 0, TEXT, -1, -1, 0),
        pw.Field("e", 0, 0, TEXT, -1, -1, 0),
    )
    row = frames(SERVER_RESULT)[1]
    assert backend(SERVER_RESULT) == [
        pw.RowDescription(fields),
        None,
        pw.CommandComplete("SELECT 1"),
        pw.ReadyForQuery("I"),
    ]
    assert pw.data_row_columns(row.body) == 3
    assert pw.data_row_values(row) == (b"1", None, "é".encode())
    assert (
        pw.row_description(fields) + pw.data_row([b"1", None, "é".encode()])
        == (SERVER_RESULT[: len(SERVER_RESULT) - 20])
    )


def test_server_error() -> None:
    error = backend(SERVER_ERROR)[0]
    assert isinstance(error, pw.ErrorResponse)
    assert (error.severity, error.sqlstate) == ("ERROR", "42703")
    assert error.message == 'column "nope" does not exist'
    assert error.fields["P"] == "8"
    assert pw.fields_message(b"E", error.fields) == frames(SERVER_ERROR)[0].raw


def test_scram_exchange() -> None:
    sasl, first, final = backend(b"".join(SCRAM_SERVER))
    assert isinstance(sasl, pw.Authentication) and sasl.code == pw.AUTH_SASL
    assert pw.sasl_mechanisms(sasl.data) == ["SCRAM-SHA-256"]
    assert isinstance(first, pw.Authentication) and first.code == pw.AUTH_SASL_CONTINUE
    assert first.data.endswith(b",i=4096")
    assert isinstance(final, pw.Authentication) and final.code == pw.AUTH_SASL_FINAL
    initial, response = frames(b"".join(SCRAM_CLIENT))
    mechanism, data = pw.parse_sasl_initial(initial)
    assert (mechanism, data) == ("SCRAM-SHA-256", b"n,,n=,r=Rws+b9m/KJuBF3xGerJbfBGo")
    assert pw.sasl_initial_response(mechanism, data) == SCRAM_CLIENT[0]
    answer = pw.decode_frontend(response)
    assert isinstance(answer, pw.PasswordMessage) and answer.data.startswith(b"c=biws,")
    assert pw.sasl_response(answer.data) == SCRAM_CLIENT[1]
    assert pw.authentication_sasl(["SCRAM-SHA-256"]) == SCRAM_SERVER[0]
    assert pw.authentication_sasl_continue(first.data) == SCRAM_SERVER[1]
    assert pw.authentication_sasl_final(final.data) == SCRAM_SERVER[2]


def test_asyncpg_extended_protocol() -> None:
    sql = "select $1::int + 1 as n, $2::text as t"
    statement = "__asyncpg_stmt_1__"
    assert [pw.decode_frontend(f) for f in frames(ASYNCPG_PREPARE)] == [
        pw.Parse(statement, sql, ()),
        pw.Describe("S", statement),
        None,
    ]
    assert pw.parse(statement, sql) + pw.describe("S", statement) + pw.flush() == ASYNCPG_PREPARE
    assert backend(SERVER_DESCRIBED) == [
        None,
        pw.ParameterDescription((INT4, TEXT)),
        pw.RowDescription(  # Describe of a statement reports text (0): formats come at Bind
            (pw.Field("n", 0, 0, INT4, 4, -1, 0), pw.Field("t", 0, 0, TEXT, -1, -1, 0))
        ),
    ]
    bind = pw.Bind("", statement, (1, 1), (b"\x00\x00\x00)", None), (1,))
    assert [pw.decode_frontend(f) for f in frames(ASYNCPG_EXECUTE)] == [
        bind,
        pw.Execute("", 0),
        None,
    ]
    encoded = pw.bind("", statement, bind.params, (1, 1), (1,)) + pw.execute("") + pw.sync()
    assert encoded == ASYNCPG_EXECUTE
    assert backend(SERVER_EXECUTED) == [
        None,
        None,
        pw.CommandComplete("SELECT 1"),
        pw.ReadyForQuery("I"),
    ]
    assert pw.data_row_values(frames(SERVER_EXECUTED)[1]) == (b"\x00\x00\x00*", None)


def test_copy_notify_notice() -> None:
    assert backend(SERVER_COPY_OUT) == [
        pw.CopyResponse("H", 0, (0, 0)),
        None,
        None,
        pw.CommandComplete("COPY 1"),
        pw.ReadyForQuery("I"),
    ]
    assert pw.copy_response("H", 0, (0, 0)) == frames(SERVER_COPY_OUT)[0].raw
    notify = backend(SERVER_NOTIFY)[1]
    assert notify == pw.NotificationResponse(1283, "c", "hi")
    assert pw.notification_response(1283, "c", "hi") == frames(SERVER_NOTIFY)[1].raw
    notice = backend(SERVER_NOTICE)[0]
    assert isinstance(notice, pw.NoticeResponse)
    assert (notice.severity, notice.sqlstate, notice.message) == ("NOTICE", "00000", "n1")


def test_hand_written_from_the_message_format_tables() -> None:
    # CancelRequest: Int32(16), Int32(80877102), Int32 pid, Int32 key
    cancel = b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x04\x20\xcd\x32\xe4\x1d"
    assert pw.parse_startup(cancel[4:]) == pw.CancelRequest(1056, b"\xcd\x32\xe4\x1d")
    assert pw.cancel_request(1056, b"\xcd\x32\xe4\x1d") == cancel
    # GSSENCRequest: Int32(8), Int32(80877104)
    assert pw.gssenc_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x30"
    # AuthenticationMD5Password: Byte1('R'), Int32(12), Int32(5), Byte4 salt
    md5 = b"R\x00\x00\x00\x0c\x00\x00\x00\x05\x9a\x1b\x2c\x3d"
    assert pw.authentication_md5(b"\x9a\x1b\x2c\x3d") == md5
    assert backend(md5) == [pw.Authentication(pw.AUTH_MD5, b"\x9a\x1b\x2c\x3d")]
    # AuthenticationCleartextPassword: Byte1('R'), Int32(8), Int32(3)
    assert pw.authentication_cleartext_password() == b"R\x00\x00\x00\x08\x00\x00\x00\x03"
    # Sync, Flush, Terminate, NoData, EmptyQueryResponse: Byte1 + Int32(4)
    assert pw.sync() + pw.flush() + pw.terminate() == b"S\0\0\0\x04H\0\0\0\x04X\0\0\0\x04"
    assert pw.no_data() + pw.empty_query_response() == b"n\0\0\0\x04I\0\0\0\x04"
    # Close: Byte1('C'), Int32 len, Byte1 'S'/'P', String name
    assert pw.close("S", "s1") == b"C\x00\x00\x00\x08Ss1\x00"
    # NegotiateProtocolVersion: Byte1('v'), Int32 len, Int32 newest minor, Int32 n, String[n]
    negotiate = b"v\x00\x00\x00\x13\x00\x00\x00\x00\x00\x00\x00\x01_pq_.x\x00"
    assert backend(negotiate) == [pw.NegotiateProtocolVersion(0, ("_pq_.x",))]
