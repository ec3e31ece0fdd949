"""A local recording's progress reaches the store while its session runs (red18d 1): how far
the file is fsynced and the SHA-256 of exactly those bytes, so a file cut while its node is
down is never chained as a crash's cut."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bastion.ssh.tap import PROGRESS_BYTES
from tests.harness import Bastion
from tests.realssh import Sshd
from tests.ssh.test_door_sessions import closed_sessions


def test_a_sessions_door_tells_the_store_how_far_its_recording_is_durable(
    tmp_path: Path, sshd: Sshd
) -> None:
    b = Bastion.with_alice(tmp_path / "bastion", sshd)
    b.start()
    try:
        ssh = b.openssh("alice", tmp_path / "client")
        burst = "head -c 3000000 /dev/urandom | base64; sleep 1.5"  # a flush between bursts
        result = ssh.run_ssh(f"{burst}; {burst}; {burst}", login="alice+web-1",
                             answers=b.answers("alice"))  # fmt: skip
        assert result.returncode == 0, result.err
        [session] = closed_sessions(b)
        progress = b.store.recording_progress(session.id)
        assert progress is not None, "no progress reached the store"
        size, sha256 = progress
        assert PROGRESS_BYTES <= size <= (session.recording_size or 0)
        assert session.recording_path is not None
        prefix = Path(session.recording_path).read_bytes()[:size]
        assert hashlib.sha256(prefix).hexdigest() == sha256
    finally:
        b.stop()
