"""FrameReader: whole streams, byte at a time, trailing data, and every bad length."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion import pgwire as pw
from tests.pgwire.streams import BACKEND, FRONTEND, one_by_one, read_all

STREAM = b"".join(BACKEND)


def tr(messages: list[bytes]) -> None:
    """h11's habit: the whole stream, one byte at a time, and with trailing partial data."""
    data = b"".join(messages)
    whole = read_all(pw.FrameReader(), [data])
    assert [frame.raw for frame in whole] == messages
    assert [frame.type for frame in whole] == [m[:1] for m in messages]

    reader = pw.FrameReader()
    assert read_all(reader, one_by_one(data)) == whole
    assert reader.buffered == 0

    for tail in (b"Z", b"Z\x00\x00", b"Z\x00\x00\x00\x05", messages[-1][:-1]):
        reader = pw.FrameReader()
        assert read_all(reader, [data + tail]) == whole
        assert reader.buffered == len(tail)
        assert reader.take_buffered() == tail
        assert reader.buffered == 0


def test_backend_stream() -> None:
    tr(BACKEND)


def test_frontend_stream() -> None:
    tr(FRONTEND)


def test_frame_body_is_a_view_of_raw() -> None:
    frame = read_all(pw.FrameReader(), [pw.query("SELECT 1")])[0]
    assert isinstance(frame.body, memoryview)
    assert frame.body.tobytes() == b"SELECT 1\0"
    assert frame.raw == pw.query("SELECT 1")


def test_a_whole_chunk_message_is_not_copied() -> None:
    data = pw.query("SELECT 1")
    reader = pw.FrameReader()
    reader.feed(data)
    frame = reader.next_frame()
    assert frame is not None and frame.raw is data


def test_next_frame_one_at_a_time() -> None:
    reader = pw.FrameReader()
    reader.feed(STREAM)
    raws = []
    while (frame := reader.next_frame()) is not None:
        raws.append(frame.raw)
    assert raws == BACKEND
    assert reader.next_frame() is None


def test_a_message_split_across_many_chunks() -> None:
    big = pw.copy_data(b"x" * 100_000)
    chunks = [big[i : i + 7_000] for i in range(0, len(big), 7_000)]
    reader = pw.FrameReader()
    frames = read_all(reader, [pw.sync(), *chunks, pw.sync()])
    assert [f.raw for f in frames] == [pw.sync(), big, pw.sync()]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
@settings(deadline=None)
def test_any_split_gives_the_same_frames(cuts: list[int]) -> None:
    points = sorted({0, *cuts, len(STREAM)})
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(points)]
    reader = pw.FrameReader()
    assert [f.raw for f in read_all(reader, chunks)] == BACKEND
    assert reader.buffered == 0


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
@settings(deadline=None)
def test_any_split_fed_without_draining_gives_the_same_frames(cuts: list[int]) -> None:
    points = sorted({0, *cuts, len(STREAM)})
    reader = pw.FrameReader()
    for a, b in itertools.pairwise(points):
        reader.feed(STREAM[a:b])
    assert [f.raw for f in reader.frames()] == BACKEND


@pytest.mark.parametrize("length", [0, 3, -1, 2**31 - 1, 64 * 1024 * 1024 + 1])
def test_bad_lengths_are_refused(length: int) -> None:
    reader = pw.FrameReader()
    reader.feed(b"Q" + length.to_bytes(4, "big", signed=True) + b"SELECT")
    with pytest.raises(pw.ProtocolError) as caught:
        reader.next_frame()
    assert str(length) in caught.value.message
    assert caught.value.sqlstate == "08P01"
    assert reader.buffered < 16  # nothing was allocated for the claimed body
    with pytest.raises(pw.ProtocolError):  # the reader stays broken
        reader.frames()


