"""Writing recordings: layout, round trips, asciicast v2 export, buffering, fail-closed errors."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bastion.errors import Exit
from bastion.identity.sealing import SecretBox
from bastion.recording import (
    FLUSH_INTERVAL,
    MAX_BUFFER,
    Event,
    RecordingError,
    RecordingWriter,
    export_asciicast,
    file_digest,
    read_recording,
    read_streams,
    recording_path,
)
from tests.recording.helpers import (
    SESSION,
    STARTED,
    FakeMonotonic,
    lines_of,
    make_writer,
    validate_asciicast_v2,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _enospc(*_args: object) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_round_trip(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"$ ", 0.25)
    writer.resize(100, 30, 0.5)
    writer.flush()
    writer.output("caf\u00e9 \u2713\r\n".encode(), 1.125)
    writer.output(b"\x1b[1;31mred\x1b[0m", 2.0)
    summary = writer.close()

    recording = read_recording(summary.path, box)
    assert recording.session_id == SESSION
    assert recording.header == {
        "version": 2,
        "width": 80,
        "height": 24,
        "timestamp": int(STARTED.timestamp()),
        "title": "alice \u2192 web-1",
        "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
    }
    assert recording.events == [
        Event(0.25, "o", "$ "),
        Event(0.5, "r", "100x30"),
        Event(1.125, "o", "caf\u00e9 \u2713\r\n"),
        Event(2.0, "o", "\x1b[1;31mred\x1b[0m"),
    ]
    assert recording.complete and not recording.truncated
    assert (summary.sha256, summary.size) == file_digest(summary.path)


def test_every_input_byte_is_recorded_and_a_secret_at_a_prompt_is_masked(
    tmp_path: Path, box: SecretBox
) -> None:
    writer = make_writer(tmp_path, box)
    assert writer.input(b"stty -echo; cat /etc/shadow\r", 1.0) == b"stty -echo; cat /etc/shadow\r"
    writer.output(b"root:x:0\r\n$ sudo -k; sudo id\r\n[sudo] password for alice: ", 1.1)
    assert writer.input(b"hunter2\r", 1.2) == b"*******\r"
    writer.output(b"\r\nuid=0(root)\r\n$ ", 1.3)
    writer.input(b"\x00\xff binary\n", 1.4)
    summary = writer.close()
    recording = read_recording(summary.path, box)
    typed = [(e.elapsed, e.data) for e in recording.events if e.code == "i"]
    assert typed == [(1.0, "stty -echo; cat /etc/shadow\r"), (1.2, "*******\r"),
                     (1.4, "\x00\ufffd binary\n")]  # fmt: skip
    assert read_streams(summary.path, box)["stdin"].endswith(b"\x00\xff binary\n")
    markers = [(e.elapsed, e.data) for e in recording.events if e.code == "m"]
    assert markers == [(1.2, "input masked at a secret prompt: [sudo] password for alice: ")]
    stdin = read_streams(summary.path, box)["stdin"]
    assert summary.streams["stdin"] == (len(stdin), hashlib.sha256(stdin).hexdigest())


def test_stdout_and_stderr_are_kept_apart_byte_for_byte(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    blob = bytes(range(256)) * 4
    writer.output(blob, 0.1)
    writer.output(b"warning\n", 0.2, stderr=True)
    summary = writer.close()
    streams = read_streams(summary.path, box)
    assert streams == {"stdin": b"", "stdout": blob, "stderr": b"warning\n"}
    assert summary.streams["stdout"].sha256 == hashlib.sha256(blob).hexdigest()
    events = read_recording(summary.path, box).events
    assert Event(0.2, "e", "warning\n") in events
    out = io.StringIO()
    export_asciicast(summary.path, box, out)
    _, exported = validate_asciicast_v2(out.getvalue())
    assert [0.2, "o", "warning\n"] in exported  # stderr plays as output


def test_layout_modes_and_utc_date(tmp_path: Path, box: SecretBox) -> None:
    root = tmp_path / "recordings"
    late_evening = datetime(2026, 1, 5, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    writer = make_writer(root, box, started=late_evening)
    assert writer.path == root / "2026" / "01" / "06" / f"{SESSION}.cast"
    assert writer.path == recording_path(root, SESSION, late_evening)
    for directory in (root, root / "2026", root / "2026" / "01", root / "2026" / "01" / "06"):
        assert _mode(directory) == 0o700
    assert _mode(writer.path) == 0o600
    writer.close()


def test_a_recording_is_valid_from_its_first_moment(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    recording = read_recording(writer.path, box)  # nothing flushed yet, writer still open
    assert recording.header["version"] == 2
    assert recording.events == []
    assert not recording.complete and not recording.truncated
    writer.close()


def test_a_session_id_is_recorded_only_once(tmp_path: Path, box: SecretBox) -> None:
    make_writer(tmp_path, box).close()
    with pytest.raises(RecordingError, match=r"cannot open the recording .*File exists"):
        make_writer(tmp_path, box)


@pytest.mark.parametrize("session_id", ["", "../escape", "a/b", ".hidden", "x" * 129])
def test_unsafe_session_ids_are_refused(tmp_path: Path, box: SecretBox, session_id: str) -> None:
    with pytest.raises(ValueError, match="session id"):
        make_writer(tmp_path, box, session_id=session_id)


def test_naive_start_times_are_refused(tmp_path: Path, box: SecretBox) -> None:
    with pytest.raises(ValueError, match="aware"):
        make_writer(tmp_path, box, started=datetime(2026, 1, 5, 9, 0))


def test_export_is_valid_asciicast_v2(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"$ ", 0.1)
    writer.input(b"e", 0.5)
    writer.output(b"e", 0.51)
    writer.resize(120, 40, 0.6)
    writer.input(b"\x03", 0.7)
    writer.output('"quoted" \\ back \u00e9\x00\x07\r\n'.encode(), 0.8)
    path = writer.close().path

    out = io.StringIO()
    info = export_asciicast(path, box, out)
    assert info.complete and not info.truncated and info.chunks == 2
    header, events = validate_asciicast_v2(out.getvalue())
    assert (header["width"], header["height"], header["title"]) == (80, 24, "alice \u2192 web-1")
    assert [tuple(e) for e in events] == [
        (0.1, "o", "$ "),
        (0.5, "i", "e"),
        (0.51, "o", "e"),
        (0.6, "r", "120x40"),
        (0.7, "i", "\x03"),
        (0.8, "o", '"quoted" \\ back \u00e9\x00\x07\r\n'),
    ]


def test_the_file_on_disk_holds_no_plaintext(tmp_path: Path, box: SecretBox) -> None:
    secret = "TOP-SECRET-OUTPUT-4f7c"
    writer = make_writer(tmp_path, box)
    for i in range(20):
        writer.output(f"{secret} line {i}\r\n".encode(), i / 10)
        writer.flush()
    path = writer.close().path
    raw = path.read_bytes()
    for needle in (secret, "alice", "web-1", "xterm-256color", "version", "line 1"):
        assert needle.encode() not in raw
    assert secret in "".join(e.data for e in read_recording(path, box).events)


def test_times_never_go_backwards_and_bad_times_are_refused(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"a", 2.0)
    writer.output(b"b", 1.0)  # a late clock reading is recorded at the previous time
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="elapsed"):
            writer.output(b"c", bad)
    events = read_recording(writer.close().path, box).events
    assert [(e.elapsed, e.data) for e in events] == [(2.0, "a"), (2.0, "b")]


def test_unknown_terminal_size_is_recorded_as_80x24(tmp_path: Path, box: SecretBox) -> None:
    writer = RecordingWriter.create(tmp_path, SESSION, STARTED, 0, 0, "t", {}, box)
    writer.resize(0, 50, 1.0)
    with pytest.raises(ValueError, match="terminal size"):
        writer.resize(-1, 10, 1.0)
    recording = read_recording(writer.close().path, box)
    assert (recording.header["width"], recording.header["height"]) == (80, 24)
    assert recording.events == [Event(1.0, "r", "80x50")]


def test_utf8_split_across_reads_is_kept_whole(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    data = "caf\u00e9 \u2713 \U0001f600".encode()
    for i in range(len(data)):
        writer.output(data[i : i + 1], i / 100)
    writer.flush()  # a flush between reads keeps the incomplete sequence for the next call
    recording = read_recording(writer.close().path, box)
    text = "".join(e.data for e in recording.events)
    assert text == "caf\u00e9 \u2713 \U0001f600"
    assert "\ufffd" not in text


def test_an_incomplete_utf8_tail_at_close_is_replaced(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"ok \xe2\x9c", 1.0)
    events = read_recording(writer.close().path, box).events
    assert "".join(e.data for e in events) == "ok \ufffd"


def test_invalid_utf8_is_replaced(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"a\xffb", 1.0)
    assert read_recording(writer.close().path, box).events == [Event(1.0, "o", "a\ufffdb")]


def test_due_after_a_second_with_data_buffered(tmp_path: Path, box: SecretBox) -> None:
    clock = FakeMonotonic()
    writer = make_writer(tmp_path, box, monotonic=clock)
    start = clock.now
    assert not writer.due(start + 5)  # nothing buffered
    writer.output(b"x", 0.1)
    assert not writer.due(start + 0.5)
    assert writer.due(start + FLUSH_INTERVAL)
    clock.now = start + 1.2
    writer.flush()
    assert not writer.due(start + 1.5)
    writer.output(b"y", 1.3)
    assert not writer.due(start + 2.1)
    assert writer.due(start + 2.2)
    writer.close()


def test_flush_writes_one_chunk_per_call_with_data(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    assert len(lines_of(writer.path)) == 2  # container header and chunk 0 (asciicast header)
    writer.flush()  # nothing buffered: no chunk
    assert len(lines_of(writer.path)) == 2
    writer.output(b"x", 0.1)
    writer.flush()
    assert len(lines_of(writer.path)) == 3
    writer.close()
    assert len(lines_of(writer.path)) == 4  # the final chunk


def test_buffer_over_one_mib_is_written_at_once_and_synced_by_the_timer(
    tmp_path: Path, box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeMonotonic()
    writer = make_writer(tmp_path, box, monotonic=clock)
    syncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        syncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    piece = b"a" * (200 * 1024)
    for i in range(5):
        writer.output(piece, i)
    assert len(lines_of(writer.path)) == 2  # ~1000 KiB buffered: under the bound
    writer.output(piece, 5)
    _wait_for_units(writer.path, 3)  # over 1 MiB: handed to the worker, which writes it
    assert syncs == []  # without waiting for the disk
    assert not writer.due(clock.now + 0.5)
    assert writer.due(clock.now + FLUSH_INTERVAL)  # not yet durable: the timer must flush
    clock.now += FLUSH_INTERVAL
    writer.flush()
    assert len(syncs) == 1 and len(lines_of(writer.path)) == 3
    assert not writer.due(clock.now + 10)
    writer.close()


def test_a_slow_fsync_holds_up_neither_the_writes_nor_the_relay(
    tmp_path: Path, box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the timer's flush waits for the disk, output goes on being sealed and written:
    the relay (which writes chunks itself when too many wait) never waits for an fsync."""
    writer = make_writer(tmp_path, box)
    writer.output(b"before,", 0.1)
    syncing, release = threading.Event(), threading.Event()
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        syncing.set()
        release.wait(30)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    flusher = threading.Thread(target=writer.flush)
    flusher.start()
    assert syncing.wait(10)
    piece = b"d" * MAX_BUFFER

    def relay_output() -> None:
        for _ in range(12):
            writer.output(piece, 0.2)

    relay = threading.Thread(target=relay_output)
    relay.start()
    relay.join(10)  # 12 MiB while the disk syncs: more chunks than may wait for the worker
    held_up = relay.is_alive()
    release.set()
    flusher.join()
    relay.join()
    assert not held_up
    monkeypatch.setattr(os, "fsync", real_fsync)
    recording = read_recording(writer.close().path, box)
    assert "".join(e.data for e in recording.events) == "before," + "d" * (12 * MAX_BUFFER)


