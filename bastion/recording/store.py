"""Write a session recording: every stream in encrypted binary frames, sealed in big chunks.

The door creates a RecordingWriter before the first byte reaches the target (a
RecordingError means: refuse the session), feeds it the session's output (stdout, stderr),
input and resizes, calls flush() on a one-second timer (or whenever due() says so) and
close() at the end. Any write or fsync failure raises RecordingError and leaves the writer
unusable: end the session.

Every input byte is recorded, terminal or not; a secret typed at a password prompt is masked
first (see bastion.recording.redact). Data is framed as it comes (a copy, no escaping) and
sealed in chunks of CHUNK_BYTES: a full chunk is encrypted, hashed and written by a worker
thread while the relay goes on; when MAX_WAITING chunks wait for it, the caller writes them
itself (back-pressure). A failure in the worker shows on the writer's next call.

Thread safety: flush() and close() may run in a worker thread (``asyncio.to_thread``) while
the event loop keeps calling output(), input() and resize(); nothing else is shared. flush()'s
fsync holds no lock the relay needs (see flush()), so a slow disk does not stall the relay.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from bastion.errors import SealError
from bastion.identity.sealing import SecretBox
from bastion.recording import container, frames
from bastion.recording.model import RecordingError, RecordingSummary, StreamStat
from bastion.recording.redact import PromptRedactor

FLUSH_INTERVAL = 1.0  # seconds: a crash loses at most this much
MAX_BUFFER = 1 << 20  # bytes of buffered frames that make a chunk (CHUNK_BYTES)
CHUNK_BYTES = MAX_BUFFER
MAX_WAITING = 4  # full chunks waiting for the worker before the caller writes them itself
DEFAULT_SIZE = (80, 24)  # a width or height of 0 (unknown) is recorded as these
_SLICE = CHUNK_BYTES  # larger reads are recorded as several frames
_SEALER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recording")
_MAX_ELAPSED = 1e9
_MAX_DIMENSION = 65535


def recording_path(root: Path, session_id: str, started: datetime) -> Path:
    """Where a session's recording lives: root/YYYY/MM/DD/<session_id>.cast (UTC date)."""
    day = started.astimezone(UTC)
    return root / f"{day:%Y}" / f"{day:%m}" / f"{day:%d}" / f"{session_id}.cast"


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _size(width: int, height: int) -> tuple[int, int]:
    for value in (width, height):
        if type(value) is not int or not 0 <= value <= _MAX_DIMENSION:
            raise ValueError(f"terminal size must be whole numbers 0..{_MAX_DIMENSION}")
    return width or DEFAULT_SIZE[0], height or DEFAULT_SIZE[1]


def _check_elapsed(elapsed: float) -> None:
    if not 0.0 <= elapsed < _MAX_ELAPSED:  # also refuses NaN
        raise ValueError("elapsed must be a number of seconds >= 0")


def _asciicast_header(
    width: int, height: int, started: datetime, title: str, env: Mapping[str, str]
) -> bytes:
    if not isinstance(title, str) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("title and env must be strings")
    cols, rows = _size(width, height)
    header = {
        "version": 2,
        "width": cols,
        "height": rows,
        "timestamp": int(started.timestamp()),
        "title": title,
        "env": dict(env),
    }
    return json.dumps(header).encode("ascii")


def _make_dirs(directory: Path) -> None:
    """Create directory and any missing parents, each mode 0700, and make them durable."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not path.is_dir():
                raise
            continue
        os.chmod(path, 0o700)  # exact mode whatever the umask
        _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some file systems cannot sync a directory
            raise
    finally:
        os.close(fd)


def _open_new(path: Path) -> int:
    _make_dirs(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


class _Chunk:
    """Frames waiting to be sealed: each frame's header and data, kept by reference."""

    __slots__ = ("parts", "size", "streams")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.streams: list[tuple[bytes, bytes]] = []  # (kind, data) to hash


