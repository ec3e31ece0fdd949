"""Write a session recording: every stream in encrypted binary frames, sealed in big chunks.

The door creates a RecordingWriter before the first byte reaches the target (a
RecordingError means: refuse the session), feeds it the session's output (stdout, stderr),
input and resizes, calls flush() on a one-second timer (or whenever due() says so) and
close() at the end. Any write or fsync failure raises RecordingError and leaves the writer
unusable: end the session.

Every input byte is recorded, terminal or not; a secret typed at a password prompt is masked
first (see bastion.recording.redact). Data is framed as it comes (a copy, no escaping), each
stream hashed as it is framed, and sealed in chunks of CHUNK_BYTES by the thread that feeds
it; a worker thread hashes the file and writes the sealed chunks while the relay goes on.
Hashing and sealing where the bytes arrive cost the relay less than handing them to a thread:
each hand-over of the GIL stalled it (recorded exec cat 0.77x ProxyJump before, 0.9x after).

Back-pressure: when more than MAX_WAITING sealed chunks wait for the disk, congested()
says so and calls its callback once they drain; the door stops reading meanwhile. A caller
that goes on regardless writes the chunks itself beyond HARD_WAITING, so memory stays
bounded. A failure in the worker shows on the writer's next call.

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
MAX_WAITING = 4  # sealed chunks waiting for the disk before the writer is congested
HARD_WAITING = 16  # ... before the caller writes them itself
_POOLED = 2  # big ciphertext buffers a writer keeps for reuse
DEFAULT_SIZE = (80, 24)  # a width or height of 0 (unknown) is recorded as these
_SLICE = CHUNK_BYTES  # larger reads are recorded as several frames
_WRITERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recording")
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

    __slots__ = ("parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0


class _Sealed:
    """A sealed chunk waiting for the disk: its record's parts and the buffer it lives in."""

    __slots__ = ("buffer", "parts")

    def __init__(self, parts: tuple[bytes, bytes, memoryview], buffer: bytearray) -> None:
        self.parts = parts
        self.buffer = buffer


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
            writer._emit(*writer._seal([first], False, None))
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
        self._io_lock = threading.Lock()  # file writes and the file's hash, in chunk order
        self._buf_lock = threading.Lock()  # the open chunk, the redactor, stream hashes, sealing
        self._queue_lock = threading.Lock()  # the queue below; taken last, held briefly
        self._chunk = _Chunk()
        self._sealed: deque[_Sealed] = deque()  # sealed chunks for the disk, oldest first
        self._spare: list[bytearray] = []  # ciphertext buffers to reuse
        self._draining = False  # a worker is writing the queue
        self._on_drained: Callable[[], None] | None = None
        self._last_time = 0.0
        self._index = 0
        self._digest = hashlib.sha256()
        self._streams = {kind: hashlib.sha256() for kind in frames.STREAMS}
        self._counts = dict.fromkeys(frames.STREAMS, 0)
        self._written = 0
        self._last_flush = monotonic()
        self._unsynced = False  # chunks written but not yet fsynced
        self.durable = (0, hashlib.sha256().hexdigest())  # bytes flush() fsynced, their SHA-256
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
        waiting = bool(self._chunk.size) or bool(self._sealed) or self._unsynced
        return waiting and now_monotonic - self._last_flush >= FLUSH_INTERVAL

    def flush(self) -> None:
        """Write everything buffered and fsync it; RecordingError on failure.

        The fsync runs without io_lock: the worker (and the relay, when too many chunks
        wait) go on writing while the disk catches up, so a slow disk never stalls the event
        loop. Chunks written during the fsync are synced by the next flush or by close()."""
        with self._buf_lock:
            self._seal_open(final=False)
        with self._sync_lock:  # close() takes it first: the fd stays open while it syncs
            with self._io_lock:
                self._check_usable()
                self._write_sealed()
                unsynced, self._unsynced = self._unsynced, False
                upto = (self._written, self._digest.copy())
            with self._queue_lock:
                self._spare.clear()  # an idle session keeps no big buffer; bulk makes a new one
            if unsynced:
                self._sync()
                self.durable = (upto[0], upto[1].hexdigest())

    def close(self) -> RecordingSummary:
        """Write the final chunk, fsync and close; return the file's SHA-256, size, streams."""
        with self._sync_lock, self._io_lock:
            if self._summary is not None:
                return self._summary
            try:
                self._check_usable()
                with self._buf_lock:
                    self._seal_open(final=True)
                self._write_sealed()
                self._unsynced = False
                self._sync()
                self._check_size()
            finally:
                self._close_fd()
                self._release_waiters()
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

    def congested(self, resume: Callable[[], None]) -> bool:
        """True when more than MAX_WAITING sealed chunks wait for the disk: stop feeding the
        writer; resume() is then called once, from a worker thread, when at most one waits
        (or the writer failed, which its next call reports)."""
        with self._queue_lock:
            if len(self._sealed) <= MAX_WAITING or self._failed is not None:
                return False
            self._on_drained = resume
            return True

    def _add(self, kind: bytes, elapsed: float, data: bytes) -> None:
        """Frame and hash data into the open chunk; a full chunk is sealed and queued."""
        for start in range(0, len(data), _SLICE):
            piece = data[start : start + _SLICE]
            with self._buf_lock:
                elapsed = self._last_time = max(elapsed, self._last_time)
                chunk = self._chunk
                chunk.parts += (frames.frame_header(kind, elapsed, len(piece)), piece)
                chunk.size += frames.FRAME.size + len(piece)
                if kind in frames.STREAMS:
                    self._streams[kind].update(piece)
                    self._counts[kind] += len(piece)
                full = chunk.size >= CHUNK_BYTES and self._seal_open(final=False)
            if full:
                self._hand_over()

    def _seal_open(self, final: bool) -> bool:
        """Seal the open chunk and queue it for the disk (buf_lock held); True if it had data.
        The final chunk is sealed even when empty: it says the recording is whole."""
        chunk = self._chunk
        if not chunk.size and not final:
            return False
        self._chunk = _Chunk()
        with self._queue_lock:
            spare = self._spare.pop() if self._spare else None
        record = self._seal(chunk.parts, final, spare)
        buffer = record[2].obj  # spare, or a new buffer when spare was missing or too small
        assert isinstance(buffer, bytearray)
        with self._queue_lock:
            self._sealed.append(_Sealed(record, buffer))
        return True

    def _hand_over(self) -> None:
        """Have a worker write the queue; write it here when far too much waits."""
        with self._queue_lock:
            start, self._draining = not self._draining, True
            overflowing = len(self._sealed) > HARD_WAITING
        if start:
            _WRITERS.submit(self._drain)
        if overflowing:
            with self._io_lock:
                self._check_usable()
                self._write_sealed()

    def _drain(self) -> None:
        """The worker: write the queue until it is empty (or the writer failed)."""
        while True:
            with self._io_lock:
                if self._failed is None and self._fd >= 0:
                    with contextlib.suppress(RecordingError):  # _failed is set: next call raises
                        self._write_sealed()
            with self._queue_lock:
                if self._sealed and self._failed is None and self._fd >= 0:
                    continue
                self._draining = False
            self._release_waiters()
            return

    def _write_sealed(self) -> None:
        """Write every queued chunk in order (io_lock held); wake a waiting door as it drains."""
        while True:
            with self._queue_lock:
                if not self._sealed:
                    return
                sealed = self._sealed.popleft()
            self._unsynced = True  # before the bytes reach the file: a flush must follow them
            try:
                self._emit(*sealed.parts)
            except OSError as exc:
                with self._queue_lock:
                    self._sealed.clear()  # never written now: let the memory go
                self._fail(exc)
            with self._queue_lock:
                if len(sealed.buffer) >= CHUNK_BYTES and len(self._spare) < _POOLED:
                    self._spare.append(sealed.buffer)
                drained = len(self._sealed) <= 1
            if drained:
                self._release_waiters()

    def _release_waiters(self) -> None:
        """Call the door's resume callback, if one waits."""
        with self._queue_lock:
            resume, self._on_drained = self._on_drained, None
        if resume is not None:
            resume()

    def _seal(
        self, parts: list[bytes], final: bool, into: bytearray | None
    ) -> tuple[bytes, bytes, memoryview]:
        """The next chunk's record, its ciphertext in `into` if it fits (see seal_parts)."""
        record = container.seal_parts(self._key, self._session_id, self._index, parts, final,
                                      into=into)  # fmt: skip
        self._index += 1
        return record

    def _emit(self, *parts: bytes | memoryview) -> None:
        """Write all the parts, in order, at the end of the file, and hash them (io_lock
        held): one system call for the lot where the kernel takes it whole."""
        total = sum(len(part) for part in parts)
        written = os.writev(self._fd, parts)
        if written < total:  # a short (or no) vectored write: the rest one part at a time
            rest = memoryview(b"".join(parts))[written:]
            while rest:
                done = os.write(self._fd, rest)
                if done <= 0:
                    raise OSError(errno.EIO, "short write")
                rest = rest[done:]
        for part in parts:
            self._digest.update(part)
        self._written += total

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
