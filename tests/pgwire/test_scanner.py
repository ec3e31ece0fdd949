"""Scanner: bulk messages come back as counted runs, the rest as frames, bytes unchanged."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion import pgwire as pw
from tests.pgwire.streams import BACKEND, FRONTEND, one_by_one

STREAM = b"".join(BACKEND)
ROWS = [pw.data_row([str(i).encode(), b"x" * (i % 7)]) for i in range(50)]
RESULT = [pw.row_description([]), *ROWS, pw.command_complete("SELECT 50")]


def scan_all(scanner: pw.Scanner, chunks: list[bytes]) -> tuple[bytes, list[pw.Frame | pw.Run]]:
    """Feed every chunk; the bytes to forward and the items, in order."""
    data = bytearray()
    items: list[pw.Frame | pw.Run] = []
    for chunk in chunks:
        scan = scanner.feed(chunk)
        assert scan.error is None
        data += scan.data
        items.extend(scan.items)
    return bytes(data), items


def shape(items: list[pw.Frame | pw.Run]) -> list[object]:
    """Frames as their type, runs as their count: adjacent runs merged (chunking splits them)."""
    out: list[object] = []
    for item in items:
        if isinstance(item, pw.Run):
            if out and isinstance(out[-1], int):
                out[-1] += item.messages
            else:
                out.append(item.messages)
        else:
            out.append(item.type)
    return out


def test_a_result_is_one_run_between_its_frames() -> None:
    data = b"".join(RESULT)
    forwarded, items = scan_all(pw.Scanner(b"D"), [data])
    assert forwarded == data
    assert shape(items) == [b"T", 50, b"C"]
    run = items[1]
    assert isinstance(run, pw.Run)
    assert bytes(run.raw) == b"".join(ROWS)


@pytest.mark.parametrize("messages", [BACKEND, FRONTEND, RESULT])
@pytest.mark.parametrize("bulk", [b"D", b"d", b"Dd"])
def test_whole_one_byte_at_a_time_and_with_trailing_data(
    messages: list[bytes], bulk: bytes
) -> None:
    data = b"".join(messages)
    whole, items = scan_all(pw.Scanner(bulk), [data])
    assert whole == data
    expected = shape(items)

    scanner = pw.Scanner(bulk)
    forwarded, pieces = scan_all(scanner, one_by_one(data))
    assert forwarded == data
    assert shape(pieces) == expected
    assert scanner.buffered == 0

    for tail in (b"Z", b"Z\x00\x00", b"Z\x00\x00\x00\x05", messages[-1][:-1]):
        scanner = pw.Scanner(bulk)
        forwarded, pieces = scan_all(scanner, [data + tail])
        assert forwarded == data
        assert shape(pieces) == expected
        assert scanner.buffered == len(tail)
        with pytest.raises(pw.ProtocolError, match="inside a message"):
            scanner.feed_eof()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(STREAM)]
    chunks = [STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    forwarded, items = scan_all(pw.Scanner(b"D"), chunks)
    assert forwarded == STREAM
    assert shape(items) == shape(scan_all(pw.Scanner(b"D"), [STREAM])[1])


def test_a_message_split_across_many_chunks_is_gathered_once() -> None:
    big = pw.data_row([b"y" * 1_000_000])
    scanner = pw.Scanner(b"D")
    step = 65536
    for start in range(0, len(big) - step, step):
        scan = scanner.feed(big[start : start + step])
        assert scan.items == [] and bytes(scan.data) == b""
        assert scanner.buffered == start + step
    scan = scanner.feed(big[len(big) // step * step :] + pw.command_complete("SELECT 1"))
    assert bytes(scan.data) == big + pw.command_complete("SELECT 1")
    assert shape(scan.items) == [1, b"C"]
    assert scanner.buffered == 0


@pytest.mark.parametrize("length", [0, 3, 2**31 - 1, 2**32 - 1])
def test_bad_lengths_end_the_scan_after_the_good_messages(length: int) -> None:
    good = b"".join(RESULT)
    bad = b"D" + length.to_bytes(4, "big") + b"rest"
    scanner = pw.Scanner(b"D", max_message=1 << 20)
    scan = scanner.feed(good + bad)
    assert bytes(scan.data) == good
    assert shape(scan.items) == [b"T", 50, b"C"]
    assert scan.error is not None and scan.error.sqlstate == "08P01"
    with pytest.raises(pw.ProtocolError):
        scanner.feed(b"more")


def test_a_huge_length_is_refused_from_its_header_alone() -> None:
    scanner = pw.Scanner(b"D", max_message=1024)
    for byte in one_by_one(b"D\x00\x01\x00\x00")[:-1]:
        assert scanner.feed(byte).error is None
    scan = scanner.feed(b"\x00")
    assert scan.error is not None and "exceeds the limit of 1024" in scan.error.message
    assert scanner.buffered == 0


def test_bulk_types_and_limit_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pw.Scanner(b"")
    with pytest.raises(ValueError, match="max_message"):
        pw.Scanner(b"D", max_message=3)
