"""`bastion audit verify` and `bastion replay` against recordings cut short by someone with the
files: a real session through the SSH door, then the CLI as an admin would run it."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bastion.audit.records import SessionRecord
from bastion.errors import Exit
from tests.harness import Bastion
from tests.recording.helpers import lines_of

DEADLINE = 20.0  # a safety net for waits, never a timing assertion


def cli(b: Bastion, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bastion", "--config", str(b.home / "bastion.toml"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def recorded_session(b: Bastion, tmp_path: Path) -> SessionRecord:
    """One exec session whose output spans several chunks, closed and hashed."""
    ssh = b.openssh("alice", tmp_path / "client")
    command = "for i in 1 2 3; do echo line-$i; sleep 0.3; done"
    result = ssh.run_ssh(command, login="alice+web-1", answers=b.answers("alice"))
    assert result.returncode == 0, result.err
    deadline = time.monotonic() + DEADLINE
    while not (closed := [s for s in b.store.sessions() if s.recording_sha256]):
        assert time.monotonic() < deadline, "the session did not close"
        time.sleep(0.05)
    return closed[0]


def cut_to_first_chunk(session: SessionRecord, db: Path) -> None:
    """What the attacker did: keep the header and first chunk, fix up the session row."""
    assert session.recording_path is not None
    path = Path(session.recording_path)
    lines = lines_of(path)  # the header line, then each chunk record
    assert len(lines) >= 3, "the recording should hold more than its first chunk"
    path.write_bytes(b"".join(lines[:2]))
    data = path.read_bytes()
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "UPDATE sessions SET recording_sha256 = ?, recording_size = ? WHERE id = ?",
            (hashlib.sha256(data).hexdigest(), len(data), session.id),
        )
        conn.commit()
    finally:
        conn.close()


def test_a_recording_cut_short_with_its_row_edited_fails_verify(
    bastion: Bastion, tmp_path: Path
) -> None:
    session = recorded_session(bastion, tmp_path)
    ok = cli(bastion, "audit", "verify")
    assert ok.returncode == Exit.OK, ok.stdout + ok.stderr
    assert "1 recordings match" in ok.stdout
    cut_to_first_chunk(session, bastion.config.paths.store)
    result = cli(bastion, "audit", "verify")
    assert result.returncode == Exit.TAMPERED, result.stdout + result.stderr
    assert f"recording of session {session.id} changed since it was closed" in result.stdout
    assert f"session {session.id}'s row was edited" in result.stdout
    assert f"recording of session {session.id} is truncated" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_recording_without_its_final_chunk_is_truncated(bastion: Bastion, tmp_path: Path) -> None:
    """Even with a hash that matches (the writer never closed it), no final chunk is reported,
    and replay says so rather than playing it as the whole session."""
    session = recorded_session(bastion, tmp_path)
    assert session.recording_path is not None
    path = Path(session.recording_path)
    lines = lines_of(path)  # the header line, then each chunk record
    path.write_bytes(b"".join(lines[:-1]))  # the final chunk is gone
    result = cli(bastion, "audit", "verify")
    assert result.returncode == Exit.TAMPERED
    assert f"recording of session {session.id} is truncated" in result.stdout
    replayed = cli(bastion, "replay", session.id, "--speed", "1000")
    assert replayed.returncode == Exit.TAMPERED, replayed.stderr
    assert "no final chunk" in replayed.stderr
    assert "does not match the hash the audit chain holds" in replayed.stderr
