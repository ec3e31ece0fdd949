"""Reading recordings back: wrong keys, tampering, crash-truncated files and a real kill -9."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.errors import Exit
from bastion.identity.sealing import SecretBox
from bastion.recording import (
    Event,
    RecordingError,
    RecordingTampered,
    container,
    export_asciicast,
    read_recording,
)
from bastion.recording.reader import read_extent
from tests.recording.helpers import (
    SESSION,
    body_of,
    lines_of,
    make_writer,
    record_of,
    write_lines,
)

CHUNKS = ["first\r\n", "second\r\n", "third\r\n", "fourth\r\n"]


def _four_chunks(root: Path, box: SecretBox, session_id: str = SESSION) -> Path:
    """A closed recording: header line, chunk 0 (asciicast header), 4 event chunks, final."""
    writer = make_writer(root, box, session_id=session_id)
    for i, text in enumerate(CHUNKS):
        writer.output(text.encode(), float(i + 1))
        writer.flush()
    return writer.close().path


def _unwrap(path: Path, box: SecretBox) -> tuple[str, AESGCM]:
    session, wrapped = container.parse_header_line(lines_of(path)[0], "test")
    return session, AESGCM(box.open(wrapped, container.key_context(session)))


def test_wrong_box_is_refused(tmp_path: Path, box: SecretBox, other_box: SecretBox) -> None:
    path = _four_chunks(tmp_path, box)
    with pytest.raises(RecordingError, match="key cannot be unwrapped") as caught:
        read_recording(path, other_box)
    assert caught.value.exit_code == Exit.STORE


def test_a_chunk_is_unreadable_with_another_recordings_key(tmp_path: Path, box: SecretBox) -> None:
    path_a = _four_chunks(tmp_path / "a", box)
    path_b = _four_chunks(tmp_path / "b", box)
    session, aead_b = _unwrap(path_b, box)
    for index, line in enumerate(lines_of(path_a)[1:]):
        blob = body_of(line)
        nonce, sealed = blob[:12], blob[12:]
        for final in (False, True):
            with pytest.raises(InvalidTag):
                aead_b.decrypt(nonce, sealed, container.chunk_aad(session, index, final))
    _, aead_a = _unwrap(path_a, box)  # while its own key opens it
    blob = body_of(lines_of(path_a)[2])
    assert b"first" in aead_a.decrypt(blob[:12], blob[12:], container.chunk_aad(SESSION, 1, False))


def test_a_chunk_moved_from_another_recording_is_detected(tmp_path: Path, box: SecretBox) -> None:
    path_a = _four_chunks(tmp_path / "a", box)
    path_b = _four_chunks(tmp_path / "b", box)
    lines = lines_of(path_b)
    lines[3] = lines_of(path_a)[3]
    write_lines(path_b, lines)
    with pytest.raises(RecordingTampered, match="chunk 2 failed authentication"):
        read_recording(path_b, box)


@pytest.mark.parametrize("damage", ["drop", "swap", "edit", "duplicate", "blank"])
def test_a_damaged_middle_chunk_is_tampering(tmp_path: Path, box: SecretBox, damage: str) -> None:
    path = _four_chunks(tmp_path, box)
    lines = lines_of(path)
    if damage == "drop":
        del lines[3]
    elif damage == "swap":
        lines[3], lines[4] = lines[4], lines[3]
    elif damage == "edit":
        blob = bytearray(body_of(lines[3]))
        blob[20] ^= 1
        lines[3] = record_of(bytes(blob))
    elif damage == "duplicate":
        lines.insert(3, lines[3])
    else:
        lines.insert(3, record_of(b""))
    write_lines(path, lines)
    with pytest.raises(RecordingTampered, match="failed authentication") as caught:
        read_recording(path, box)
    assert caught.value.exit_code == Exit.TAMPERED


def test_data_after_the_final_chunk_is_tampering(tmp_path: Path, box: SecretBox) -> None:
    path = _four_chunks(tmp_path, box)
    lines = lines_of(path)
    write_lines(path, [*lines, lines[3]])
    with pytest.raises(RecordingTampered, match="after its final chunk"):
        read_recording(path, box)


def test_a_dropped_final_chunk_reads_as_incomplete(tmp_path: Path, box: SecretBox) -> None:
    path = _four_chunks(tmp_path, box)
    write_lines(path, lines_of(path)[:-1])
    recording = read_recording(path, box)
    assert not recording.complete and not recording.truncated
    assert [e.data for e in recording.events] == CHUNKS


def test_an_edited_session_in_the_header_is_refused(tmp_path: Path, box: SecretBox) -> None:
    path = _four_chunks(tmp_path, box)
    lines = lines_of(path)
    lines[0] = lines[0].replace(SESSION.encode(), b"s-0002")
    write_lines(path, lines)
    with pytest.raises(RecordingError):
        read_recording(path, box)
    with pytest.raises(RecordingError, match="key cannot be unwrapped"):
        read_recording(path, box, session_id="s-0002")


def test_a_recording_filed_under_another_session_is_refused(tmp_path: Path, box: SecretBox) -> None:
    path = _four_chunks(tmp_path, box)
    moved = path.with_name("s-0002.cast")
    path.rename(moved)
    with pytest.raises(RecordingTampered, match="belongs to session 's-0001', not 's-0002'"):
        read_recording(moved, box)
    assert read_recording(moved, box, session_id=SESSION).complete


@pytest.mark.parametrize(
    "first_line",
    [b"", b"garbage\n", b"[1, 2]\n", b'{"bastion_recording": 2}\n', b'{"bastion_recording": 1}\n'],
)
def test_a_bad_header_is_refused(tmp_path: Path, box: SecretBox, first_line: bytes) -> None:
    path = tmp_path / f"{SESSION}.cast"
    path.write_bytes(first_line)
    with pytest.raises(RecordingError, match="header"):
        read_recording(path, box)


def test_a_missing_file_is_a_recording_error(tmp_path: Path, box: SecretBox) -> None:
    with pytest.raises(RecordingError, match="cannot read the recording"):
        read_recording(tmp_path / "nope.cast", box)


@pytest.mark.parametrize("cut", [1, 10, 40])
def test_a_line_cut_mid_write_reads_up_to_the_last_chunk(
    tmp_path: Path, box: SecretBox, cut: int
) -> None:
    path = _four_chunks(tmp_path, box)
    lines = lines_of(path)[:-1]  # as if the session never closed
    lines[-1] = lines[-1][:cut]  # and the last write was cut short
    write_lines(path, lines)
    recording = read_recording(path, box)
    assert recording.truncated and not recording.complete
    assert [e.data for e in recording.events] == CHUNKS[:3]


def test_a_damaged_complete_last_line_reads_as_truncated(tmp_path: Path, box: SecretBox) -> None:
    path = _four_chunks(tmp_path, box)
    lines = lines_of(path)[:-1]
    lines[-1] = record_of(b"A" * (len(lines[-1]) - 4))  # e.g. a torn write after power loss
    write_lines(path, lines)
    recording = read_recording(path, box)
    assert recording.truncated and [e.data for e in recording.events] == CHUNKS[:3]


def test_a_cut_chunk_zero_leaves_no_asciicast_header(tmp_path: Path, box: SecretBox) -> None:
    path = _four_chunks(tmp_path, box)
    lines = lines_of(path)
    write_lines(path, [lines[0], lines[1][:30]])
    with pytest.raises(RecordingError, match="no asciicast header"):
        read_recording(path, box)


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from bastion.identity.sealing import SecretBox
    from tests.recording.helpers import make_writer

    box = SecretBox(bytes.fromhex(os.environ["TEST_KEY"]))
    writer = make_writer(Path(sys.argv[1]), box)
    writer.output(b"flushed\\r\\n", 0.5)
    writer.flush()
    writer.output(b"never flushed\\r\\n", 0.9)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_kill_9_leaves_a_readable_recording_up_to_the_last_flush(tmp_path: Path) -> None:
    key = os.urandom(32)
    env = {**os.environ, "TEST_KEY": key.hex()}
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path)],
        env=env,
        cwd=repo,
        check=False,
        capture_output=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    (path,) = tmp_path.rglob("*.cast")
    recording = read_recording(path, SecretBox(key))
    assert recording.events == [Event(0.5, "o", "flushed\r\n")]
    assert not recording.complete and not recording.truncated


def test_a_format_1_recording_still_reads_and_exports(tmp_path: Path, box: SecretBox) -> None:
    key = os.urandom(32)
    aead = AESGCM(key)
    header = b'{"version": 2, "width": 80, "height": 24}\n'
    events = b'[0.5, "o", "old\\r\\n"]\n'
    path = tmp_path / f"{SESSION}.cast"
    path.write_bytes(
        container.header_line(SESSION, box.seal(key, container.key_context(SESSION)), version=1)
        + container.seal_chunk(aead, SESSION, 0, header, False)
        + container.seal_chunk(aead, SESSION, 1, events, True)
    )
    recording = read_recording(path, box)
    assert recording.complete and recording.events == [Event(0.5, "o", "old\r\n")]
    out = io.StringIO()
    export_asciicast(path, box, out)
    assert out.getvalue() == (header + events).decode()


def test_read_extent_is_where_the_authentic_chunks_end(tmp_path: Path, box: SecretBox) -> None:
    """The whole file for a closed recording; before a cut tail, or before bytes someone
    added, for one cut short (what the upload completer measures a tail by)."""
    writer = make_writer(tmp_path, box, session_id="s-extent")
    for n in range(3):
        writer.output(os.urandom(2048).hex().encode(), float(n))
        writer.flush()
    path = writer.path
    flushed = path.read_bytes()
    info, extent = read_extent(path, box, "s-extent")
    chunks = info.chunks
    assert extent == len(flushed) and chunks >= 3 and not info.complete
    path.write_bytes(flushed[:-5])  # the last record cut
    info, extent = read_extent(path, box, "s-extent")
    assert info.truncated and info.chunks == chunks - 1 and extent < len(flushed) - 5
    path.write_bytes(flushed + b"\xff" * 4 + os.urandom(4096))  # "a damaged length", then junk
    info, extent = read_extent(path, box, "s-extent")
    assert info.truncated and info.chunks == chunks and extent == len(flushed)
    path.write_bytes(flushed)
    writer.close()
    info, extent = read_extent(path, box, "s-extent")
    assert info.complete and extent == path.stat().st_size
