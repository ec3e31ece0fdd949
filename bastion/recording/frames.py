"""Format-2 recording frames: each stream's bytes as written, and their asciicast v2 view; pure.

A format-2 recording's chunk plaintexts, concatenated, are a sequence of frames:

    <1 byte kind><8-byte big-endian float: seconds since the start><4-byte length N><N bytes>

Kinds: ``h`` the asciicast v2 header (JSON, the first frame), ``o`` output (the terminal,
or stdout without one), ``e`` stderr, ``i`` input (stdin, or the keys typed at a terminal;
secrets typed at a password prompt are masked before they are framed), ``r`` a resize
("WxH"), ``m`` a marker (asciicast's): where input was masked, and at which prompt. Bytes
are kept exactly as they crossed the proxy (binary streams included), so a frame costs a
copy, not JSON escaping. Every chunk holds whole frames.

`AsciicastView` turns frames into asciicast v2 events: each stream decoded as UTF-8 on its
own (invalid bytes replaced), stderr shown as output, as a terminal would show it.
"""

from __future__ import annotations

import codecs
import json
import struct
from collections.abc import Iterator
from typing import Any

from bastion.recording.model import Event, RecordingError

FRAME = struct.Struct(">cdI")
HEADER, OUTPUT, STDERR, INPUT, RESIZE, MARKER = b"h", b"o", b"e", b"i", b"r", b"m"
STREAMS = {OUTPUT: "stdout", STDERR: "stderr", INPUT: "stdin"}
_KINDS = frozenset((HEADER, OUTPUT, STDERR, INPUT, RESIZE, MARKER))
_CODES = {OUTPUT: "o", STDERR: "e", INPUT: "i", RESIZE: "r", MARKER: "m"}


def frame_header(kind: bytes, elapsed: float, length: int) -> bytes:
    """The 13 bytes in front of a frame's data."""
    return FRAME.pack(kind, elapsed, length)


def iter_frames(data: bytes | memoryview, where: str) -> Iterator[tuple[bytes, float, bytes]]:
    """(kind, elapsed, data) of each whole frame; RecordingError on a malformed one."""
    view = memoryview(data)
    offset, size = 0, len(view)
    while offset < size:
        if size - offset < FRAME.size:
            raise RecordingError(f"{where} holds a cut frame")
        kind, elapsed, length = FRAME.unpack_from(view, offset)
        start = offset + FRAME.size
        if kind not in _KINDS or start + length > size or not 0.0 <= elapsed < 1e9:
            raise RecordingError(f"{where} holds a malformed frame at byte {offset}")
        yield kind, elapsed, bytes(view[start : start + length])
        offset = start + length


class AsciicastView:
    """Frames in, asciicast v2 header and events out; streams decoded one by one."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.header: dict[str, Any] | None = None
        self.last = 0.0
        self._decoders = {
            kind: codecs.getincrementaldecoder("utf-8")(errors="replace") for kind in STREAMS
        }

    def feed(self, plaintext: bytes) -> list[Event]:
        """Events of one chunk's frames (the header frame sets `header`)."""
        events: list[Event] = []
        for kind, elapsed, data in iter_frames(plaintext, self.where):
            self.last = max(self.last, elapsed)
            if kind == HEADER:
                self._take_header(data)
                continue
            if self.header is None:
                raise RecordingError(f"{self.where} holds events before its header")
            if kind in (RESIZE, MARKER):
                events.append(Event(elapsed, _CODES[kind], data.decode("utf-8", "replace")))
                continue
            text = self._decoders[kind].decode(data)
            if text:
                events.append(Event(elapsed, _CODES[kind], text))
        return events

    def finish(self) -> list[Event]:
        """Incomplete UTF-8 left at the end of each stream, replaced."""
        events = []
        for kind, decoder in self._decoders.items():
            tail = decoder.decode(b"", final=True)
            if tail:
                events.append(Event(self.last, _CODES[kind], tail))
        return events

    def _take_header(self, data: bytes) -> None:
        if self.header is not None:
            raise RecordingError(f"{self.where} holds a second header")
        try:
            header = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RecordingError(f"{self.where} holds a header that is not JSON") from None
        if not isinstance(header, dict) or header.get("version") != 2:
            raise RecordingError(f"{self.where} does not hold an asciicast v2 header")
        self.header = header


def asciicast_line(event: Event) -> str:
    """One asciicast v2 event line; stderr ("e") is shown as output ("o")."""
    code = "o" if event.code == "e" else event.code
    return f"[{event.elapsed:.6f}, {json.dumps(code)}, {json.dumps(event.data)}]\n"