def _wait_for_units(path: Path, count: int) -> None:
    """Wait (bounded) until the worker has written the file up to `count` units."""
    deadline = time.monotonic() + 10
    while len(lines_of(path)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(lines_of(path)) == count


def test_one_huge_read_is_split_and_bounded(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"z" * (3 * MAX_BUFFER), 1.0)
    writer.flush()
    sizes = [len(line) for line in lines_of(writer.path)[2:]]
    assert len(sizes) >= 2 and max(sizes) < 2 * MAX_BUFFER  # several bounded chunks
    recording = read_recording(writer.close().path, box)
    assert "".join(e.data for e in recording.events) == "z" * (3 * MAX_BUFFER)


def test_flushing_from_another_thread_keeps_every_event_in_order(
    tmp_path: Path, box: SecretBox
) -> None:
    writer = make_writer(tmp_path, box)
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            writer.flush()

    thread = threading.Thread(target=flusher)
    thread.start()
    try:
        for i in range(3000):
            writer.output(f"{i},".encode(), i / 1000)
    finally:
        stop.set()
        thread.join()
    recording = read_recording(writer.close().path, box)
    assert "".join(e.data for e in recording.events) == "".join(f"{i}," for i in range(3000))


def test_close_summary_matches_the_file_and_close_is_idempotent(
    tmp_path: Path, box: SecretBox
) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"bye", 1.0)
    summary = writer.close()
    assert summary.path == writer.path
    assert (summary.sha256, summary.size) == file_digest(writer.path)
    assert summary.size == writer.path.stat().st_size
    assert writer.close() == summary
    with pytest.raises(RecordingError, match="is closed"):
        writer.output(b"late", 2.0)
    with pytest.raises(RecordingError, match="is closed"):
        writer.flush()