def test_a_huge_length_fed_one_byte_at_a_time_never_buffers_its_body() -> None:
    reader = pw.FrameReader()
    header = b"d" + (2**31 - 1).to_bytes(4, "big")
    with pytest.raises(pw.ProtocolError, match="exceeds the limit"):
        read_all(reader, one_by_one(header + b"x" * 100))
    assert reader.buffered <= 5


def test_configured_limit() -> None:
    reader = pw.FrameReader(max_message=100)
    ok = pw.copy_data(b"x" * 95)  # length field 99
    reader.feed(ok + pw.copy_data(b"x" * 97))
    assert reader.next_frame() == pw.Frame(b"d", ok)
    with pytest.raises(pw.ProtocolError, match="101 exceeds the limit of 100"):
        reader.next_frame()
    with pytest.raises(ValueError):
        pw.FrameReader(max_message=3)


def test_good_frames_before_a_bad_length_are_returned_first() -> None:
    reader = pw.FrameReader()
    reader.feed(pw.sync() + b"Q\x00\x00\x00\x00")
    assert [f.raw for f in reader.frames()] == [pw.sync()]
    with pytest.raises(pw.ProtocolError, match="invalid message length 0"):
        reader.frames()


def test_truncated_stream_at_eof() -> None:
    reader = pw.FrameReader()
    read_all(reader, [pw.sync(), pw.query("SELECT 1")[:-2]])
    with pytest.raises(pw.ProtocolError, match="closed inside a message"):
        reader.feed_eof()
    clean = pw.FrameReader()
    read_all(clean, [pw.sync()])
    clean.feed_eof()


def test_feeding_without_draining_is_bounded() -> None:
    reader = pw.FrameReader(max_message=1000)
    reader.feed(pw.sync() * 100)
    reader.feed(b"S")  # 500 bytes held: fine
    reader.feed(pw.sync() * 300)
    with pytest.raises(RuntimeError, match="drain"):
        reader.feed(b"S")


def test_startup_packets() -> None:
    data = pw.ssl_request() + pw.startup_message({"user": "alice", "database": "orders"})
    reader = pw.FrameReader()
    packets: list[pw.StartupPacket] = []
    for byte in one_by_one(data + pw.query("SELECT 1")):
        reader.feed(byte)
        if len(packets) < 2 and (packet := reader.next_startup()) is not None:
            packets.append(packet)
    assert packets == [
        pw.SSLRequest(),
        pw.StartupMessage(pw.PROTOCOL_3_0, {"user": "alice", "database": "orders"}),
    ]
    assert [f.raw for f in reader.frames()] == [pw.query("SELECT 1")]


def test_bytes_after_ssl_request_are_visible() -> None:
    reader = pw.FrameReader()
    reader.feed(pw.ssl_request() + b"\x16\x03\x01")
    assert reader.next_startup() == pw.SSLRequest()
    assert reader.take_buffered() == b"\x16\x03\x01"


@pytest.mark.parametrize("length", [0, 4, 7, 10_001, 2**31 - 1, -8])
def test_bad_startup_lengths_are_refused(length: int) -> None:
    reader = pw.FrameReader()
    reader.feed(length.to_bytes(4, "big", signed=True) + b"\x00\x03\x00\x00")
    with pytest.raises(pw.ProtocolError, match="startup packet length"):
        reader.next_startup()
    assert reader.buffered <= 8


def test_startup_at_the_limit_is_accepted_and_over_it_refused() -> None:
    def packet(size: int) -> bytes:
        filler = "x" * (size - len(pw.startup_message({"user": "u", "o": ""})))
        return pw.startup_message({"user": "u", "o": filler})

    assert len(packet(pw.MAX_STARTUP)) == pw.MAX_STARTUP
    reader = pw.FrameReader()
    reader.feed(packet(pw.MAX_STARTUP))
    assert isinstance(reader.next_startup(), pw.StartupMessage)
    reader = pw.FrameReader()
    reader.feed(packet(pw.MAX_STARTUP + 1)[:10])
    with pytest.raises(pw.ProtocolError, match="10001 exceeds the limit of 10000"):
        reader.next_startup()
