"""The uploader reads only regular files below the spool, through no link (issue 18, red-team
finding 5 and its siblings): a linked folder, a FIFO. Real moto_server, real files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.recording.upload import Uploader
from tests.reals3 import MotoS3
from tests.recording.test_objects import store_for, wait_until

DAY = Path("2026") / "12" / "07"


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path)
    try:
        yield server.start()
    finally:
        server.close()


def drain(uploader: Uploader) -> None:
    uploader.start()
    try:
        uploader.recover()
        wait_until(lambda: not uploader.pending())
    finally:
        uploader.stop()


def test_a_linked_day_folder_is_never_read(moto: MotoS3, tmp_path: Path) -> None:
    """The day folder is a link to a folder outside the spool holding a file named like a
    recording: nothing of it reaches the bucket, and the file outside stays."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "s-x.cast"
    secret.write_bytes(b"not a recording: a file the bastion's user may read")
    spool = tmp_path / "recordings"
    (spool / DAY).parent.mkdir(parents=True)
    (spool / DAY).symlink_to(outside, target_is_directory=True)
    drain(Uploader(store_for(moto, tmp_path), spool, poll=0.05))
    assert moto.object_keys() == []
    assert secret.exists()


def test_a_fifo_in_the_spool_never_holds_the_uploader(moto: MotoS3, tmp_path: Path) -> None:
    """A FIFO named like a recording is refused (opening it does not wait for a writer), and
    the real recording beside it is still uploaded."""
    spool = tmp_path / "recordings"
    (spool / DAY).mkdir(parents=True)
    os.mkfifo(spool / DAY / "s-fifo.cast")
    (spool / DAY / "s-real.cast").write_bytes(b"a real recording")
    drain(Uploader(store_for(moto, tmp_path), spool, poll=0.05))
    assert moto.object_keys() == ["node-a/2026/12/07/s-real.cast"]
    assert (spool / DAY / "s-fifo.cast").exists()
