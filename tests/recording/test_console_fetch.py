"""The web console's downloads from the object store (bastion/recording/fetch.py `fetched`):
a bounded number at once, each waited for a bounded time, never more than the session row
holds; against a real hostile S3-compatible server on loopback (tests/hostiles3.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import botocore.exceptions
import pytest

from bastion.config import Config, load_config
from bastion.identity.sealing import SecretBox
from bastion.recording import fetch
from bastion.recording.check import chained_recording_problems
from bastion.recording.fetch import ConsoleDownloads, Fetcher, fetched
from bastion.recording.model import RecordingError
from bastion.recording.objects import ObjectStoreError
from tests.hostiles3 import HostileS3
from tests.recording.test_objects import wait_until

RECORDED = Path("2026") / "12" / "07" / "s-gone.cast"  # in no spool: only in the bucket


def configured(hostile: HostileS3, tmp_path: Path) -> Config:
    hostile.write_credentials(tmp_path / "s3.credentials")
    (tmp_path / "bastion.toml").write_text(hostile.config("s3.credentials"), "utf-8")
    return load_config(tmp_path / "bastion.toml")


async def test_one_download_more_than_the_console_allows_is_refused_at_once(
    tmp_path: Path,
) -> None:
    """With every download slot held by a store that hangs, the next ask is refused at once
    (not queued behind the hanging ones, taking a thread of its own)."""
    with HostileS3(head_size=2000, hang=True) as hostile:
        config = configured(hostile, tmp_path)
        downloads = ConsoleDownloads(slots=1, deadline=60)
        held = Fetcher(config)
        last = fetch._Last(held.close)
        first = asyncio.ensure_future(
            downloads.fetch(held, config.paths.recordings / RECORDED, 2000, last)
        )
        try:
            await asyncio.to_thread(wait_until, lambda: hostile.hanging >= 1)
            with Fetcher(config) as other, pytest.raises(RecordingError, match="at once"):
                await downloads.fetch(other, config.paths.recordings / RECORDED, 2000, last)
            assert hostile.gets == 1
        finally:
            hostile.release()
            await asyncio.gather(first, return_exceptions=True)
            last.release()


async def test_a_download_that_does_not_end_is_given_up_and_its_copy_removed(
    tmp_path: Path,
) -> None:
    """A store that sends the first bytes and then nothing: the console gives up after its
    deadline with one clear error, and the partial copy goes once the thread lets go. The
    copy is made on the bastion's disk, below the spool, never in /tmp (often tmpfs: a big
    recording, or many, would fill the memory)."""
    with HostileS3(head_size=2000, hang=True) as hostile:
        config = configured(hostile, tmp_path)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fetch, "_console", ConsoleDownloads(slots=2, deadline=0.5))
            with pytest.raises(RecordingError, match="did not deliver"):
                async with fetched(config, config.paths.recordings / RECORDED, 2000):
                    raise AssertionError("never reached: the download did not end")
        await asyncio.to_thread(wait_until, lambda: hostile.hanging >= 1)  # the copy begun
        in_tmp = list(Path(tempfile.gettempdir()).glob("bastion-recordings-*/*-s-gone.cast"))
        copies = list((config.paths.recordings / fetch.COPIES).glob("*/*-s-gone.cast"))
        hostile.release()
        await asyncio.to_thread(
            wait_until, lambda: not [c for c in copies if c.exists()] and hostile.hanging == 0
        )
    assert in_tmp == [] and len(copies) == 1, (in_tmp, copies)
    assert list((config.paths.recordings / fetch.COPIES).iterdir()) == []


def test_copies_a_killed_process_left_are_removed_by_the_next(tmp_path: Path) -> None:
    """`bastion replay` killed mid-download leaves its copy (atexit never ran): the next
    process to fetch removes the folders of processes no longer running, not its own."""
    with HostileS3(head_size=100) as hostile:
        config = configured(hostile, tmp_path)
        copies = fetch.copies_folder(config.paths.recordings)
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        left = copies / f"{gone.stdout.strip()}-x1"
        left.mkdir()
        (left / "1-s-old.cast").write_bytes(b"a decrypted-looking copy")
        with Fetcher(config) as fetcher:
            copy = fetcher.local(config.paths.recordings / RECORDED, 100)
            assert copy.parent.parent == copies and copy.read_bytes() == b"\0" * 100
            assert not left.exists()
        assert not copy.exists()


async def test_a_copy_stops_at_the_size_the_session_row_holds(tmp_path: Path) -> None:
    """The bucket's object is larger than the recording the row vouches for (someone wrote
    the bucket): the console's copy is refused, never more than the row's size taken."""
    with HostileS3(head_size=5000) as hostile:
        config = configured(hostile, tmp_path)
        with pytest.raises(RecordingError, match="more than the 100 bytes"):
            async with fetched(config, config.paths.recordings / RECORDED, 100):
                raise AssertionError("never reached: the object is larger than the row says")
    assert hostile.sent <= 5000


def test_a_check_copies_no_more_than_the_chain_says_the_recording_holds(tmp_path: Path) -> None:
    """`audit verify` and the reviews read a recording the spool no longer has from the
    bucket: an object larger than the size the chain holds (announced honestly, 8 MiB) is
    cut off at that size and reported, never copied whole."""
    with HostileS3(head_size=8 << 20) as hostile:
        config = configured(hostile, tmp_path)
        detail = {"recording": str(config.paths.recordings / RECORDED),
                  "recording_sha256": "0" * 64, "recording_size": 100}  # fmt: skip
        box = SecretBox(os.urandom(32))
        with Fetcher(config) as fetcher:
            problems = chained_recording_problems(box, "s-gone", detail, fetcher.local)
    assert len(problems) == 1 and "more than the 100 bytes" in problems[0], problems
    assert hostile.sent <= 1 << 20


def test_what_a_store_says_reaches_no_log_with_control_characters(tmp_path: Path) -> None:
    """A hostile store's error message with terminal escapes and line breaks becomes one
    printable line (it goes to logs and to the console's answer)."""
    with HostileS3() as hostile:
        config = configured(hostile, tmp_path)
        with Fetcher(config) as fetcher:
            store = fetcher.store
            assert store is not None
            said = {"Error": {"Code": "Slow\x1bDown", "Message": "a\x1b[2J\nforged line\r"}}

            def refuse() -> None:
                raise botocore.exceptions.ClientError(said, "GetObject")  # type: ignore[arg-type]

            with pytest.raises(ObjectStoreError) as refused:
                store._call("read", "k", refuse)
    text = str(refused.value)
    assert text.isprintable() and "forged line" in text, text
