"""Bulk framing for relays: whole messages forwarded as received, bulk types only counted."""

from __future__ import annotations

from typing import NamedTuple

from bastion.pgwire import _fastscan
from bastion.pgwire.errors import ProtocolError
from bastion.pgwire.framing import DEFAULT_MAX_MESSAGE, Frame, length_error
from bastion.pgwire.wire import INT32

_INT32_MAX = 2**31 - 1
_TYPES = tuple(bytes((i,)) for i in range(256))
_new = tuple.__new__


class Run(NamedTuple):
    """Consecutive messages of the scanner's bulk types (DataRow, CopyData), as received."""

    messages: int
    raw: memoryview


class Scan(NamedTuple):
    """What one feed completed: its whole messages in order, and their bytes in one piece.

    ``data`` is exactly ``b"".join`` of every item's raw bytes, so a relay that changes nothing
    forwards it with one write. ``error`` is set when a bad header followed these messages; the
    scanner is broken from then on.
    """

    data: bytes | memoryview
    items: list[Frame | Run]
    error: ProtocolError | None = None


class Scanner:
    """Splits one peer's typed-message stream (after start-up) for a relay (sans-I/O).

    A relay only needs to look at a few messages, while bulk data (a million DataRows, a
    COPY's CopyData) must merely pass: the bulk types (`bulk`, e.g. b"Dd") come back as `Run`s
    of consecutive messages, every other message as a `Frame`. Each header is checked before
    its body is held; an incomplete message at the end of a feed is kept (at most
    ``max_message + 5`` bytes) and completed by later feeds, gathered in one growing buffer.
    """

    __slots__ = ("_bulk", "_bulk_table", "_error", "_max", "_need", "_tail")

    def __init__(self, bulk: bytes, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        if not bulk:
            raise ValueError("name at least one bulk message type")
        if not 4 <= max_message <= _INT32_MAX:
            raise ValueError(f"max_message must be 4 to 2**31-1, not {max_message}")
        self._bulk = tuple(i in bulk for i in range(256))
        self._bulk_table = bytes(self._bulk)  # the same, for the compiled scan
        self._max = max_message
        self._tail = bytearray()  # the start of a message not yet whole
        self._need = 0  # bytes the tail must hold before scanning is worth it
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that are not yet part of a whole message."""
        return len(self._tail)

    def feed(self, data: bytes) -> Scan:
        """Add bytes from the peer; returns the messages they complete (maybe none)."""
        if self._error is not None:
            raise self._error
        if self._tail:
            if len(self._tail) + len(data) < self._need:
                self._tail += data
                return Scan(b"", [])
            data, self._tail = bytes(self._tail) + data, bytearray()  # the read copied once
        items: list[Frame | Run] = []
        end = self._scan(data, items)
        if end == len(data):
            return Scan(data, items)
        if self._error is None:
            self._tail = bytearray(memoryview(data)[end:])
        return Scan(memoryview(data)[:end], items, self._error)

    def feed_eof(self) -> None:
        """The peer closed: ProtocolError if it stopped inside a message."""
        if self._tail:
            raise ProtocolError(f"connection closed inside a message ({len(self._tail)} bytes)")

    def _scan(self, data: bytes, items: list[Frame | Run]) -> int:
        """Append the whole messages at the start of `data`; returns where they end
        (compiled: _fastscan.c; _scan_python is the reference it is tested against)."""
        if type(data) is not bytes:
            return self._scan_python(data, items)
        end, code, value = _fastscan.scan(data, items, self._bulk_table, self._max, Frame, Run)
        if code == 0:
            self._need = 5
        elif code == 1:
            self._need = value
        else:
            self._error = length_error(value, 4, self._max, "message")
        return end

    def _scan_python(self, data: bytes, items: list[Frame | Run]) -> int:
        """_scan in Python, one header at a time."""
        pos, end, limit, bulk = 0, len(data), self._max, self._bulk
        unpack, types, append = INT32.unpack_from, _TYPES, items.append
        run_start, run_count = -1, 0
        while end - pos >= 5:
            (length,) = unpack(data, pos + 1)
            stop = pos + 1 + length
            if length < 4 or length > limit:
                self._error = length_error(length, 4, limit, "message")
                break
            if stop > end:
                self._need = stop - pos
                break
            kind = data[pos]
            if bulk[kind]:
                if run_count == 0:
                    run_start = pos
                run_count += 1
            else:
                if run_count:
                    append(Run(run_count, memoryview(data)[run_start:pos]))
                    run_count = 0
                append(_new(Frame, (types[kind], data[pos:stop])))
            pos = stop
        else:
            self._need = 5
        if run_count:
            append(Run(run_count, memoryview(data)[run_start:pos]))
        return pos
