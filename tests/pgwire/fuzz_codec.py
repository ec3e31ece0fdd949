"""Fuzz target for bastion.pgwire: any input may raise ProtocolError, and nothing else.

Run with atheris when installed (``python tests/pgwire/fuzz_codec.py [corpus_dir]``);
without it, the same command runs random inputs. tests/pgwire/test_fuzz.py calls
``one_input`` from pytest, so the target is exercised on every test run.
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import sys
from collections.abc import Callable
from functools import partial

from bastion import pgwire as pw
from bastion.pgwire import backend, frontend

# every decoder that takes a raw body, so random bodies reach each one directly
BODY_DECODERS: list[Callable[[bytes], object]] = [
    frontend.decode_query,
    frontend.decode_parse,
    frontend.decode_bind,
    frontend.decode_execute,
    frontend.decode_describe,
    frontend.decode_close,
    frontend.decode_function_call,
    frontend.decode_copy_fail,
    pw.parse_sasl_initial,
    backend.decode_authentication,
    backend.decode_parameter_status,
    backend.decode_backend_key_data,
    backend.decode_ready_for_query,
    backend.decode_row_description,
    backend.decode_command_complete,
    backend.decode_error,
    backend.decode_notice,
    backend.decode_notification,
    backend.decode_negotiate,
    backend.decode_parameter_description,
    backend.decode_function_call_response,
    lambda body: backend.decode_copy_response("H", body),
    pw.data_row_values,
    lambda body: pw.data_row_columns(memoryview(body)),
    pw.sasl_mechanisms,
    lambda body: pw.PasswordMessage(body).password,
    pw.parse_startup,
]

# valid messages to mutate, so inputs get past the framing into the decoders
SEEDS = [
    pw.query("SELECT 1"),
    pw.parse("s", "SELECT $1", (23,)),
    pw.bind("p", "s", [b"1", None], (0,), (1,)),
    pw.execute("p", 5),
    pw.describe("S", "s"),
    pw.close("P", "p"),
    pw.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x"),
    pw.authentication_sasl(["SCRAM-SHA-256"]),
    pw.authentication_md5(b"salt"),
    pw.backend_key_data(1, b"abcd"),
    pw.row_description([pw.Field("a", 1, 1, 23, 4, -1, 0)]),
    pw.data_row([b"1", None]),
    pw.error_response("ERROR", "42P01", "nope", detail="d"),
    pw.notification_response(1, "c", "p"),
    pw.negotiate_protocol_version(0, ["_pq_.a"]),
    pw.parameter_description([23]),
    pw.copy_response("H", 0, (0,)),
    pw.ready_for_query("I"),
    pw.function_call_response(b"x"),
]
STARTUP_SEEDS = [
    pw.startup_message({"user": "u", "database": "d"}),
    pw.ssl_request(),
    pw.cancel_request(1, b"abcd"),
]


def _expect_protocol_error(call: Callable[[], object]) -> None:
    """Run ``call``; a ProtocolError is fine, any other exception propagates."""
    try:
        call()
    except pw.ProtocolError as exc:
        assert exc.message and "\n" not in exc.message
        assert exc.sqlstate == "08P01"


def _frames(data: bytes, step: int) -> None:
    """Frame ``data`` fed in ``step``-byte chunks; decode every frame both ways."""
    reader = pw.FrameReader(max_message=1 << 16)
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
        for frame in reader.frames():
            _expect_protocol_error(partial(pw.decode_frontend, frame))
            _expect_protocol_error(partial(pw.decode_backend, frame))
            _expect_protocol_error(partial(pw.data_row_values, frame))
    reader.feed_eof()


def _scanned(data: bytes, step: int, bulk: bytes) -> None:
    """Scan ``data`` fed in ``step``-byte chunks: the same messages as FrameReader's, in order."""
    expected: list[bytes] = []
    reader = pw.FrameReader(max_message=1 << 16)
    try:
        for start in range(0, len(data), step):
            reader.feed(data[start : start + step])
            expected.extend(frame.raw for frame in reader.frames())
    except pw.ProtocolError:
        pass
    got: list[bytes] = []
    scanner = pw.Scanner(bulk, max_message=1 << 16)
    for start in range(0, len(data), step):
        scan = scanner.feed(data[start : start + step])
        got.extend(_raw_messages(scan))
        if scan.error is not None:
            break
    assert got == expected


def _raw_messages(scan: pw.Scan) -> list[bytes]:
    """The scan's messages one by one; a Run is split again to check its count."""
    out: list[bytes] = []
    for item in scan.items:
        if isinstance(item, pw.Run):
            again = pw.FrameReader()
            again.feed(bytes(item.raw))
            frames = again.frames()
            assert len(frames) == item.messages
            out.extend(frame.raw for frame in frames)
        else:
            out.append(item.raw)
    assert b"".join(out) == bytes(scan.data)
    return out


def _startups(data: bytes, step: int) -> None:
    """Read startup packets from ``data`` fed in ``step``-byte chunks."""
    reader = pw.FrameReader()
    for start in range(0, len(data), step):
        reader.feed(data[start : start + step])
        while reader.next_startup() is not None:
            pass


def _mutate(seed: bytes, data: bytes) -> bytes:
    """``seed`` with bytes overwritten, cut or extended as ``data`` directs."""
    out = bytearray(seed)
    for i in range(0, len(data) - 1, 2):
        position, value = data[i] % (len(out) + 1), data[i + 1]
        if value == 0xFF:
            del out[position:]
        elif position == len(out):
            out.append(value)
        else:
            out[position] = value
    return bytes(out)


def one_input(data: bytes) -> None:
    """The fuzz target: ``data``'s first byte picks how the rest is fed to the codec."""
    if len(data) < 2:
        return
    mode, step, rest = data[0] % 6, data[1] % 16 + 1, data[2:]
    if mode == 0:
        _expect_protocol_error(lambda: _frames(rest, step))
    elif mode == 1:
        _expect_protocol_error(lambda: _startups(rest, step))
    elif mode == 2:
        for decode in BODY_DECODERS:
            _expect_protocol_error(partial(decode, rest))
    elif mode == 3:
        mutated = _mutate(SEEDS[step % len(SEEDS)], rest)
        _expect_protocol_error(lambda: _frames(mutated, step))
        for decode in BODY_DECODERS:
            _expect_protocol_error(partial(decode, mutated[5:]))
    elif mode == 4:
        _scanned(_mutate(b"".join(SEEDS), rest), step, b"D" if step % 2 else b"d")
    else:
        mutated = _mutate(STARTUP_SEEDS[step % len(STARTUP_SEEDS)], rest)
        _expect_protocol_error(lambda: _startups(mutated, step))
        _expect_protocol_error(lambda: pw.parse_startup(mutated[4:]))


def random_inputs(count: int, seed: int = 0) -> None:
    """Run ``one_input`` on ``count`` random inputs (the fallback without atheris)."""
    rng = random.Random(seed)
    for _ in range(count):
        one_input(rng.randbytes(rng.randint(0, 300)))


def main() -> None:
    """Fuzz with atheris if it is installed, else run random inputs."""
    if importlib.util.find_spec("atheris") is None:
        count = 100_000
        random_inputs(count, seed=random.SystemRandom().randint(0, 2**32))
        print(f"atheris is not installed; {count} random inputs passed")
        return
    atheris = importlib.import_module("atheris")
    atheris.instrument_all()  # coverage feedback for the already-imported codec
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
