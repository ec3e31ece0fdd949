"""The PROXY header reader on bytes: whole, byte by byte, with trailing data, and fuzzed."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bastion.proxyproto import (
    V1_MAX,
    V2_MAX,
    V2_SIGNATURE,
    HeaderError,
    HeaderReader,
    ProxyHeader,
    encode_v1,
    encode_v2,
)

CLIENT_HELLO = b"SSH-2.0-OpenSSH_9.2\r\n"


def read(data: bytes, step: int | None = None) -> HeaderReader:
    """Feed the way a door does: never more than wanted() (or `step` bytes at a time)."""
    reader = HeaderReader()
    at = 0
    while reader.header is None:
        size = step or reader.wanted()
        chunk = data[at : at + size]
        if not chunk:
            raise EOFError
        at += len(chunk)
        reader.feed(chunk)
    return reader


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def test_v2_tcp4_gives_the_client_and_leaves_its_first_byte_unread() -> None:
    header = encode_v2("203.0.113.7", 51000, "10.0.0.5", 2222)
    reader = HeaderReader()
    fed = 0
    while reader.header is None:
        want = reader.wanted()
        reader.feed((header + CLIENT_HELLO)[fed : fed + want])
        fed += want
    assert fed == len(header)
    assert reader.header == ProxyHeader(2, "203.0.113.7", 51000)
    assert reader.rest == b""


@pytest.mark.parametrize("step", [1, 2, 7, 4096])
def test_v2_tcp6_with_tlvs_in_any_pieces_keeps_the_trailing_bytes(step: int) -> None:
    tlvs = tlv(0x01, b"h2") + tlv(0x20, b"\x01" + b"\x00" * 4) + tlv(0x04, b"")
    header = encode_v2("2001:db8::1", 443, "2001:db8::2", 6432, tlvs)
    reader = HeaderReader()
    data = header + CLIENT_HELLO
    for at in range(0, len(data), step):
        reader.feed(data[at : at + step])
    assert reader.header == ProxyHeader(2, "2001:db8::1", 443)
    assert reader.rest == CLIENT_HELLO


def test_an_ipv4_client_behind_an_ipv6_balancer_counts_as_ipv4() -> None:
    assert read(encode_v2("::ffff:198.51.100.9", 1, "::1", 2)).header == ProxyHeader(
        2, "198.51.100.9", 1
    )


def test_local_is_the_balancer_itself_whatever_addresses_follow() -> None:
    assert read(v2(0, 0x00, b"")).header == ProxyHeader(2, local=True)
    assert read(v2(0, 0x11, b"\x01" * 12)).header == ProxyHeader(2, local=True)


def test_unspec_and_unix_give_no_client_address() -> None:
    assert read(v2(1, 0x00, b"")).header == ProxyHeader(2)
    assert read(v2(1, 0x31, b"/run/a".ljust(108, b"\0") * 2)).header == ProxyHeader(2)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", "not a PROXY"),
        (b"\x00\x00\x00\x08\x04\xd2\x16\x2f" + b"\0" * 8, "not a PROXY"),  # SSLRequest
        (b"GET /healthz HTTP/1.1\r\n", "not a PROXY"),
        (V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\0" * 12, "version 1"),
        (v2(2, 0x11, b"\0" * 12), "unknown command"),
        (v2(1, 0x12, b"\0" * 12), "unsupported family"),  # UDP
        (v2(1, 0x41, b"\0" * 12), "unsupported family"),
        (v2(1, 0x11, b"\0" * 11), "shorter than its addresses"),
        (v2(1, 0x21, b"\0" * 35), "shorter than its addresses"),
        (v2(1, 0x11, b"\0" * 12 + b"\x01\x00"), "truncated TLV"),
        (v2(1, 0x11, b"\0" * 12 + b"\x01\x00\x05ab"), "longer than the header"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", "at most"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "malformed"),
        (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "malformed"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "malformed"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "above 65535"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "bad TCP4"),
        (b"PROXY TCP4 ::1 ::1 1 2\r\n", "bad TCP4"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad TCP6"),
        (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "scoped"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \xff\r\n", "non-ASCII"),
        (b"PROXY UNKNOWN \x01\r\n", "non-printable"),
        (b"PROXY UNKNOWNX\r\n", "malformed"),
        (b"PROXY " + b"A" * V1_MAX, "longer than 107"),
    ],
)
def test_garbage_is_refused_whole_and_byte_by_byte(data: bytes, why: str) -> None:
    with pytest.raises(HeaderError, match=why):
        HeaderReader().feed(data)
    with pytest.raises(HeaderError, match=why):
        read(data, step=1)


def test_v1_lines() -> None:
    assert read(encode_v1("192.0.2.1", 5, "192.0.2.2", 22)).header == ProxyHeader(1, "192.0.2.1", 5)
    assert read(encode_v1("2001:db8::9", 65535, "::1", 0)).header == ProxyHeader(
        1, "2001:db8::9", 65535
    )
    assert read(b"PROXY UNKNOWN\r\n").header == ProxyHeader(1)
    assert read(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").header == ProxyHeader(1)


def test_a_v1_line_of_exactly_107_bytes_is_read_and_one_more_is_not() -> None:
    address = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {address} {address} 65535 65535\r\n".encode()
    assert len(line) == 104
    assert read(line).header == ProxyHeader(1, address, 65535)
    unknown = b"PROXY UNKNOWN " + b"x" * (V1_MAX - 16) + b"\r\n"
    assert len(unknown) == V1_MAX
    assert read(unknown).header == ProxyHeader(1)
    with pytest.raises(HeaderError, match="longer than 107"):
        read(b"PROXY UNKNOWN " + b"x" * (V1_MAX - 15) + b"\r\n", step=1)


def test_the_biggest_v2_header_is_read_and_never_more_is_asked() -> None:
    body = b"\x0a\0\0\x01" + b"\0" * 8 + tlv(0xE0, b"x" * (V2_MAX - 16 - 12 - 3))
    header = v2(1, 0x11, body)
    assert len(header) == V2_MAX
    assert read(header).header == ProxyHeader(2, "10.0.0.1", 0)
    with pytest.raises(HeaderError, match="at most"):
        read(v2(1, 0x11, body + b"\0"))


def test_a_truncated_header_asks_for_more_and_never_answers() -> None:
    for data in (encode_v2("192.0.2.1", 1, "192.0.2.2", 2), encode_v1("192.0.2.1", 1, "::", 2)):
        for cut in range(len(data)):
            reader = HeaderReader()
            assert reader.feed(data[:cut]) is None
            assert reader.wanted() > 0


# -- fuzzing ---------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_or_a_header_error_or_ask_for_more(data: bytes) -> None:
    reader = HeaderReader()
    try:
        found = reader.feed(data)
    except HeaderError:
        return
    if found is None:
        assert 0 < reader.wanted() <= V2_MAX
        assert len(data) < V2_MAX
    else:
        assert found.source is None or found.version in (1, 2)


@given(st.binary(max_size=64), st.integers(0, 0xFFFF), st.integers(0, 0xFF))
def test_any_v2_body_is_read_or_refused_and_never_over_read(
    body: bytes, length: int, family: int
) -> None:
    data = V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", length) + body
    reader = HeaderReader()
    used = 0
    try:
        while reader.header is None and used < len(data):
            want = reader.wanted()
            assert want > 0
            reader.feed(data[used : used + want])
            used += want
    except HeaderError:
        return
    if reader.header is not None:
        assert used == 16 + length
        assert reader.rest == b""


@given(
    st.ip_addresses(),
    st.integers(0, 0xFFFF),
    st.lists(st.tuples(st.integers(0, 0xFF), st.binary(max_size=40)), max_size=5),
    st.booleans(),
)
@example(ipaddress.ip_address("::ffff:0:0"), 0, [], False)  # read back as 0.0.0.0
def test_any_tcp_header_round_trips(
    address: object, port: int, tlvs: list[tuple[int, bytes]], text: bool
) -> None:
    source = str(address)
    dest = "192.0.2.1" if ":" not in source else "2001:db8::1"
    if text:
        data = encode_v1(source, port, dest, 22)
    else:
        data = encode_v2(source, port, dest, 22, b"".join(tlv(k, v) for k, v in tlvs))
    header = read(data + CLIENT_HELLO).header
    assert header is not None
    assert header.source_port == port
    mapped = ipaddress.ip_address(source)
    expected = mapped.ipv4_mapped if isinstance(mapped, ipaddress.IPv6Address) else None
    assert header.source == str(expected or mapped)  # a mapped IPv4 address reads as IPv4


@given(st.binary(min_size=1, max_size=200))
def test_a_v1_prefix_with_any_tail_never_reads_past_107_bytes(tail: bytes) -> None:
    reader = HeaderReader()
    data = b"PROXY " + tail
    used = 0
    try:
        while reader.header is None and used < len(data):
            want = reader.wanted()
            reader.feed(data[used : used + want])
            used += want
    except HeaderError:
        pass
    assert used <= V1_MAX
