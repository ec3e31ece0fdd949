"""Frontend messages: every encoder round-trips, and malformed bodies are refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion import pgwire as pw
from bastion.pgwire.frontend import (
    FrontendMessage,
    decode_close,
    decode_describe,
    decode_execute,
    decode_parse,
)


def frame(raw: bytes) -> pw.Frame:
    """The single frame ``raw`` holds, via the reader."""
    reader = pw.FrameReader()
    reader.feed(raw)
    frames = reader.frames()
    assert len(frames) == 1 and reader.buffered == 0
    return frames[0]


def decoded(raw: bytes) -> FrontendMessage | None:
    """``raw`` framed and decoded."""
    return pw.decode_frontend(frame(raw))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (pw.query("SELECT 'é'; SELECT 2"), pw.Query("SELECT 'é'; SELECT 2")),
        (pw.query(""), pw.Query("")),
        (pw.parse("", "SELECT 1"), pw.Parse("", "SELECT 1", ())),
        (pw.parse("s", "SELECT $1", (2**32 - 1, 23)), pw.Parse("s", "SELECT $1", (2**32 - 1, 23))),
        (pw.bind("", "", []), pw.Bind("", "", (), (), ())),
        (
            pw.bind("p", "s", [b"1", None, b""], (0, 1, 0), (1,)),
            pw.Bind("p", "s", (0, 1, 0), (b"1", None, b""), (1,)),
        ),
        (pw.bind("p", "s", [b"\x00\x01"], (1,)), pw.Bind("p", "s", (1,), (b"\x00\x01",), ())),
        (pw.describe("S", "s1"), pw.Describe("S", "s1")),
        (pw.describe("P", ""), pw.Describe("P", "")),
        (pw.execute("p"), pw.Execute("p", 0)),
        (pw.execute("", 100), pw.Execute("", 100)),
        (pw.close("P", "p"), pw.Close("P", "p")),
        (pw.close("S", ""), pw.Close("S", "")),
        (pw.password_message(b"secret123456"), pw.PasswordMessage(b"secret123456\0")),
        (pw.sasl_response(b"c=biws,r=abc"), pw.PasswordMessage(b"c=biws,r=abc")),
        (pw.copy_fail("client gave up"), pw.CopyFail("client gave up")),
        (b"F\x00\x00\x00\x0e\x00\x00\x0b\xb8\x00\x00\x00\x00\x00\x00", pw.FunctionCall(3000)),
        (pw.sync(), None),
        (pw.flush(), None),
        (pw.terminate(), None),
        (pw.copy_data(b"1\t2\n"), None),
        (pw.copy_done(), None),
    ],
)
def test_round_trip(raw: bytes, message: FrontendMessage | None) -> None:
    assert decoded(raw) == message


def test_bind_param_format_rule() -> None:
    none = pw.decode_bind(frame(pw.bind("", "", [b"a", b"b"])))
    one = pw.decode_bind(frame(pw.bind("", "", [b"a", b"b"], (1,))))
    each = pw.decode_bind(frame(pw.bind("", "", [b"a", b"b"], (1, 0))))
    assert [none.param_format(i) for i in (0, 1)] == [0, 0]
    assert [one.param_format(i) for i in (0, 1)] == [1, 1]
    assert [each.param_format(i) for i in (0, 1)] == [1, 0]


def test_password_and_sasl() -> None:
    message = decoded(pw.password_message(b"hunter2 123456"))
    assert isinstance(message, pw.PasswordMessage)
    assert message.password == "hunter2 123456"
    initial = frame(pw.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=nonce"))
    assert pw.parse_sasl_initial(initial) == ("SCRAM-SHA-256", b"n,,n=,r=nonce")
    assert pw.parse_sasl_initial(initial.body) == ("SCRAM-SHA-256", b"n,,n=,r=nonce")
    empty = frame(pw.sasl_initial_response("SCRAM-SHA-256", None))
    assert pw.parse_sasl_initial(empty) == ("SCRAM-SHA-256", None)
    sasl = decoded(pw.sasl_response(b"p=a\0b"))
    assert isinstance(sasl, pw.PasswordMessage)
    with pytest.raises(pw.ProtocolError, match="trailing bytes"):
        _ = sasl.password
    with pytest.raises(pw.ProtocolError, match="unterminated"):
        _ = pw.PasswordMessage(b"no nul").password


def test_md5_password() -> None:
    # printf secretalice | md5sum; then that hex digest + the salt bytes through md5sum
    expected = b"md5" + b"98a0412b9c31436fc53776e863350083"
    assert pw.md5_password("alice", "secret", b"\x01\x02\x03\x04") == expected
    assert pw.decode_frontend(frame(pw.password_message(expected))) == pw.PasswordMessage(
        expected + b"\0"
    )


def test_copy_messages() -> None:
    assert pw.decode_copy(b"d", frame(pw.copy_data(b"abc"))) == pw.CopyData(b"abc")
    assert pw.decode_copy(b"c", frame(pw.copy_done())) == pw.CopyDone()
    assert pw.decode_copy(b"f", frame(pw.copy_fail("no"))) == pw.CopyFail("no")
    with pytest.raises(pw.ProtocolError, match="during COPY"):
        pw.decode_copy(b"Q", frame(pw.query("x")))


def typed(type_: bytes, payload: bytes) -> pw.Frame:
    """A frame of ``type_`` around an arbitrary body."""
    return frame(type_ + (len(payload) + 4).to_bytes(4, "big") + payload)


def i16(n: int) -> bytes:
    return n.to_bytes(2, "big", signed=True)


def i32(n: int) -> bytes:
    return n.to_bytes(4, "big", signed=True)


@pytest.mark.parametrize(
    ("type_", "payload", "error"),
    [
        (b"Q", b"SELECT 1", "unterminated string in Query"),
        (b"Q", b"SELECT 1\0x", "trailing bytes in Query"),
        (b"Q", b"SELECT \xff\0", "invalid UTF-8 in Query"),
        (b"P", b"s\0SELECT 1\0", "truncated Parse message"),
        (b"P", b"s\0SELECT 1\0" + i16(2) + i32(23), "truncated Parse message"),
        (b"P", b"s\0SELECT 1\0" + i16(-1), "negative count in Parse"),
        (b"P", b"s\0SELECT 1\0" + i16(0) + b"x", "trailing bytes in Parse"),
        (b"B", b"\0\0" + i16(0) + i16(1), "truncated Bind message"),
        (b"B", b"\0\0" + i16(0) + i16(1) + i32(10) + b"abc" + i16(0), "truncated Bind message"),
        (b"B", b"\0\0" + i16(0) + i16(1) + i32(-2) + i16(0), "truncated Bind message"),
        (b"B", b"\0\0" + i16(0) + i16(32767), "truncated Bind message"),
        (b"B", b"\0\0" + i16(1) + i16(2) + i16(0) + i16(0), "unsupported format code"),
        (b"B", b"\0\0" + i16(2) + i16(0) * 2 + i16(3) + i32(-1) * 3 + i16(0), "2 formats for 3"),
        (b"B", b"\0\0" + i16(0) + i16(0) + i16(0) + b"!", "trailing bytes in Bind"),
        (b"B", b"\0", "unterminated string in Bind"),
        (b"E", b"\0" + b"\0\0\0", "truncated Execute"),
        (b"D", b"X\0", "invalid Describe kind 'X'"),
        (b"D", b"", "truncated Describe"),
        (b"C", b"S", "unterminated string in Close"),
        (b"F", b"\0\0", "truncated FunctionCall"),
        (b"f", b"oops", "unterminated string in CopyFail"),
        (b"S", b"x", "trailing bytes in Sync"),
        (b"X", b"x", "trailing bytes in Terminate"),
        (b"c", b"x", "trailing bytes in CopyDone"),
        (b"Z", b"", "unknown frontend message type b'Z'"),
        (b"\0", b"", "unknown frontend message type"),
    ],
)
def test_malformed_bodies(type_: bytes, payload: bytes, error: str) -> None:
    with pytest.raises(pw.ProtocolError, match=error):
        pw.decode_frontend(typed(type_, payload))


def test_sasl_initial_malformed() -> None:
    with pytest.raises(pw.ProtocolError, match="truncated SASLInitialResponse"):
        pw.parse_sasl_initial(b"SCRAM-SHA-256\0" + i32(10) + b"abc")
    with pytest.raises(pw.ProtocolError, match="trailing bytes in SASLInitialResponse"):
        pw.parse_sasl_initial(b"SCRAM-SHA-256\0" + i32(1) + b"ab")
    with pytest.raises(pw.ProtocolError, match="truncated SASLInitialResponse"):
        pw.parse_sasl_initial(b"SCRAM-SHA-256\0")


def test_encoders_refuse_misuse() -> None:
    with pytest.raises(ValueError):
        pw.query("a\0b")
    with pytest.raises(ValueError):
        pw.describe("X", "n")
    with pytest.raises(ValueError):
        pw.close("", "n")
    with pytest.raises(ValueError):
        pw.password_message(b"a\0b")


def test_password_is_kept_out_of_reprs() -> None:
    message = decoded(pw.password_message(b"hunter2 123456"))
    assert "hunter2" not in repr(message)


BODIES = st.one_of(st.binary(max_size=30), st.text(max_size=20).map(lambda t: t.encode() + b"\0"))


def outcome(decode: Callable[[pw.Frame], object], frame: pw.Frame) -> object:
    try:
        return decode(frame)
    except pw.ProtocolError as exc:
        return ("error", exc.message)


@given(BODIES)
def test_the_relays_query_text_agrees_with_decode_query(body: bytes) -> None:
    frame = pw.Frame(b"Q", b"Q" + (len(body) + 4).to_bytes(4, "big") + body)
    assert outcome(pw.query_text, frame) == outcome(lambda f: pw.decode_query(f).sql, frame)


@given(BODIES)
def test_the_relays_command_tag_agrees_with_decode_command_complete(body: bytes) -> None:
    frame = pw.Frame(b"C", b"C" + (len(body) + 4).to_bytes(4, "big") + body)
    expected = outcome(lambda f: pw.decode_command_complete(f).tag, frame)
    assert outcome(pw.command_tag, frame) == expected


@given(st.sampled_from([b"P", b"E", b"D", b"C"]), st.binary(max_size=40))
def test_a_repeated_message_decodes_as_the_first_time_or_fails_every_time(
    kind: bytes, body: bytes
) -> None:
    """Parse, Execute, Describe and Close are decoded once per distinct message; the same
    bytes give the same message (or the same error) however often they come."""
    raw = kind + (len(body) + 4).to_bytes(4, "big") + body
    outcomes: list[object] = []
    for _ in range(3):
        try:
            outcomes.append(pw.decode_frontend(pw.Frame(kind, raw)))
        except pw.ProtocolError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1] == outcomes[2]
    decoder = {b"P": decode_parse, b"E": decode_execute, b"D": decode_describe,
               b"C": decode_close}[kind]  # fmt: skip
    try:
        direct: object = decoder(pw.Frame(kind, raw))
    except pw.ProtocolError as exc:
        direct = str(exc)
    assert direct == outcomes[0]


def test_a_repeated_parse_is_one_message_for_every_execution() -> None:
    raw = pw.parse("", "SELECT $1")
    first, again = (pw.decode_frontend(pw.Frame(b"P", raw)) for _ in range(2))
    assert first == pw.Parse("", "SELECT $1", ()) and first is again
