"""Test helpers: a writer factory, file surgery and an asciicast v2 validator."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bastion.identity.sealing import SecretBox
from bastion.recording import RecordingWriter

STARTED = datetime(2026, 1, 5, 9, 30, 15, tzinfo=UTC)
SESSION = "s-0001"
RESIZE = re.compile(r"[1-9][0-9]*x[1-9][0-9]*")


class FakeMonotonic:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_writer(
    root: Path,
    box: SecretBox,
    session_id: str = SESSION,
    started: datetime = STARTED,
    **kwargs: Any,
) -> RecordingWriter:
    return RecordingWriter.create(
        root,
        session_id,
        started,
        80,
        24,
        "alice \u2192 web-1",
        {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        box,
        **kwargs,
    )


def lines_of(path: Path) -> list[bytes]:
    """The file's units: its header line (with its newline), then each chunk record whole
    (length and body; the last may be cut short). Joined again, they are the file."""
    data = path.read_bytes()
    end = data.find(b"\n") + 1 or len(data)
    units, offset = [data[:end]], end
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        units.append(data[offset : offset + 4 + length])
        offset += 4 + length
    return units


def body_of(record: bytes) -> bytes:
    """A chunk record's body (nonce and ciphertext), without its length."""
    return record[4:]


def record_of(body: bytes) -> bytes:
    """A chunk record holding body."""
    return len(body).to_bytes(4, "big") + body


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def validate_asciicast_v2(text: str) -> tuple[dict[str, Any], list[list[Any]]]:
    """Check text against the asciicast v2 spec (newline-delimited JSON); return its parts."""
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    header = json.loads(lines[0])
    assert isinstance(header, dict)
    assert header["version"] == 2
    for key in ("width", "height"):
        assert type(header[key]) is int and header[key] > 0
    if "timestamp" in header:
        assert type(header["timestamp"]) is int
    if "title" in header:
        assert isinstance(header["title"], str)
    if "env" in header:
        assert isinstance(header["env"], dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in header["env"].items())
    events: list[list[Any]] = []
    previous = 0.0
    for line in lines[1:]:
        event = json.loads(line)
        assert isinstance(event, list) and len(event) == 3
        elapsed, code, data = event
        assert isinstance(elapsed, int | float) and not isinstance(elapsed, bool)
        assert elapsed >= previous, "event times must not go backwards"
        previous = elapsed
        assert code in {"o", "i", "r", "m"}
        assert isinstance(data, str)
        if code == "r":
            assert RESIZE.fullmatch(data), data
        events.append(event)
    return header, events
