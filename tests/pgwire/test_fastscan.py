"""The compiled message splitter gives the same frames, runs, stopping point and errors as the
Python reference for any bytes, any bulk types and any limit (Hypothesis), fed whole or cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion import pgwire as pw
from bastion.pgwire import _fastscan
from bastion.pgwire.scanner import Scanner
from tests.pgwire.streams import BACKEND, FRONTEND

TYPES = st.sampled_from(b"DdTCZEINSsQPBX\x00\xff")
BODIES = st.binary(max_size=40)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Well-formed messages, sometimes with a damaged header or a cut tail."""
    parts = [bytes([draw(TYPES)]) + (len(body) + 4).to_bytes(4, "big") + body
             for body in draw(st.lists(BODIES, max_size=12))]  # fmt: skip
    data = b"".join(parts + draw(st.lists(st.sampled_from(BACKEND + FRONTEND), max_size=4)))
    damage = draw(st.sampled_from(["none", "cut", "length", "noise"]))
    if damage == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "length":
        length = draw(st.sampled_from([0, 3, 2**31 - 1, -1 & 0xFFFFFFFF, 65]))
        data += b"Q" + length.to_bytes(4, "big") + b"SELECT"
    elif damage == "noise":
        data += draw(st.binary(max_size=30))
    return data


class PythonScanner(Scanner):
    """The reference: the same scanner with the Python loop."""

    __slots__ = ()
    _scan = Scanner._scan_python


def outcome(scanner: Scanner, chunks: list[bytes]) -> list[object]:
    """Everything a relay sees: each feed's bytes, items and error, then what stays held."""
    seen: list[object] = []
    for chunk in chunks:
        try:
            scan = scanner.feed(chunk)
        except pw.ProtocolError as exc:
            seen.append(("raised", exc.message))
            break
        items = [(type(i).__name__, i[0], bytes(i[1])) for i in scan.items]
        error = None if scan.error is None else scan.error.message
        seen.append((bytes(scan.data), items, error))
    seen.append(scanner.buffered)
    return seen


@settings(max_examples=400, deadline=None)
@given(
    data=streams(),
    bulk=st.sampled_from([b"D", b"d", b"Dd", b"\x00\xff"]),
    limit=st.sampled_from([4, 20, 64 * 1024 * 1024]),
    cuts=st.lists(st.integers(0, 200)),
)
def test_compiled_and_python_scans_agree(
    data: bytes, bulk: bytes, limit: int, cuts: list[int]
) -> None:
    points = sorted({c for c in cuts if c < len(data)})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    for pieces in ([data], chunks):
        fast = outcome(Scanner(bulk, limit), pieces)
        slow = outcome(PythonScanner(bulk, limit), pieces)
        assert fast == slow


def test_a_message_that_is_the_whole_read_is_passed_on_as_is() -> None:
    message = pw.query("SELECT 1")
    [frame] = Scanner(b"d").feed(message).items
    assert isinstance(frame, pw.Frame) and frame.raw is message and frame.type == b"Q"


def test_bad_arguments_are_refused() -> None:
    table = bytes(256)
    with pytest.raises(TypeError):
        _fastscan.scan(b"", [], table[:10], 5, pw.Frame, pw.Run)
    with pytest.raises(TypeError):
        _fastscan.scan(bytearray(b"x"), [], table, 5, pw.Frame, pw.Run)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _fastscan.scan(b"", [], table, 5, int, pw.Run)  # type: ignore[arg-type]
