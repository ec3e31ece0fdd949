"""Startup-phase packets: each kind round-trips, and every malformed one is refused."""

from __future__ import annotations

import pytest

from bastion import pgwire as pw


def body(packet: bytes) -> bytes:
    """A packet without its Int32 length."""
    assert int.from_bytes(packet[:4], "big") == len(packet)
    return packet[4:]


def test_a_forwarded_cancel_is_a_cancel_under_the_nodes_own_code() -> None:
    """One bastion node hands another a client's cancel under its own code: same layout,
    marked, so the node it reaches never forwards it again."""
    plain, forwarded = (
        pw.cancel_request(77, b"abcd"),
        pw.cancel_request(77, b"abcd", forwarded=True),
    )
    assert len(forwarded) == 16 and forwarded[8:] == plain[8:]
    assert forwarded[4:8] == pw.FORWARDED_CANCEL_CODE.to_bytes(4, "big")
    assert pw.parse_startup(body(forwarded)) == pw.CancelRequest(77, b"abcd", forwarded=True)
    assert not pw.parse_startup(body(plain)).forwarded  # type: ignore[union-attr]


def test_round_trips() -> None:
    assert pw.parse_startup(body(pw.ssl_request())) == pw.SSLRequest()
    assert pw.parse_startup(body(pw.gssenc_request())) == pw.GSSENCRequest()
    assert pw.parse_startup(body(pw.cancel_request(77, b"abcd"))) == pw.CancelRequest(77, b"abcd")
    long_key = bytes(range(32))
    assert pw.parse_startup(body(pw.cancel_request(-5, long_key))) == pw.CancelRequest(-5, long_key)
    params = {"user": "alice", "database": "orders-prod", "application_name": "psql ✓"}
    message = pw.parse_startup(body(pw.startup_message(params)))
    assert message == pw.StartupMessage(196608, params)
    assert isinstance(message, pw.StartupMessage)
    assert (message.user, message.database) == ("alice", "orders-prod")
    v32 = pw.parse_startup(body(pw.startup_message({"user": "a"}, pw.PROTOCOL_3_2)))
    assert isinstance(v32, pw.StartupMessage)
    assert v32.protocol == pw.PROTOCOL_3_2 and v32.database == "a"


def test_parameter_order_is_kept() -> None:
    params = {"user": "u", "b": "1", "a": "2"}
    message = pw.parse_startup(body(pw.startup_message(params)))
    assert isinstance(message, pw.StartupMessage)
    assert list(message.params) == ["user", "b", "a"]


@pytest.mark.parametrize(
    ("version", "named"),
    [((2, 0), "2.0"), ((4, 1), "4.1"), ((0, 0), "0.0"), ((65535, 65535), "65535.65535")],
)
def test_unsupported_protocol_version_is_named(version: tuple[int, int], named: str) -> None:
    code = (version[0] << 16 | version[1]).to_bytes(4, "big")
    with pytest.raises(pw.ProtocolError, match=f"unsupported frontend protocol {named}"):
        pw.parse_startup(code + b"user\0u\0\0")


def test_unknown_request_code() -> None:
    with pytest.raises(pw.ProtocolError, match=r"unknown startup request code 1234\.5681"):
        pw.parse_startup((1234 << 16 | 5681).to_bytes(4, "big"))


V3 = (196608).to_bytes(4, "big")


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", "truncated startup"),
        (b"\x00\x03", "truncated startup"),
        (V3, "no terminator"),
        (V3 + b"user\0alice\0", "no terminator"),
        (V3 + b"user\0alice", "unterminated string"),
        (V3 + b"user\0", "has no value"),
        (V3 + b"\0", "no user name"),
        (V3 + b"database\0d\0\0", "no user name"),
        (V3 + b"user\0\0\0", "no user name"),
        (V3 + b"user\0a\0user\0b\0\0", "given twice"),
        (V3 + b"user\0\xff\xfe\0\0", "invalid UTF-8"),
        (V3 + b"user\0a\0\0junk", "trailing bytes"),
        (V3 + b"user\0a\0\0\0", "trailing bytes"),
        (pw.ssl_request()[4:] + b"\x16", "trailing bytes"),
        (pw.gssenc_request()[4:] + b"x", "trailing bytes"),
        (pw.cancel_request(1, b"abcd")[4:-1], "key of 3 bytes"),
        (pw.cancel_request(1, b"abcd")[4:8], "truncated startup"),
        (pw.cancel_request(1, b"k" * 256)[4:] + b"k", "key of 257 bytes"),
    ],
)
def test_malformed_packets(payload: bytes, error: str) -> None:
    with pytest.raises(pw.ProtocolError, match=error):
        pw.parse_startup(payload)


def test_encoders_refuse_misuse() -> None:
    with pytest.raises(ValueError):
        pw.startup_message({"user": "a\0b"})
    with pytest.raises(ValueError):
        pw.cancel_request(1, b"abc")
