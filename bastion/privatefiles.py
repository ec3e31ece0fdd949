"""Files only their owner may touch: written new with an exact mode, read only when private."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriteFailed(OSError):
    """The file was created but its content could not be written (it is removed again)."""


class NotPrivate(Exception):
    """Not a regular file (mode None), or other users can reach it (its mode)."""

    def __init__(self, mode: int | None) -> None:
        super().__init__("not a regular file" if mode is None else f"mode {mode:04o}")
        self.mode = mode


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """All of data to fd (os.write may take less than it is given)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@contextmanager
def created(path: Path, mode: int) -> Iterator[int]:
    """A new file at path with exactly `mode` (whatever the umask), open for writing; fsynced
    when the block ends. Never overwrites (FileExistsError) nor follows a link; a failure in
    the block removes the file again (an OSError comes out as WriteFailed)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        yield fd
        os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteFailed):
            raise WriteFailed(exc.errno, exc.strerror) from exc
        raise
    os.close(fd)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create path with exactly `mode`, write data and fsync it (see `created`)."""
    with created(path, mode) as fd:
        write_all(fd, data)


@contextmanager
def opened_private(path: Path, *, follow: bool = True) -> Iterator[tuple[int, os.stat_result]]:
    """A regular file only its owner can reach, open for reading, and its stat; NotPrivate if
    it is not one, FileNotFoundError or OSError as the system says. Opened without blocking,
    so a FIFO put in its place cannot hang the caller."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotPrivate(None)
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise NotPrivate(stat.S_IMODE(info.st_mode))
        yield fd, info
    finally:
        os.close(fd)


def read_up_to(fd: int, limit: int, chunk: int = 1 << 20) -> bytes:
    """Up to `limit` bytes from fd: all of them unless the end comes first (one os.read may
    return less than asked, and on Linux never more than about 2 GiB)."""
    parts: list[bytes] = []
    left = limit
    while left > 0:
        part = os.read(fd, min(left, chunk))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_private(path: Path, limit: int, *, follow: bool = True) -> bytes:
    """Up to `limit` bytes of a regular file only its owner can reach (never fewer unless the
    file ends first); NotPrivate if it is not one, FileNotFoundError or OSError as the system
    says. Opened without blocking, so a FIFO put in its place cannot hang the caller."""
    with opened_private(path, follow=follow) as (fd, _):
        return read_up_to(fd, limit)
