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
from bastion.recording import container
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
    info = _decrypt(path, box, session_id, parts.append)
    header, events = _parse_asciicast(b"".join(parts), path)
    return Recording(info.session_id, header, events, info.truncated, info.complete)


def inspect_recording(path: Path, box: SecretBox, session_id: str) -> RecordingInfo:
    """Authenticate every chunk without keeping the plaintext: how many chunks, whether the
    last line was cut, and whether the final chunk (the writer's close) is there."""
    return _decrypt(path, box, session_id, lambda _plaintext: None)


def export_asciicast(
    path: Path, box: SecretBox, out: TextIO, session_id: str | None = None
) -> RecordingInfo:
    """Write the recording as plain asciicast v2 text to out, chunk by chunk.

    Each chunk is authenticated before it is written; if a later chunk fails, RecordingError
    is raised after the authentic prefix was written, so callers should discard out.
    """

    def write(plaintext: bytes) -> None:
        try:
            out.write(plaintext.decode("utf-8"))
        except UnicodeDecodeError:
            raise RecordingError(f"recording {path} holds text that is not UTF-8") from None
        except OSError as exc:
            raise RecordingError(f"cannot write the export: {exc.strerror}") from None

    info = _decrypt(path, box, session_id, write)
    if info.chunks == 0:
        raise RecordingError(f"recording {path} holds no asciicast header")
    return info


def _decrypt(
    path: Path, box: SecretBox, session_id: str | None, sink: Callable[[bytes], None]
) -> RecordingInfo:
    try:
        with path.open("rb") as handle:
            aead, session = _open_header(handle, path, box, session_id)
            return _read_chunks(handle, path, aead, session, sink)
    except OSError as exc:
        raise RecordingError(f"cannot read the recording {path}: {exc.strerror}") from None


def _open_header(
    handle: BinaryIO, path: Path, box: SecretBox, session_id: str | None
) -> tuple[AESGCM, str]:
    where = f"recording {path}"
    first = handle.readline()
    if not first.endswith(b"\n"):
        raise RecordingError(f"{where} has no complete header line")
    session, wrapped = container.parse_header_line(first, where)
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
    return AESGCM(key), session


def _read_chunks(
    handle: BinaryIO, path: Path, aead: AESGCM, session: str, sink: Callable[[bytes], None]
) -> RecordingInfo:
    index, final, truncated = 0, False, False
    line = handle.readline()
    while line:
        following = handle.readline()
        if final:
            raise RecordingTampered(f"recording {path} has data after its final chunk")
        opened = None
        if line.endswith(b"\n"):
            opened = container.open_chunk(aead, session, index, line)
        if opened is None:
            if following:
                raise RecordingTampered(
                    f"recording {path}: chunk {index} failed authentication"
                    " (edited, removed, reordered or taken from another recording)"
                )
            truncated = True
            break
        plaintext, final = opened
        sink(plaintext)
        index += 1
        line = following
    return RecordingInfo(session, index, truncated, final)


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
