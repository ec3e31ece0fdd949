"""The fuzz target and arbitrary bytes: the codec raises ProtocolError and nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion import pgwire as pw
from tests.pgwire import fuzz_codec


def test_fuzz_target_on_random_inputs() -> None:
    fuzz_codec.random_inputs(5_000, seed=1)


@given(st.binary(max_size=400))
@settings(max_examples=500, deadline=None)
def test_fuzz_target_under_hypothesis(data: bytes) -> None:
    fuzz_codec.one_input(data)


def only_protocol_errors(call: Callable[[], object]) -> None:
    """Call it; ProtocolError is the only exception allowed out."""
    with contextlib.suppress(pw.ProtocolError):
        call()


@given(st.binary(max_size=200), st.integers(min_value=1, max_value=20))
@settings(deadline=None)
def test_frame_reader_on_arbitrary_bytes(data: bytes, step: int) -> None:
    reader = pw.FrameReader(max_message=4096)

    def run() -> None:
        for start in range(0, len(data), step):
            reader.feed(data[start : start + step])
            for frame in reader.frames():
                only_protocol_errors(partial(pw.decode_frontend, frame))
                only_protocol_errors(partial(pw.decode_backend, frame))
            assert reader.buffered <= 4096 + 5

    only_protocol_errors(run)


@given(st.binary(max_size=200))
@settings(deadline=None)
def test_parse_startup_on_arbitrary_bytes(data: bytes) -> None:
    only_protocol_errors(lambda: pw.parse_startup(data))
    only_protocol_errors(lambda: pw.parse_startup((196608).to_bytes(4, "big") + data))


@given(st.sampled_from(b"QPBEDCpFfdcSHX"), st.binary(max_size=200))
@settings(deadline=None)
def test_decode_frontend_on_arbitrary_bodies(type_: int, body: bytes) -> None:
    frame = pw.Frame(bytes((type_,)), bytes((type_,)) + (len(body) + 4).to_bytes(4, "big") + body)
    only_protocol_errors(lambda: pw.decode_frontend(frame))


@given(st.sampled_from(b"RSKZTCENGHWAvtVD123nsIdc"), st.binary(max_size=200))
@settings(deadline=None)
def test_decode_backend_on_arbitrary_bodies(type_: int, body: bytes) -> None:
    frame = pw.Frame(bytes((type_,)), bytes((type_,)) + (len(body) + 4).to_bytes(4, "big") + body)
    only_protocol_errors(lambda: pw.decode_backend(frame))
    only_protocol_errors(lambda: pw.data_row_values(frame))


@given(st.binary(min_size=2, max_size=50))
@settings(deadline=None)
def test_data_row_columns_on_arbitrary_bytes(body: bytes) -> None:
    only_protocol_errors(lambda: pw.data_row_columns(memoryview(body)))