def test_root_that_is_a_file_refuses_the_session(tmp_path: Path, box: SecretBox) -> None:
    root = tmp_path / "recordings"
    root.write_text("not a directory")
    with pytest.raises(RecordingError, match=r"cannot open the recording .*: Not a directory"):
        make_writer(root, box)


def test_root_under_a_file_refuses_the_session(tmp_path: Path, box: SecretBox) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecordingError, match="cannot open the recording") as caught:
        make_writer(tmp_path / "file" / "recordings", box)
    assert caught.value.exit_code == Exit.STORE


def test_disk_full_at_create_refuses_and_leaves_no_file(
    tmp_path: Path, box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(os, "writev", _enospc)
        with pytest.raises(RecordingError, match="No space left on device"):
            make_writer(tmp_path, box)
    assert list(tmp_path.rglob("*.cast")) == []
    make_writer(tmp_path, box).close()  # the session id can be used once space is back


@pytest.mark.parametrize("call", ["writev", "fsync"])
def test_a_failed_write_ends_the_recording(
    tmp_path: Path, box: SecretBox, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    writer = make_writer(tmp_path, box)
    writer.output(b"before", 0.5)
    writer.flush()
    writer.output(b"lost", 1.0)
    with monkeypatch.context() as patch:
        patch.setattr(os, call, _enospc)
        with pytest.raises(RecordingError, match=r"cannot write the recording .*No space left"):
            writer.flush()
    with pytest.raises(RecordingError, match="an earlier write failed"):
        writer.output(b"more", 2.0)
    with pytest.raises(RecordingError, match="an earlier write failed"):
        writer.close()
    recording = read_recording(writer.path, box)  # what was flushed stays readable
    assert recording.events[0] == Event(0.5, "o", "before")
    assert not recording.complete


def test_a_failed_write_in_the_worker_shows_at_the_next_call(
    tmp_path: Path, box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_writer(tmp_path, box)
    with monkeypatch.context() as patch:
        patch.setattr(os, "writev", _enospc)
        writer.output(b"x" * (MAX_BUFFER + 1), 1.0)  # a full chunk: the worker writes it
        with pytest.raises(RecordingError, match="No space left"):
            writer.flush()
    with pytest.raises(RecordingError, match="an earlier write failed"):
        writer.output(b"more", 2.0)
    with pytest.raises(RecordingError):
        writer.close()


def test_errors_and_reprs_carry_no_key_material(tmp_path: Path, box: SecretBox) -> None:
    writer = make_writer(tmp_path, box)
    assert repr(writer) == f"RecordingWriter(path={str(writer.path)!r})"
    writer.close()
    with pytest.raises(RecordingError) as caught:
        read_recording(writer.path, SecretBox(os.urandom(32)))
    assert caught.value.message == (
        f"recording {writer.path}: its key cannot be unwrapped"
        " (wrong secrets key or damaged header)"
    )


def test_sessions_recording_at_once_keep_every_byte_and_hash(
    tmp_path: Path, box: SecretBox
) -> None:
    """Big chunks of several sessions are sealed by the same worker threads, each into a
    buffer it reuses: every session still reads back byte for byte, with matching hashes."""
    payloads = {f"s-{n}": os.urandom(MAX_BUFFER // 3) for n in range(3)}
    writers = {sid: make_writer(tmp_path, box, session_id=sid) for sid in payloads}
    for round_ in range(8):
        for sid, writer in writers.items():
            writer.output(payloads[sid], float(round_))
            writer.input(payloads[sid][:5000], float(round_))
    for sid, writer in writers.items():
        summary = writer.close()
        assert (summary.sha256, summary.size) == file_digest(writer.path)
        streams = read_streams(writer.path, box, sid)
        assert streams["stdout"] == payloads[sid] * 8
        assert streams["stdin"] == payloads[sid][:5000] * 8
        assert summary.streams["stdout"].sha256 == hashlib.sha256(payloads[sid] * 8).hexdigest()
