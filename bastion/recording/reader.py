"""Read recordings back: unwrap the key, authenticate every chunk, tolerate a crash-cut tail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.errors import SealError
from bastion.identity.sealing import SecretBox
from bastion.recording import container, frames
from bastion.recording.model import (
    Event,
    Recording,
    RecordingError,
    RecordingInfo,
    RecordingTampered,
)

_BLOCK = 1 << 20


def file_digest(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of the file as it is on disk, for `bastion audit verify`."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
                size += len(block)
    except OSError as exc:
        raise RecordingError(f"cannot read the recording {path}: {exc.strerror}") from None
    return digest.hexdigest(), size


def read_recording(path: Path, box: SecretBox, session_id: str | None = None) -> Recording:
    """Decrypt a recording into its asciicast header and events.

    session_id defaults to the file name's stem. A last line cut short or failing
    authentication (a crash mid-write) is dropped and reported as truncated=True; a chunk
    that fails authentication anywhere else raises RecordingTampered.
    """
    parts: list[bytes] = []
    version, info = _decrypt(path, box, session_id, parts.append)
    if version == 1:
        header, events = _parse_asciicast(b"".join(parts), path)
        return Recording(info.session_id, header, events, info.truncated, info.complete)
    view = frames.AsciicastView(f"recording {path}")
    events = [event for part in parts for event in view.feed(part)]
    events += view.finish()
    if view.header is None:
        raise RecordingError(f"recording {path} holds no asciicast header")
    return Recording(info.session_id, view.header, events, info.truncated, info.complete)


def read_streams(path: Path, box: SecretBox, session_id: str | None = None) -> dict[str, bytes]:
    """The bytes of each stream ("stdin", "stdout", "stderr") exactly as recorded (format 2)."""
    found: dict[str, bytearray] = {name: bytearray() for name in frames.STREAMS.values()}
    where = f"recording {path}"

    def take(plaintext: bytes) -> None:
        for kind, _, data in frames.iter_frames(plaintext, where):
            if kind in frames.STREAMS:
                found[frames.STREAMS[kind]] += data

    version, _ = _decrypt(path, box, session_id, take)
    if version == 1:
        raise RecordingError(f"{where} is a format-1 recording: it holds text events only")
    return {name: bytes(data) for name, data in found.items()}


def export_asciicast(
    path: Path, box: SecretBox, out: TextIO, session_id: str | None = None
) -> RecordingInfo:
    """Write the recording as plain asciicast v2 text to out, chunk by chunk.

    Each chunk is authenticated before it is written; if a later chunk fails, RecordingError
    is raised after the authentic prefix was written, so callers should discard out.
    """

    view = frames.AsciicastView(f"recording {path}")
    wrote_header = False

    def emit(text: str) -> None:
        try:
            out.write(text)
        except OSError as exc:
            raise RecordingError(f"cannot write the export: {exc.strerror}") from None

    def write(plaintext: bytes) -> None:
        nonlocal wrote_header
        if version_of[0] == 1:
            try:
                emit(plaintext.decode("utf-8"))
            except UnicodeDecodeError:
                raise RecordingError(f"recording {path} holds text that is not UTF-8") from None
            return
        events = view.feed(plaintext)
        if view.header is not None and not wrote_header:
            emit(json.dumps(view.header) + "\n")
            wrote_header = True
        emit("".join(frames.asciicast_line(event) for event in events))

    version_of = [0]
    version, info = _decrypt(path, box, session_id, write, version_out=version_of)
    if info.chunks == 0 or (version == 2 and not wrote_header):
        raise RecordingError(f"recording {path} holds no asciicast header")
    if version == 2:
        emit("".join(frames.asciicast_line(event) for event in view.finish()))
    return info


def read_info(path: Path, box: SecretBox, session_id: str | None = None) -> RecordingInfo:
    """Authenticate every chunk without keeping the plaintext: how many chunks, whether the
    last one was cut, and whether the final chunk (the writer's close) is there."""
    return _decrypt(path, box, session_id, lambda _: None)[1]


def read_extent(path: Path, box: SecretBox, session_id: str) -> tuple[RecordingInfo, int]:
    """read_info, and how many bytes from the file's start its header line and its authentic
    chunks take (what follows them is a cut-short tail, or someone else's bytes)."""
    ends: list[int] = []
    info = _decrypt(path, box, session_id, lambda _: None, ends=ends)[1]
    return info, ends[info.chunks]


def _decrypt(
    path: Path,
    box: SecretBox,
    session_id: str | None,
    sink: Callable[[bytes], None],
    *,
    version_out: list[int] | None = None,
    ends: list[int] | None = None,
) -> tuple[int, RecordingInfo]:
    """The format version and what was found; each authentic plaintext goes to sink in order.
    ends, when given, gets the offset where the header ends, then where each unit read ends."""
    try:
        with path.open("rb") as handle:
            version, aead, session = _open_header(handle, path, box, session_id)
            if version_out is not None:
                version_out[0] = version
            read = _read_chunks if version == 1 else _read_records
            noted = _noting(handle, ends)
            return version, read(handle, path, aead, session, sink, noted=noted)
    except OSError as exc:
        raise RecordingError(f"cannot read the recording {path}: {exc.strerror}") from None


def _noting(handle: BinaryIO, ends: list[int] | None) -> Callable[[bytes | None], bytes | None]:
    """What each unit read passes through: its end offset noted in ends (the header's first)."""
    if ends is None:
        return lambda unit: unit
    ends.append(handle.tell())

    def note(unit: bytes | None) -> bytes | None:
        if unit is not None:
            ends.append(handle.tell())
        return unit

    return note


def _open_header(
    handle: BinaryIO, path: Path, box: SecretBox, session_id: str | None
) -> tuple[int, AESGCM, str]:
    where = f"recording {path}"
    first = handle.readline()
    if not first.endswith(b"\n"):
        raise RecordingError(f"{where} has no complete header line")
    version, session, wrapped = container.parse_header(first, where)
    expected = path.stem if session_id is None else session_id
    if session != expected:
        raise RecordingTampered(f"{where} belongs to session {session!r}, not {expected!r}")
    try:
        key = box.open(wrapped, container.key_context(session))
    except SealError:
        raise RecordingError(
            f"{where}: its key cannot be unwrapped (wrong secrets key or damaged header)"
        ) from None
    if len(key) != container.KEY_SIZE:
        raise RecordingError(f"{where} has a bad header line (damaged key)")
    return version, AESGCM(key), session


def _read_chunks(
    handle: BinaryIO, path: Path, aead: AESGCM, session: str, sink: Callable[[bytes], None],
    *, noted: Callable[[bytes | None], bytes | None],
) -> RecordingInfo:  # fmt: skip
    """Format 1: one base64 line a chunk; a line cut short reads as truncated."""

    def next_line() -> bytes | None:
        line = handle.readline()
        return noted(None if not line else line if line.endswith(b"\n") else b"")

    def open_line(line: bytes, index: int) -> tuple[bytes, bool] | None:
        return container.open_chunk(aead, session, index, line)

    return _authenticate(next_line, open_line, path, session, sink)


def _read_records(
    handle: BinaryIO, path: Path, aead: AESGCM, session: str, sink: Callable[[bytes], None],
    *, noted: Callable[[bytes | None], bytes | None],
) -> RecordingInfo:  # fmt: skip
    """Format 2: length-prefixed records; a cut or forged last record reads as truncated."""

    def open_body(body: bytes, index: int) -> tuple[bytes, bool] | None:
        return container.open_record(aead, session, index, body)

    return _authenticate(lambda: noted(_next_record(handle)), open_body, path, session, sink)


def _authenticate(
    next_unit: Callable[[], bytes | None],
    open_unit: Callable[[bytes, int], tuple[bytes, bool] | None],
    path: Path,
    session: str,
    sink: Callable[[bytes], None],
) -> RecordingInfo:
    """Open each chunk in turn (b"" from next_unit: cut short; None: the end).

    Only the last chunk may fail (a crash mid-write: truncated); one that fails anywhere
    else, or anything after the final chunk, is tampering."""
    index, final, truncated = 0, False, False
    unit = next_unit()
    while unit is not None:
        following = next_unit()
        if final:
            raise RecordingTampered(f"recording {path} has data after its final chunk")
        opened = open_unit(unit, index) if unit else None
        if opened is None:
            if following is not None:
                raise RecordingTampered(
                    f"recording {path}: chunk {index} failed authentication"
                    " (edited, removed, reordered or taken from another recording)"
                )
            truncated = True
            break
        plaintext, final = opened
        sink(plaintext)
        index += 1
        unit = following
    return RecordingInfo(session, index, truncated, final)


def _next_record(handle: BinaryIO) -> bytes | None:
    """The next record's body; b"" for a cut or impossible record; None at the end."""
    head = handle.read(container.RECORD_LENGTH.size)
    if not head:
        return None
    if len(head) < container.RECORD_LENGTH.size:
        return b""
    (length,) = container.RECORD_LENGTH.unpack(head)
    if length > container.MAX_RECORD:
        handle.read()  # damage: nothing after it can be framed
        return b""
    body = handle.read(length)
    return body if len(body) == length else b""


def _parse_asciicast(data: bytes, path: Path) -> tuple[dict[str, Any], list[Event]]:
    where = f"recording {path}"
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise RecordingError(f"{where} holds text that is not UTF-8") from None
    if not lines[0]:
        raise RecordingError(f"{where} holds no asciicast header")
    header = _json(lines[0], where, 1)
    if not isinstance(header, dict) or header.get("version") != 2:
        raise RecordingError(f"{where} does not hold an asciicast v2 header")
    events = [_event(line, where, n) for n, line in enumerate(lines[1:], 2) if line]
    return header, events


def _json(line: str, where: str, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        raise RecordingError(f"{where}: asciicast line {number} is not JSON") from None


def _event(line: str, where: str, number: int) -> Event:
    value = _json(line, where, number)
    if (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], int | float)
        and not isinstance(value[0], bool)
        and isinstance(value[1], str)
        and isinstance(value[2], str)
    ):
        return Event(float(value[0]), value[1], value[2])
    raise RecordingError(f"{where}: asciicast line {number} is not an event")