class RecordingWriter:
    """Appends one session's streams to its encrypted recording."""

    @classmethod
    def create(  # noqa: PLR0917 - the signature the doors call
        cls,
        root: Path,
        session_id: str,
        started: datetime,
        width: int,
        height: int,
        title: str,
        env: Mapping[str, str],
        box: SecretBox,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> RecordingWriter:
        """Create the recording with its asciicast header, fsynced; RecordingError if not."""
        if not container.valid_session_id(session_id):
            raise ValueError("session id must be 1-128 letters, digits, '.', '_' or '-'")
        if started.tzinfo is None:
            raise ValueError("started must be an aware datetime")
        header = _asciicast_header(width, height, started, title, env)
        path = recording_path(root, session_id, started)
        key = secrets.token_bytes(container.KEY_SIZE)
        try:
            wrapped = box.seal(key, context=container.key_context(session_id))
        except SealError as exc:
            raise RecordingError(f"cannot open the recording {path}: {exc.message}") from None
        try:
            fd = _open_new(path)
        except OSError as exc:
            raise RecordingError(f"cannot open the recording {path}: {_reason(exc)}") from None
        writer = cls(fd, path, session_id, key, monotonic=monotonic)
        first = frames.frame_header(frames.HEADER, 0.0, len(header)) + header
        try:
            writer._emit(container.header_line(session_id, wrapped))
            writer._emit(*writer._seal([first], False))
            os.fsync(fd)
            _fsync_dir(path.parent)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise RecordingError(f"cannot open the recording {path}: {_reason(exc)}") from None
        return writer

    def __init__(
        self, fd: int, path: Path, session_id: str, key: bytes, *,
        monotonic: Callable[[], float],
    ) -> None:  # fmt: skip
        """Use create(); this wraps an already opened, empty file."""
        self._fd = fd
        self._path = path
        self._session_id = session_id
        self._key = key
        self._monotonic = monotonic
        self.redactor = PromptRedactor()
        self._sync_lock = threading.Lock()  # an fsync running; taken before io_lock
        self._io_lock = threading.Lock()  # file writes, in chunk order
        self._buf_lock = threading.Lock()  # the open chunk and the redactor
        self._chunk = _Chunk()
        self._waiting: deque[_Chunk] = deque()  # full chunks, oldest first
        self._last_time = 0.0
        self._index = 0
        self._digest = hashlib.sha256()
        self._streams = {kind: hashlib.sha256() for kind in frames.STREAMS}
        self._counts = dict.fromkeys(frames.STREAMS, 0)
        self._written = 0
        self._last_flush = monotonic()
        self._unsynced = False  # chunks written but not yet fsynced
        self._failed: str | None = None
        self._summary: RecordingSummary | None = None

    def __repr__(self) -> str:
        return f"RecordingWriter(path={str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def session_id(self) -> str:
        return self._session_id

    def output(self, data: bytes, elapsed: float, *, stderr: bool = False) -> None:
        """Record output the target sent (stdout or the terminal; stderr when told)."""
        self._check_usable()
        _check_elapsed(elapsed)
        if not data:
            return
        with self._buf_lock:
            self.redactor.output(data)
        self._add(frames.STDERR if stderr else frames.OUTPUT, elapsed, data)

    def input(self, data: bytes, elapsed: float) -> bytes:
        """Record input (stdin or typed keys), a secret typed at a prompt masked; return
        the bytes recorded."""
        self._check_usable()
        _check_elapsed(elapsed)
        if not data:
            return data
        with self._buf_lock:
            masked = self.redactor.masked_lines
            data = self.redactor.input(data)
            prompt = self.redactor.prompt if self.redactor.masked_lines != masked else None
        if prompt is not None:  # a reviewer sees where input was hidden, and why
            note = f"input masked at a secret prompt: {prompt}"
            self._add(frames.MARKER, elapsed, note.encode("utf-8", "replace"))
        self._add(frames.INPUT, elapsed, data)
        return data

    def resize(self, width: int, height: int, elapsed: float) -> None:
        """Record a terminal resize as an "r" event with data "WxH"."""
        self._check_usable()
        _check_elapsed(elapsed)
        cols, rows = _size(width, height)
        self._add(frames.RESIZE, elapsed, f"{cols}x{rows}".encode("ascii"))

    def due(self, now_monotonic: float) -> bool:
        """True when data waits (buffered or not yet fsynced) and a flush interval passed."""
        waiting = bool(self._chunk.size) or bool(self._waiting) or self._unsynced
        return waiting and now_monotonic - self._last_flush >= FLUSH_INTERVAL

    def flush(self) -> None:
        """Write everything buffered and fsync it; RecordingError on failure.

        The fsync runs without io_lock: the worker (and the relay, when too many chunks
        wait) go on writing while the disk catches up, so a slow disk never stalls the event
        loop. Chunks written during the fsync are synced by the next flush or by close()."""
        with self._buf_lock:
            self._rotate()
        with self._sync_lock:  # close() takes it first: the fd stays open while it syncs
            with self._io_lock:
                self._check_usable()
                self._write_waiting()
                unsynced, self._unsynced = self._unsynced, False
            if unsynced:
                self._sync()

    def close(self) -> RecordingSummary:
        """Write the final chunk, fsync and close; return the file's SHA-256, size, streams."""
        with self._sync_lock, self._io_lock:
            if self._summary is not None:
                return self._summary
            try:
                self._check_usable()
                self._write_waiting()
                with self._buf_lock:
                    last, self._chunk = self._chunk, _Chunk()
                self._write_chunk(last, final=True)
                self._unsynced = False
                self._sync()
                self._check_size()
            finally:
                self._close_fd()
            streams = {name: StreamStat(self._counts[kind], self._streams[kind].hexdigest())
                       for kind, name in frames.STREAMS.items()}  # fmt: skip
            self._summary = RecordingSummary(
                self._path, self._digest.hexdigest(), self._written, streams
            )
            return self._summary

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise RecordingError(
                f"cannot write the recording {self._path}: an earlier write failed ({self._failed})"
            )
        if self._summary is not None or self._fd < 0:
            raise RecordingError(f"the recording {self._path} is closed")

    def _add(self, kind: bytes, elapsed: float, data: bytes) -> None:
        """Frame data into the open chunk; a full chunk goes to the worker."""
        for start in range(0, len(data), _SLICE):
            piece = data[start : start + _SLICE]
            with self._buf_lock:
                elapsed = self._last_time = max(elapsed, self._last_time)
                chunk = self._chunk
                chunk.parts += (frames.frame_header(kind, elapsed, len(piece)), piece)
                chunk.size += frames.FRAME.size + len(piece)
                if kind in frames.STREAMS:
                    chunk.streams.append((kind, piece))
                full = chunk.size >= CHUNK_BYTES and self._rotate()
            if full:
                self._hand_over()

    def _rotate(self) -> bool:
        """Move the open chunk to the waiting queue (buf_lock held); True if it had data."""
        if not self._chunk.size:
            return False
        self._waiting.append(self._chunk)
        self._chunk = _Chunk()
        return True

    def _hand_over(self) -> None:
        """Let the worker write waiting chunks; write them here when too many wait."""
        if len(self._waiting) <= MAX_WAITING:
            _SEALER.submit(self._write_in_worker)
            return
        with self._io_lock:
            self._check_usable()
            self._write_waiting()

    def _write_in_worker(self) -> None:
        with self._io_lock:
            if self._failed is not None or self._fd < 0:
                return
            with contextlib.suppress(RecordingError):  # _failed is set: the next call raises
                self._write_waiting()

    def _write_waiting(self) -> None:
        """Seal and write every waiting chunk in order (io_lock held)."""
        while self._waiting:
            self._write_chunk(self._waiting.popleft(), final=False)

    def _seal(self, parts: list[bytes], final: bool) -> tuple[bytes, bytes, memoryview]:
        """The next chunk's record; its ciphertext is valid until this thread seals again."""
        record = container.seal_parts(self._key, self._session_id, self._index, parts, final)
        self._index += 1
        return record

    def _emit(self, *parts: bytes | memoryview) -> None:
        """Write all the parts, in order, at the end of the file (io_lock held)."""
        for part in parts:
            view = memoryview(part)
            while view:
                written = os.write(self._fd, view)
                if written <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[written:]
            self._digest.update(part)
            self._written += len(part)

    def _write_chunk(self, chunk: _Chunk, final: bool) -> None:
        """Hash its streams, seal and write one chunk; a failure is final (io_lock held)."""
        for kind, data in chunk.streams:
            self._streams[kind].update(data)
            self._counts[kind] += len(data)
        self._unsynced = True  # before the bytes reach the file: a flush must follow them
        try:
            self._emit(*self._seal(chunk.parts, final))
        except OSError as exc:
            self._fail(exc)

    def _sync(self) -> None:
        """fsync what was written; the flush interval restarts (sync_lock held)."""
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(exc)
        self._last_flush = self._monotonic()

    def _fail(self, exc: OSError) -> NoReturn:
        self._failed = _reason(exc)
        raise RecordingError(f"cannot write the recording {self._path}: {self._failed}") from None

    def _check_size(self) -> None:
        try:
            on_disk = os.fstat(self._fd).st_size
        except OSError as exc:
            self._failed = _reason(exc)
            raise RecordingError(
                f"cannot check the recording {self._path}: {self._failed}"
            ) from None
        if on_disk != self._written:
            self._failed = "file changed while being written"
            raise RecordingError(f"the recording {self._path} changed while being written")

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            os.close(fd)
        except OSError as exc:
            if self._failed is None:
                self._failed = _reason(exc)
                raise RecordingError(
                    f"cannot close the recording {self._path}: {self._failed}"
                ) from None
