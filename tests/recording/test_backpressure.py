"""A recording whose disk is slow: the writer says it is congested, wakes the door once it
drains, never loses a byte, and keeps memory bounded for a caller that goes on regardless."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.identity.sealing import SecretBox
from bastion.recording import MAX_BUFFER, RecordingError, file_digest, read_streams
from bastion.recording import store as store_module
from bastion.recording.store import HARD_WAITING, MAX_WAITING
from tests.recording.helpers import SESSION, make_writer


class SlowDisk:
    """os.writev held at a gate the test opens; counts the writes that got through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = threading.Event()
        self.waiting = threading.Event()  # a write is held at the gate
        self.real = os.writev
        self.calls = 0
        self.monkeypatch = monkeypatch

    def install(self) -> None:
        self.monkeypatch.setattr(os, "writev", self.writev)

    def writev(self, fd: int, parts: Any) -> int:
        self.waiting.set()
        assert self.gate.wait(30)
        self.calls += 1
        return self.real(fd, parts)


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowDisk]:
    disk = SlowDisk(monkeypatch)
    yield disk
    disk.gate.set()  # never leave a worker thread stuck


def test_a_slow_disk_makes_the_writer_congested_and_wakes_the_door_once_drained(
    tmp_path: Path, box: SecretBox, slow_disk: SlowDisk
) -> None:
    writer = make_writer(tmp_path, box)
    slow_disk.install()
    woken = threading.Event()
    calls: list[int] = []

    def resume() -> None:
        calls.append(1)
        woken.set()

    piece = os.urandom(MAX_BUFFER)
    writer.output(piece, 0.1)  # the first full chunk: the worker takes it and waits at the gate
    assert slow_disk.waiting.wait(10)
    for _ in range(MAX_WAITING):
        writer.output(piece, 0.2)
        assert not writer.congested(resume)  # up to MAX_WAITING may wait
    writer.output(piece, 0.3)
    assert writer.congested(resume)
    assert not woken.is_set()
    slow_disk.gate.set()
    assert woken.wait(10)
    assert not writer.congested(resume)
    summary = writer.close()
    assert calls == [1]
    assert read_streams(summary.path, box, SESSION)["stdout"] == piece * (MAX_WAITING + 2)
    assert (summary.sha256, summary.size) == file_digest(summary.path)


def test_a_caller_that_ignores_congestion_writes_the_chunks_itself(
    tmp_path: Path, box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory stays bounded: beyond HARD_WAITING sealed chunks, output() writes them."""
    writer = make_writer(tmp_path, box)
    worker_started = threading.Event()
    hold = threading.Event()
    real_drain = writer._drain

    def stuck_drain() -> None:  # a worker that starts late, as on a busy machine
        worker_started.set()
        assert hold.wait(30)
        real_drain()

    monkeypatch.setattr(writer, "_drain", stuck_drain)
    piece = os.urandom(MAX_BUFFER)
    try:
        for n in range(HARD_WAITING + 3):
            writer.output(piece, float(n))
            assert len(writer._sealed) <= HARD_WAITING
        assert worker_started.is_set()
    finally:
        hold.set()
    summary = writer.close()
    data = read_streams(summary.path, box, SESSION)["stdout"]
    assert data == piece * (HARD_WAITING + 3)
    assert summary.streams["stdout"].sha256 == hashlib.sha256(data).hexdigest()


def test_a_worker_that_fails_wakes_the_door_and_the_next_call_says_why(
    tmp_path: Path, box: SecretBox, slow_disk: SlowDisk, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = make_writer(tmp_path, box)
    slow_disk.install()
    woken = threading.Event()
    piece = os.urandom(MAX_BUFFER)
    writer.output(piece, 0.1)
    assert slow_disk.waiting.wait(10)
    for _ in range(MAX_WAITING + 1):
        writer.output(piece, 0.2)
    assert writer.congested(woken.set)

    def full(*_args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(slow_disk, "real", full)
    slow_disk.gate.set()
    assert woken.wait(10)
    assert not writer.congested(woken.set)  # failed: the door goes on and hears why
    with pytest.raises(RecordingError, match="No space left"):
        writer.output(b"more", 1.0)
    assert not writer._sealed  # nothing held in memory for a recording that is over


def test_short_vectored_writes_still_write_every_byte_in_order(
    tmp_path: Path, box: SecretBox, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.writev

    def short(fd: int, parts: Any) -> int:  # the kernel takes only the first 1000 bytes
        first = b"".join(bytes(part) for part in parts)[:1000]
        return real(fd, [first])

    writer = make_writer(tmp_path, box)
    monkeypatch.setattr(os, "writev", short)
    payload = os.urandom(3 * MAX_BUFFER + 17)
    writer.output(payload, 0.5)
    writer.input(b"ls\n", 0.6)
    summary = writer.close()
    streams = read_streams(summary.path, box, SESSION)
    assert (streams["stdout"], streams["stdin"]) == (payload, b"ls\n")
    assert (summary.sha256, summary.size) == file_digest(summary.path)


def test_big_ciphertext_buffers_are_bounded_and_let_go_when_idle(
    tmp_path: Path, box: SecretBox
) -> None:
    writer = make_writer(tmp_path, box)
    piece = os.urandom(MAX_BUFFER)
    for n in range(20):
        writer.output(piece, float(n))
        assert len(writer._spare) <= store_module._POOLED
    writer.flush()
    assert not writer._spare  # a session gone idle holds no big buffer
    summary = writer.close()
    assert read_streams(summary.path, box, SESSION)["stdout"] == piece * 20
