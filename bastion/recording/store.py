"""Write a session recording: encrypted asciicast v2, flushed and fsynced chunk by chunk.

The door creates a RecordingWriter before the first byte reaches the target (a
RecordingError means: refuse the session), feeds it the session's output, input and resizes,
calls flush() on a one-second timer (or whenever due() says so) and close() at the end. Any
write or fsync failure raises RecordingError and leaves the writer unusable: end the session.

Input goes through an EchoRedactor (see bastion.recording.redact), so keys the target did
not echo (passwords) are recorded masked. For exec sessions without a PTY, where stdin is
data (and may carry a password, as in ``sudo -S``), pass ``record_input=False``.

Thread safety: flush() and close() may run in a worker thread (``asyncio.to_thread``) while
the event loop keeps calling output(), input() and resize(); nothing else is shared.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.errors import SealError
from bastion.identity.sealing import SecretBox
from bastion.recording import container
from bastion.recording.model import Event, RecordingError, RecordingSummary
from bastion.recording.redact import EchoRedactor

FLUSH_INTERVAL = 1.0  # seconds: a crash loses at most this much
MAX_BUFFER = 1 << 20  # bytes of buffered events that force a flush at once
DEFAULT_SIZE = (80, 24)  # a width or height of 0 (unknown) is recorded as these
_SLICE = 256 * 1024  # larger reads are recorded as several events
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
    return json.dumps(header).encode("ascii") + b"\n"


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


class RecordingWriter:
    """Appends one session's events to its encrypted asciicast v2 recording."""

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
        record_input: bool = True,
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
        writer = cls(
            fd, path, session_id, AESGCM(key), record_input=record_input, monotonic=monotonic
        )
        try:
            writer._emit(container.header_line(session_id, wrapped) + writer._seal(header, False))
            os.fsync(fd)
            _fsync_dir(path.parent)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise RecordingError(f"cannot open the recording {path}: {_reason(exc)}") from None
        return writer

    def __init__(
        self,
        fd: int,
        path: Path,
        session_id: str,
        aead: AESGCM,
        *,
        record_input: bool,
        monotonic: Callable[[], float],
    ) -> None:
        """Use create(); this wraps an already opened, empty file."""
        self._fd = fd
        self._path = path
        self._session_id = session_id
        self._aead = aead
        self._monotonic = monotonic
        self._redactor = EchoRedactor() if record_input else None
        self._out_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._io_lock = threading.Lock()  # file writes, in chunk order
        self._buf_lock = threading.Lock()  # the event buffer, decoder and redactor
        self._buf: list[str] = []
        self._buf_bytes = 0
        self._last_time = 0.0
        self._index = 0
        self._digest = hashlib.sha256()
        self._written = 0
        self._last_flush = monotonic()
        self._unsynced = False  # chunks written by the memory bound, not yet fsynced
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

    def output(self, data: bytes, elapsed: float) -> list[Event]:
        """Record output; return the input events its echo released (already redacted)."""
        self._check_usable()
        _check_elapsed(elapsed)
        released: list[Event] = []
        for start in range(0, len(data), _SLICE):
            piece = data[start : start + _SLICE]
            with self._buf_lock:
                if self._redactor is not None:
                    released += self._add_all(self._redactor.output(piece, elapsed))
                text = self._out_decoder.decode(piece)
                if text:
                    self._add(elapsed, "o", text)
                full = self._buf_bytes >= MAX_BUFFER
            if full:
                self._flush(sync=False)
        return released

    def input(self, data: bytes, elapsed: float) -> list[Event]:
        """Record typed input through the redactor; return the input events recorded now."""
        self._check_usable()
        _check_elapsed(elapsed)
        if self._redactor is None:
            return []
        recorded: list[Event] = []
        for start in range(0, len(data), _SLICE):
            with self._buf_lock:
                recorded += self._add_all(
                    self._redactor.input(data[start : start + _SLICE], elapsed)
                )
                full = self._buf_bytes >= MAX_BUFFER
            if full:
                self._flush(sync=False)
        return recorded

    def resize(self, width: int, height: int, elapsed: float) -> None:
        """Record a terminal resize as an "r" event with data "WxH"."""
        self._check_usable()
        _check_elapsed(elapsed)
        cols, rows = _size(width, height)
        with self._buf_lock:
            self._add(elapsed, "r", f"{cols}x{rows}")

    def due(self, now_monotonic: float) -> bool:
        """True when data waits (buffered or not yet fsynced) and a flush interval passed."""
        waiting = self._buf_bytes > 0 or self._unsynced
        return waiting and now_monotonic - self._last_flush >= FLUSH_INTERVAL

    def flush(self) -> None:
        """Write the buffered events as one chunk and fsync it; RecordingError on failure."""
        self._flush(sync=True)

    def _flush(self, sync: bool) -> None:
        """Write buffered events as one chunk; fsync too when sync (the timer's flush).

        A flush forced by the memory bound skips the fsync: the next timed flush makes it
        durable, so a crash still loses at most about one flush interval.
        """
        with self._io_lock:
            self._check_usable()
            with self._buf_lock:
                payload = self._take()
            if payload:
                self._write_chunk(payload, final=False, sync=sync)
            elif sync and self._unsynced:
                self._sync()

    def close(self) -> RecordingSummary:
        """Write the final chunk, fsync and close; return the file's SHA-256 and size."""
        with self._io_lock:
            if self._summary is not None:
                return self._summary
            try:
                self._check_usable()
                with self._buf_lock:
                    self._finish_streams()
                    payload = self._take()
                self._write_chunk(payload, final=True, sync=True)
                self._check_size()
            finally:
                self._close_fd()
            self._summary = RecordingSummary(self._path, self._digest.hexdigest(), self._written)
            return self._summary

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise RecordingError(
                f"cannot write the recording {self._path}: an earlier write failed ({self._failed})"
            )
        if self._summary is not None or self._fd < 0:
            raise RecordingError(f"the recording {self._path} is closed")

    def _add_all(self, events: list[Event]) -> list[Event]:
        for event in events:
            self._add(event.elapsed, event.code, event.data)
        return events

    def _add(self, elapsed: float, code: str, text: str) -> None:
        """Buffer one event line; times never go backwards (buf_lock held)."""
        elapsed = max(elapsed, self._last_time)
        self._last_time = elapsed
        line = f'[{elapsed:.6f}, "{code}", {json.dumps(text)}]\n'
        self._buf.append(line)
        self._buf_bytes += len(line)  # ASCII: json.dumps escapes everything else

    def _take(self) -> bytes:
        payload = "".join(self._buf).encode("ascii")
        self._buf = []
        self._buf_bytes = 0
        return payload

    def _finish_streams(self) -> None:
        """Session end: masked pending input and any incomplete UTF-8 tail (buf_lock held)."""
        if self._redactor is not None:
            self._add_all(self._redactor.flush_pending())
        tail = self._out_decoder.decode(b"", final=True)
        if tail:
            self._add(self._last_time, "o", tail)

    def _seal(self, plaintext: bytes, final: bool) -> bytes:
        line = container.seal_chunk(self._aead, self._session_id, self._index, plaintext, final)
        self._index += 1
        return line

    def _emit(self, data: bytes) -> None:
        """Write all of data at the end of the file (io_lock held)."""
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            if written <= 0:
                raise OSError(errno.EIO, "short write")
            view = view[written:]
        self._digest.update(data)
        self._written += len(data)

    def _write_chunk(self, payload: bytes, final: bool, sync: bool) -> None:
        """Seal and write one chunk; any failure makes the writer unusable (io_lock held)."""
        try:
            self._emit(self._seal(payload, final))
        except OSError as exc:
            self._fail(exc)
        if sync:
            self._sync()
        else:
            self._unsynced = True

    def _sync(self) -> None:
        """fsync what was written; the flush interval restarts (io_lock held)."""
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._fail(exc)
        self._unsynced = False
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
