"""A passive SFTP v3 observer: relayed subsystem bytes in, completed file operations out.

The door relays the SFTP subsystem unchanged and feeds the same bytes here: `feed_client`
with what the client sent, `feed_server` with what the server answered, each in stream order
and every response after its request (as a relay forwards them). Packets are reassembled
across any chunk boundaries; nothing is ever sent. The protocol is version 3 of
draft-ietf-secsh-filexfer-02, which OpenSSH's sftp-server speaks, with OpenSSH's
extensions (its PROTOCOL file): SYMLINK takes (target, link) in OpenSSH's order, and
posix-rename@openssh.com and hardlink@openssh.com are reported as "rename" and "hardlink".

What comes out (`SftpOp`), when the server's answer arrives:

- a file handle's life, on its CLOSE answer: "write" (written, or opened with WRITE|TRUNC),
  "read" or "open-close", with bytes read and written and the SHA-256 of the whole file when
  it is proven: acknowledged writes contiguous from offset 0 on a file opened with TRUNC or
  EXCL, or cut by FSETSTAT to the length written (OpenSSH 9 scp writes in place, then cuts);
  reads whose answers cover offset 0 up to an end the server reported (EOF status, short read
  or FSTAT size), answers arriving in any order within a reorder buffer of 64 chunks per file
  and 16 MiB per session. Otherwise sha256=None and hash_incomplete=True.
- a directory handle's life, on its CLOSE answer: "list" with the number of entries read.
- a failed OPEN or OPENDIR: "open" or "list" with the error status.
- one op per REMOVE, RENAME, MKDIR, RMDIR, STAT, LSTAT, FSTAT, SETSTAT, FSETSTAT, REALPATH,
  READLINK, SYMLINK and EXTENDED request (name kept; paths parsed for the OpenSSH extensions
  that carry them), with status "ok" or the SSH_FX name, code and message of the failure.
- "unknown" for a packet type this observer does not know; it is not an error.

Structural violations (a length over MAX_PACKET, a field running past its packet, a first
packet that is not INIT/VERSION, a version other than 3, a request id reused while pending, more
than MAX_PENDING requests or MAX_HANDLES open handles) raise `SftpProtocolError`, which carries
the ops completed before it; the observer then stays failed. Answers to unknown request ids
are counted in `unmatched`, not raised.

Paths are decoded as UTF-8 with errors="backslashreplace": a name that is not UTF-8 stays
readable and storable anywhere (no lone surrogates), at the cost of not being reversible when
a real name contains a literal backslash sequence.

Limits: SETSTAT by path, FSETSTAT after reads, and another handle or client writing the same
file are not modelled (the hash may differ from the file on disk); copy-data copies bytes that
never cross the wire, so they are neither counted nor hashed.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_PACKET = 256 * 1024 + 1024  # OpenSSH's SFTP_MAX_MSG_LENGTH (256 KiB) plus headroom
MAX_PENDING = 4096  # outstanding requests
MAX_HANDLES = 4096  # open file and directory handles
MAX_HANDLE_LEN = 256  # the draft's limit on handle strings
REORDER_CHUNKS = 64  # out-of-order read answers kept per file
REORDER_BYTES = 16 * 1024 * 1024  # out-of-order read answers kept in all

INIT, VERSION, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = range(1, 11)
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = range(11, 21)
STATUS, HANDLE, DATA, NAME, ATTRS = range(101, 106)
EXTENDED, EXTENDED_REPLY = 200, 201
FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_EXCL = 1, 2, 4, 8, 16, 32
FX_OK, FX_EOF = 0, 1
ATTR_SIZE = 1
STATUS_NAMES = (
    "ok", "eof", "no-such-file", "permission-denied", "failure", "bad-message",
    "no-connection", "connection-lost", "op-unsupported",
)  # fmt: skip
_PATH_OPS = {
    STAT: "stat", LSTAT: "lstat", REMOVE: "remove", RMDIR: "rmdir", REALPATH: "realpath",
    READLINK: "readlink", OPENDIR: "list", MKDIR: "mkdir", SETSTAT: "setstat",
}  # fmt: skip
_HANDLE_OPS = {FSTAT: "fstat", FSETSTAT: "fsetstat", READDIR: "readdir", CLOSE: "close"}
_EXT_TWO_PATHS = {"posix-rename@openssh.com": "rename", "hardlink@openssh.com": "hardlink"}
_EXT_PATH = {"statvfs@openssh.com", "expand-path@openssh.com", "lsetstat@openssh.com"}
_EXT_HANDLE = {"fstatvfs@openssh.com", "fsync@openssh.com", "fsetstat@openssh.com"}
_RESPONSES = {STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY}


class SftpProtocolError(ValueError):
    """The stream is not SFTP v3 as relayed by a sane peer; `ops` completed before it."""

    def __init__(self, message: str, ops: list[SftpOp] | None = None) -> None:
        super().__init__(message)
        self.ops = ops or []


@dataclass(frozen=True, slots=True)
class SftpOp:
    """One completed operation, with the server's verdict on it."""

    op: str
    path: str | None = None
    path2: str | None = None  # rename/hardlink/symlink target, realpath/readlink answer
    bytes_read: int = 0
    bytes_written: int = 0
    sha256: str | None = None
    hash_incomplete: bool = False
    status: str = "ok"  # "ok", or the SSH_FX name ("no-such-file", ...), or "code-N"
    code: int = FX_OK
    message: str = ""
    pflags: int = 0  # the OPEN flags (FXF_*) of a file op
    entries: int = 0  # names read from a listed directory
    name: str | None = None  # extension name, or "type-N" for an unknown packet


