"""Splitting a byte stream into whole messages, with every length checked before buffering."""

from __future__ import annotations

from typing import NamedTuple

from bastion.pgwire.errors import ProtocolError
from bastion.pgwire.startup import StartupPacket, parse_startup
from bastion.pgwire.wire import INT32

MAX_STARTUP = 10_000
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
_INT32_MAX = 2**31 - 1
_TYPES = tuple(bytes((i,)) for i in range(256))  # the type byte without a slice
_new = tuple.__new__  # builds a Frame without NamedTuple's Python-level __new__


class Frame(NamedTuple):
    """One typed message exactly as it was on the wire; forward ``raw`` unchanged.

    Immutable like a frozen dataclass, but a NamedTuple: the reader builds one per
    message (a million for a million-row result) and this costs 40% of a frozen
    dataclass's construction.
    """

    type: bytes  # one byte, e.g. b"Q"
    raw: bytes  # type + Int32 length + body

    @property
    def body(self) -> memoryview:
        """The message body (after type and length), without copying."""
        return memoryview(self.raw)[5:]


class FrameReader:
    """Buffers bytes from one peer and hands back whole messages (sans-I/O).

    Feed what the socket gave, then drain with ``next_frame()`` (or ``frames()``)
    before feeding more. A message header is checked as soon as its five bytes are
    here, so a bad or oversized length is refused before any of its body is held:
    after draining, at most one incomplete message of at most ``max_message + 5``
    bytes stays buffered. Bytes are kept as the chunks that were fed; a message
    that lies inside one chunk is sliced out once, a whole-chunk message is not
    copied at all, and one split across chunks is joined once when complete.
    Once a ProtocolError is raised the reader is broken and raises it again.
    """

    __slots__ = ("_chunk", "_error", "_max", "_need", "_pending", "_pos")

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        if not 4 <= max_message <= _INT32_MAX:
            raise ValueError(f"max_message must be 4 to 2**31-1, not {max_message}")
        self._max = max_message
        self._chunk = b""  # the newest chunk fed ...
        self._pos = 0  # ... and how far into it we have parsed
        self._pending = bytearray()  # the start of a packet that began in an older chunk
        self._need = 0  # total size of the pending packet, 0 until its header is read
        self._error: ProtocolError | None = None

    def allow(self, max_message: int) -> None:
        """Raise the limit from here on (the login is over: a small one held until now)."""
        if not self._max <= max_message <= _INT32_MAX:
            raise ValueError(f"max_message can only grow, to at most 2**31-1: {max_message}")
        self._max = max_message

    @property
    def buffered(self) -> int:
        """Bytes held and not yet returned as a message."""
        return len(self._pending) + len(self._chunk) - self._pos

    def feed(self, data: bytes) -> None:
        """Add bytes received from the peer (an empty ``data`` is ignored, not EOF).

        RuntimeError if the bytes held from earlier feeds exceed ``max_message + 5``:
        the caller did not drain messages between feeds.
        """
        if not data:
            return
        if self._pos < len(self._chunk):
            self._pending += memoryview(self._chunk)[self._pos :]
            if len(self._pending) > self._max + 5:
                raise RuntimeError("FrameReader is full: drain messages before feeding more")
        self._chunk = bytes(data)
        self._pos = 0

    def feed_eof(self) -> None:
        """The peer closed: ProtocolError if it stopped inside a message."""
        if self.buffered:
            raise ProtocolError(f"connection closed inside a message ({self.buffered} bytes)")

    def take_buffered(self) -> bytes:
        """Hand back every unparsed byte and forget it (e.g. to check none follow SSLRequest)."""
        data = bytes(self._pending) + self._chunk[self._pos :]
        self._pending = bytearray()
        self._need = self._pos = 0
        self._chunk = b""
        return data

    def next_frame(self) -> Frame | None:
        """The next whole typed message, or None when more bytes are needed."""
        raw = self._next(1)
        return None if raw is None else _new(Frame, (raw[:1], raw))

    def frames(self) -> list[Frame]:
        """Every whole typed message buffered now.

        If a bad length follows good messages, the good ones are returned and the
        next call raises the ProtocolError.
        """
        out: list[Frame] = []
        try:
            while self._pending or self._error is not None:  # bytes from older chunks first
                if (raw := self._next(1)) is None:
                    return out
                out.append(_new(Frame, (raw[:1], raw)))
            self._scan(out)
            while (raw := self._next(1)) is not None:  # a bad length, a split message
                out.append(_new(Frame, (raw[:1], raw)))
        except ProtocolError:
            if not out:
                raise
        return out

    def _scan(self, out: list[Frame]) -> None:
        """The fast path: append the messages lying whole inside the current chunk."""
        chunk, pos, end, limit = self._chunk, self._pos, len(self._chunk), self._max
        append, unpack, types = out.append, INT32.unpack_from, _TYPES
        while end - pos >= 5:
            (length,) = unpack(chunk, pos + 1)
            stop = pos + 1 + length
            if length < 4 or length > limit or stop > end:
                break  # left to _next, which explains a bad length
            append(_new(Frame, (types[chunk[pos]], chunk[pos:stop])))
            pos = stop
        self._pos = pos

    def next_startup(self) -> StartupPacket | None:
        """The next untyped startup-phase packet, parsed, or None when more bytes are needed."""
        raw = self._next(0)
        return None if raw is None else parse_startup(raw[4:])

    def _next(self, offset: int) -> bytes | None:
        """The next whole packet's bytes; its Int32 length sits at ``offset`` (1 typed, 0 not)."""
        if self._error is not None:
            raise self._error
        if self._pending:
            return self._next_pending(offset)
        chunk, pos = self._chunk, self._pos
        if len(chunk) - pos < offset + 4:
            return None
        end = pos + self._total(chunk, pos, offset)
        if end > len(chunk):
            return None
        self._pos = end
        return chunk if pos == 0 and end == len(chunk) else chunk[pos:end]

    def _next_pending(self, offset: int) -> bytes | None:
        """Complete the packet whose first bytes came in earlier chunks."""
        pending = self._pending
        if not self._need:
            if not self._fill(offset + 4):
                return None
            self._need = self._total(pending, 0, offset)
        need = self._need
        if not self._fill(need):
            return None
        self._need = 0
        if len(pending) == need:
            self._pending = bytearray()
            return bytes(pending)
        raw = bytes(pending[:need])
        del pending[:need]
        return raw

    def _fill(self, size: int) -> bool:
        """Move bytes from the chunk to the pending packet until it holds ``size``."""
        pending, chunk, pos = self._pending, self._chunk, self._pos
        take = min(size - len(pending), len(chunk) - pos)
        if take > 0:
            pending += memoryview(chunk)[pos : pos + take]
            self._pos = pos + take
        return len(pending) >= size

    def _total(self, buf: bytes | bytearray, pos: int, offset: int) -> int:
        """The whole size of the packet whose header starts at ``pos``, checked."""
        (length,) = INT32.unpack_from(buf, pos + offset)
        if offset:  # typed: the length counts itself and the body, not the type byte
            minimum, limit, what = 4, self._max, "message"
        else:  # startup: the length counts itself, the Int32 code and any parameters
            minimum, limit, what = 8, MAX_STARTUP, "startup packet"
        error = length_error(length, minimum, limit, what)
        if error is not None:
            self._error = error
            raise error
        return int(length) + offset


def length_error(length: int, minimum: int, limit: int, what: str) -> ProtocolError | None:
    """The error for a packet length outside [minimum, limit], or None when it is fine."""
    if length < minimum:
        return ProtocolError(f"invalid {what} length {length}")
    if length > limit:
        return ProtocolError(f"{what} length {length} exceeds the limit of {limit}")
    return None
