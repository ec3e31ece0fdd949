"""Files only their owner may touch: written new with an exact mode, read only when private."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class WriteFailed(OSError):
    """The file was created but its content could not be written (it is removed again)."""


class NotPrivate(Exception):
    """Not a regular file (mode None), or other users can reach it (its mode)."""

    def __init__(self, mode: int | None) -> None:
        super().__init__("not a regular file" if mode is None else f"mode {mode:04o}")
        self.mode = mode


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create path with exactly `mode` (whatever the umask), write data and fsync it. Never
    overwrites (FileExistsError) nor follows a link; a failure once the file exists is a
    WriteFailed, and the half-written file is removed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteFailed(exc.errno, exc.strerror) from exc
        raise
    os.close(fd)


def read_private(path: Path, limit: int, *, follow: bool = True) -> bytes:
    """Up to `limit` bytes of a regular file only its owner can reach; NotPrivate if it is
    not one, FileNotFoundError or OSError as the system says. Opened without blocking, so a
    FIFO put in its place cannot hang the caller."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotPrivate(None)
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise NotPrivate(stat.S_IMODE(info.st_mode))
        return os.read(fd, limit)
    finally:
        os.close(fd)