def _status(code: int, message: str) -> dict[str, Any]:
    name = STATUS_NAMES[code] if code < len(STATUS_NAMES) else f"code-{code}"
    return {"status": name, "code": code, "message": message}


class _Reader:
    """Reads the fields of one packet; running past its end is a protocol error."""

    def __init__(self, packet: memoryview, what: str) -> None:
        self.data, self.pos, self.what = packet, 1, what

    def _take(self, n: int) -> memoryview:
        if n > len(self.data) - self.pos:
            raise SftpProtocolError(f"truncated {self.what} packet")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def u32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self._take(8), "big")

    def string(self) -> memoryview:
        return self._take(self.u32())

    def text(self) -> str:
        return bytes(self.string()).decode("utf-8", "backslashreplace")

    def handle(self) -> bytes:
        handle = bytes(self.string())
        if len(handle) > MAX_HANDLE_LEN:
            raise SftpProtocolError(f"{self.what} handle longer than {MAX_HANDLE_LEN} bytes")
        return handle

    def more(self) -> bool:
        return self.pos < len(self.data)


class _Framer:
    """Cuts one direction's byte stream into packets (type byte and body, no length)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def packets(self, data: bytes) -> Iterator[memoryview]:
        if not self.buf:  # the usual case: whole packets straight from the caller's bytes
            view, pos = memoryview(data), 0
        else:
            self.buf += data
            if not self._whole(self.buf, 0):
                return
            view, pos = memoryview(bytes(self.buf)), 0  # a copy only once a packet is whole
            self.buf.clear()
        while self._whole(view, pos):
            size = struct.unpack_from(">I", view, pos)[0]
            yield view[pos + 4 : pos + 4 + size]
            pos += 4 + size
        if pos < len(view):
            self.buf += view[pos:]

    @staticmethod
    def _whole(view: bytes | bytearray | memoryview, pos: int) -> bool:
        if len(view) - pos < 4:
            return False
        size: int = struct.unpack_from(">I", view, pos)[0]
        if not 0 < size <= MAX_PACKET:
            raise SftpProtocolError(f"packet length {size} outside 1..{MAX_PACKET}")
        return len(view) - pos - 4 >= size


@dataclass(slots=True)
class _Budget:
    """Bytes of out-of-order read answers held for the whole session."""

    held: int = 0


@dataclass(slots=True)
class _File:
    """An open file handle: what was read and written, and the running hashes."""

    path: str | None
    pflags: int
    bytes_read: int = 0
    bytes_written: int = 0
    reads: bool = False
    writes: bool = False
    error: tuple[int, str] | None = None
    w_hash: Any = field(default_factory=hashlib.sha256)
    w_next: int = 0
    w_ok: bool = True
    r_hash: Any = field(default_factory=hashlib.sha256)
    r_next: int = 0
    r_ok: bool = True
    chunks: dict[int, bytes] = field(default_factory=dict)
    end: int | None = None  # lowest offset the server said the file ends at
    cut: int | None = None  # size set by an acknowledged FSETSTAT

    def write(self, offset: int, data: memoryview) -> None:
        self.writes = True
        if self.w_ok and offset == self.w_next:
            self.w_hash.update(data)
            self.w_next += len(data)
        else:
            self.w_ok = False

    def eof(self, offset: int) -> None:
        self.end = offset if self.end is None else min(self.end, offset)

    def fail(self, code: int, message: str, budget: _Budget) -> None:
        self.error = self.error or (code, message)
        self.w_ok = False
        self.drop(budget)

    def drop(self, budget: _Budget) -> None:
        """Give up the read hash and free its reorder buffer."""
        self.r_ok = False
        budget.held -= sum(len(chunk) for chunk in self.chunks.values())
        self.chunks.clear()

    def data(self, offset: int, data: memoryview, asked: int, budget: _Budget) -> None:
        self.bytes_read += len(data)
        if len(data) < asked:  # sftp-server reads once: a short answer is the end of file
            self.eof(offset + len(data))
        if not self.r_ok:
            return
        if offset > self.r_next:
            old = self.chunks.pop(offset, b"")
            budget.held += len(data) - len(old)
            self.chunks[offset] = bytes(data)
            if len(self.chunks) > REORDER_CHUNKS or budget.held > REORDER_BYTES:
                self.drop(budget)
            return
        self._hash(offset, data)
        while self.chunks and (start := min(self.chunks)) <= self.r_next:
            chunk = self.chunks.pop(start)
            budget.held -= len(chunk)
            self._hash(start, memoryview(chunk))

    def _hash(self, offset: int, data: memoryview) -> None:
        skip = self.r_next - offset  # answers that overlap what is hashed add only the rest
        if skip < len(data):
            self.r_hash.update(data[skip:])
            self.r_next = offset + len(data)

    def op(self, code: int, message: str) -> SftpOp:
        if self.error is not None:
            code, message = self.error
        kind, hexdigest = "open-close", None
        if self.writes or (self.pflags & FXF_WRITE and self.pflags & FXF_TRUNC):
            started_empty = bool(self.pflags & (FXF_TRUNC | FXF_EXCL))
            ends_there = started_empty if self.cut is None else self.cut == self.w_next
            whole = self.w_ok and not self.reads and ends_there
            kind, hexdigest = "write", self.w_hash.hexdigest() if whole else None
        elif self.reads:
            whole = self.r_ok and not self.chunks and self.end == self.r_next
            kind, hexdigest = "read", self.r_hash.hexdigest() if whole else None
        return SftpOp(
            op=kind, path=self.path, bytes_read=self.bytes_read, sha256=hexdigest,
            bytes_written=self.bytes_written, pflags=self.pflags, **_status(code, message),
            hash_incomplete=kind != "open-close" and hexdigest is None,
        )  # fmt: skip


@dataclass(slots=True)
class _Dir:
    """An open directory handle and the names read from it."""

    path: str | None
    entries: int = 0
    error: tuple[int, str] | None = None

    def op(self, code: int, message: str) -> SftpOp:
        code, message = self.error or (code, message)
        return SftpOp(op="list", path=self.path, entries=self.entries, **_status(code, message))


@dataclass(slots=True)
class _Request:
    """A request waiting for its answer."""

    kind: int
    op: str
    path: str | None = None
    path2: str | None = None
    name: str | None = None
    pflags: int = 0
    offset: int = 0
    length: int = 0
    size: int | None = None  # the size an FSETSTAT sets
    state: _File | _Dir | None = None

    def done(self, code: int = FX_OK, message: str = "", **extra: Any) -> SftpOp:
        fields = {"op": self.op, "path": self.path, "path2": self.path2, "name": self.name}
        return SftpOp(**(fields | {"pflags": self.pflags} | _status(code, message) | extra))


class SftpObserver:
    """Feed it both directions of one SFTP session; it returns the operations completed."""

    def __init__(self) -> None:
        self.client_version: int | None = None
        self.version: int | None = None
        self.extensions: dict[str, str] = {}
        self.unmatched = 0  # answers whose request id was not pending
        self._client, self._server = _Framer(), _Framer()
        self._pending: dict[int, _Request] = {}
        self._handles: dict[bytes, _File | _Dir] = {}
        self._budget = _Budget()
        self._failed: SftpProtocolError | None = None

    def feed_client(self, data: bytes) -> list[SftpOp]:
        """Take bytes the client sent; return operations completed by them (rarely any)."""
        return self._feed(data, client=True)

    def feed_server(self, data: bytes) -> list[SftpOp]:
        """Take bytes the server sent; return the operations its answers completed."""
        return self._feed(data, client=False)

    def _feed(self, data: bytes, client: bool) -> list[SftpOp]:
        if self._failed is not None:
            raise SftpProtocolError(f"observer failed earlier: {self._failed}")
        ops: list[SftpOp] = []
        framer, side = (self._client, "client") if client else (self._server, "server")
        try:
            for packet in framer.packets(data):
                (self._request if client else self._answer)(packet, ops)
        except SftpProtocolError as exc:
            self._failed = SftpProtocolError(f"{side}: {exc}", ops)
            raise self._failed from exc
        return ops

    def _request(self, packet: memoryview, ops: list[SftpOp]) -> None:
        kind = packet[0]
        reader = _Reader(packet, f"type {kind} request")
        if (self.client_version is None) != (kind == INIT):
            raise SftpProtocolError("SSH_FXP_INIT must come first, and only once")
        if kind == INIT:
            self.client_version = reader.u32()
            return
        if kind not in _PATH_OPS and kind not in _HANDLE_OPS and kind not in _PARSERS:
            ops.append(SftpOp(op="unknown", name=f"type-{kind}"))
            return
        request_id = reader.u32()
        if request_id in self._pending:
            raise SftpProtocolError(f"request id {request_id} reused while pending")
        if len(self._pending) >= MAX_PENDING:
            raise SftpProtocolError(f"more than {MAX_PENDING} requests pending")
        self._pending[request_id] = self._parse(kind, reader)

    def _parse(self, kind: int, reader: _Reader) -> _Request:
        if kind in _PATH_OPS:
            return _Request(kind, _PATH_OPS[kind], path=reader.text())
        if kind in _HANDLE_OPS:
            handle = reader.handle()
            state = self._handles.pop(handle, None) if kind == CLOSE else self._handles.get(handle)
            request = _Request(
                kind, _HANDLE_OPS[kind], path=getattr(state, "path", None), state=state
            )
            if kind == FSETSTAT and reader.u32() & ATTR_SIZE:
                request.size = reader.u64()  # scp writes in place, then cuts the file here
            return request
        return _PARSERS[kind](self, reader)

    def _open(self, reader: _Reader) -> _Request:
        path = reader.text()
        return _Request(OPEN, "open", path=path, pflags=reader.u32())

    def _io(self, reader: _Reader, kind: int) -> _Request:
        state = self._handles.get(reader.handle())
        offset = reader.u64()
        file = state if isinstance(state, _File) else None
        if kind == READ:
            length = reader.u32()
            if file is not None:
                file.reads = True
            return _Request(READ, "read", offset=offset, length=length, state=file)
        data = reader.string()
        if file is not None:
            file.write(offset, data)
        return _Request(WRITE, "write", offset=offset, length=len(data), state=file)

    def _two_paths(self, reader: _Reader, kind: int) -> _Request:
        first, second = reader.text(), reader.text()
        if kind == SYMLINK:  # OpenSSH sends (target, link): see its PROTOCOL file, 3.1
            return _Request(kind, "symlink", path=second, path2=first)
        return _Request(kind, "rename", path=first, path2=second)

    def _extended(self, reader: _Reader) -> _Request:
        name = reader.text()
        request = _Request(EXTENDED, _EXT_TWO_PATHS.get(name, "extended"), name=name)
        if name in _EXT_TWO_PATHS:
            request.path, request.path2 = reader.text(), reader.text()
        elif name in _EXT_PATH:
            request.path = reader.text()
        elif name in _EXT_HANDLE or name == "copy-data":
            source = self._handles.get(reader.handle())
            request.path = source.path if source else None
            if name == "copy-data":
                reader.u64(), reader.u64()
                target = self._handles.get(reader.handle())
                request.path2 = target.path if target else None
        return request

    def _answer(self, packet: memoryview, ops: list[SftpOp]) -> None:
        kind = packet[0]
        reader = _Reader(packet, f"type {kind} answer")
        if (self.version is None) != (kind == VERSION):
            raise SftpProtocolError("SSH_FXP_VERSION must come first, and only once")
        if kind == VERSION:
            self._hello(reader)
            return
        if kind not in _RESPONSES:
            ops.append(SftpOp(op="unknown", name=f"type-{kind}"))
            return
        request = self._pending.pop(reader.u32(), None)
        if request is None:
            self.unmatched += 1
        elif kind == STATUS:
            code = reader.u32()
            message = reader.text() if reader.more() else ""  # language tag ignored
            self._on_status(request, code, message, ops)
        elif kind == HANDLE:
            self._on_handle(request, reader.handle(), ops)
        else:
            self._on_result(kind, request, reader, ops)

    def _on_result(self, kind: int, request: _Request, reader: _Reader, ops: list[SftpOp]) -> None:
        """DATA, NAME, ATTRS and EXTENDED_REPLY answers."""
        state = request.state
        if kind == DATA and isinstance(state, _File) and request.kind == READ:
            state.data(request.offset, reader.string(), request.length, self._budget)
        elif kind == NAME and isinstance(state, _Dir) and request.kind == READDIR:
            state.entries += reader.u32()
        elif kind == NAME:
            ops.append(request.done(path2=reader.text() if reader.u32() else None))
        elif request.kind not in (READ, WRITE, READDIR, CLOSE):
            if kind == ATTRS and isinstance(state, _File) and reader.u32() & ATTR_SIZE:
                state.eof(reader.u64())  # the size says where the file ends, as EOF would
            ops.append(request.done())

    def _hello(self, reader: _Reader) -> None:
        self.version = reader.u32()
        if self.version != 3:
            raise SftpProtocolError(f"SFTP version {self.version} is not supported (only 3)")
        while reader.more():
            name = reader.text()
            self.extensions[name] = reader.text()

    def _on_handle(self, request: _Request, handle: bytes, ops: list[SftpOp]) -> None:
        if request.kind not in (OPEN, OPENDIR):
            ops.append(request.done())
            return
        if len(self._handles) >= MAX_HANDLES:
            raise SftpProtocolError(f"more than {MAX_HANDLES} handles open")
        if request.kind == OPEN:
            self._handles[handle] = _File(request.path, request.pflags)
        else:
            self._handles[handle] = _Dir(request.path)

    def _on_status(self, request: _Request, code: int, message: str, ops: list[SftpOp]) -> None:
        state, kind = request.state, request.kind
        if kind == CLOSE:
            ops.append(state.op(code, message) if state else request.done(code, message))
        elif kind not in (READ, WRITE, READDIR):
            if code == FX_OK and isinstance(state, _File) and request.size is not None:
                state.cut = request.size
            ops.append(request.done(code, message))
        elif isinstance(state, _Dir):
            if code not in (FX_OK, FX_EOF):
                state.error = state.error or (code, message)
        elif state is None:
            return
        elif kind == READ and code == FX_EOF:
            state.eof(request.offset)
        elif kind == WRITE and code == FX_OK:
            state.bytes_written += request.length
        elif code != FX_OK:
            state.fail(code, message, self._budget)


_PARSERS: dict[int, Callable[[SftpObserver, _Reader], _Request]] = {
    OPEN: SftpObserver._open, EXTENDED: SftpObserver._extended,
    READ: lambda observer, reader: observer._io(reader, READ),
    WRITE: lambda observer, reader: observer._io(reader, WRITE),
    RENAME: lambda observer, reader: observer._two_paths(reader, RENAME),
    SYMLINK: lambda observer, reader: observer._two_paths(reader, SYMLINK),
}  # fmt: skip
