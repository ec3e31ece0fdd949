"""Private files: written new with an exact mode or not at all, read only when private."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from bastion.privatefiles import NotPrivate, WriteFailed, read_private, write_new


def test_a_new_file_has_exactly_its_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_new(tmp_path / "k", b"secret", 0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o640
    with pytest.raises(FileExistsError):
        write_new(tmp_path / "k", b"other", 0o600)
    assert (tmp_path / "k").read_bytes() == b"secret"


def test_a_link_planted_in_its_place_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_bytes(b"keep")
    (tmp_path / "k").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        write_new(tmp_path / "k", b"secret", 0o600)
    assert (tmp_path / "elsewhere").read_bytes() == b"keep"


def test_a_write_that_fails_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteFailed, match="No space left"):
        write_new(tmp_path / "k", b"secret", 0o600)
    assert not (tmp_path / "k").exists()


def test_only_a_private_regular_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "k"
    write_new(path, b"secret", 0o600)
    assert read_private(path, 100) == b"secret"
    path.chmod(0o644)
    with pytest.raises(NotPrivate) as caught:
        read_private(path, 100)
    assert caught.value.mode == 0o644
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(NotPrivate) as caught:  # opened without blocking: no hang
        read_private(fifo, 100)
    assert caught.value.mode is None
    (tmp_path / "link").symlink_to(fifo)
    with pytest.raises(OSError, match=r"Too many levels|symbolic link"):
        read_private(tmp_path / "link", 100, follow=False)
