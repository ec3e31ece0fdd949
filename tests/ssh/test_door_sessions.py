"""Relayed sessions through the SSH door: shells, exec, files, recordings and commands."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from bastion.audit.records import SessionRecord
from bastion.recording import read_recording
from tests.harness import Bastion
from tests.realssh import Sshd

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL


def closed_sessions(b: Bastion, count: int = 1, timeout: float = 15) -> list[SessionRecord]:
    """Wait (polling, with a deadline) until `count` sessions are closed."""
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in b.store.sessions() if s.ended_at is not None]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def text_of(b: Bastion, session: SessionRecord, code: str) -> str:
    assert session.recording_path is not None
    recording = read_recording(Path(session.recording_path), b.box)
    return "".join(e.data for e in recording.events if e.code == code)


def test_exec_is_recorded_logged_and_hashed(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("echo out-marker; echo err-marker >&2; exit 3", login="alice+web-1",
                         answers=bastion.answers("alice"))  # fmt: skip
    assert result.returncode == 3 and result.out == "out-marker\n"
    assert "err-marker" in result.err
    [session] = closed_sessions(bastion)
    assert session.state == "closed" and "exit status 3" in (session.end_reason or "")
    assert "out-marker" in text_of(bastion, session, "o")
    [command] = bastion.store.commands(session.id)
    assert command.text == "echo out-marker; echo err-marker >&2; exit 3"
    assert not command.reconstructed
    assert session.recording_path and Path(session.recording_path).exists()
    data = Path(session.recording_path).read_bytes()
    assert b"out-marker" not in data  # encrypted at rest
    assert session.recording_sha256 == hashlib.sha256(data).hexdigest()
    closed = bastion.events("session.closed")[-1]
    assert session.recording_sha256 in closed.detail
    assert bastion.store.verify_chain().ok


def test_interactive_shell_is_recorded_with_commands(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    with ssh.tmux(login="alice+web-1", answers=bastion.answers("alice"), flags=["-t"]) as tmux:
        tmux.wait_for("$ ")
        tmux.type_text("echo typed-$((6*7))", enter=True)
        tmux.wait_for("typed-42")
        tmux.type_text("exit", enter=True)
        tmux.wait_exit()
    [session] = closed_sessions(bastion)
    assert "typed-42" in text_of(bastion, session, "o")
    assert "echo typed-$((6*7))" in text_of(bastion, session, "i")
    commands = [c.text for c in bastion.store.commands(session.id)]
    assert "echo typed-$((6*7))" in commands
    assert all(c.reconstructed for c in bastion.store.commands(session.id))


def test_unechoed_password_is_redacted(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    with ssh.tmux(login="alice+web-1", answers=bastion.answers("alice"), flags=["-t"]) as tmux:
        tmux.wait_for("$ ")
        # The prompt is spelt apart in the command line so only the real prompt (printed after
        # `stty -echo` took effect) can satisfy the wait; typing earlier would be echoed.
        line = "stty -echo; printf 'Pass''word: '; read pw; stty echo; echo; echo got-${#pw}"
        tmux.type_text(line, enter=True)
        tmux.wait_for("Password: ")
        tmux.type_text("hunter2hunter2", enter=True)
        tmux.wait_for("got-14")
        tmux.type_text("exit", enter=True)
        tmux.wait_exit()
    [session] = closed_sessions(bastion)
    assert session.recording_path is not None
    recording = read_recording(Path(session.recording_path), bastion.box)
    everything = "".join(e.data for e in recording.events)
    assert "hunter2" not in everything
    assert "got-14" in everything
    assert not any("hunter2" in c.text for c in bastion.store.commands(session.id))


def test_scp_and_sftp_are_byte_identical_and_logged(bastion: Bastion, sshd: Sshd,
                                                    tmp_path: Path) -> None:  # fmt: skip
    ssh = bastion.openssh("alice", tmp_path / "client")
    payload = os.urandom(3 * 1024 * 1024 + 17)
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    remote = f"{sshd.files_dir}/up.bin"
    answers = bastion.answers("alice")
    up = ssh.run_scp(str(local), ssh.remote(remote), login="alice+web-1", answers=answers)
    assert up.returncode == 0, up.err
    assert Path(remote).read_bytes() == payload
    back = tmp_path / "back.bin"
    down = ssh.run_sftp([f"get {remote} {back}"], login="alice+web-1", answers=answers)
    assert down.returncode == 0, down.err
    assert back.read_bytes() == payload
    digest = hashlib.sha256(payload).hexdigest()
    sessions = closed_sessions(bastion, 2)
    ops = [op for s in sessions for op in bastion.store.file_ops(s.id)]
    writes = [op for op in ops if op.operation == "write" and op.path.endswith("up.bin")]
    reads = [op for op in ops if op.operation == "read" and op.path.endswith("up.bin")]
    assert writes and writes[0].sha256 == digest and writes[0].size == len(payload)
    assert reads and reads[0].sha256 == digest


def test_menu_lists_reachable_targets_and_connects(bastion: Bastion, sshd: Sshd,
                                                   tmp_path: Path) -> None:  # fmt: skip
    bastion.add_target("web-2", sshd)
    bastion.grant("alice", "web-2")
    ssh = bastion.openssh("alice", tmp_path / "client")
    with ssh.tmux(login="alice", answers=bastion.answers("alice"), flags=["-t"]) as tmux:
        screen = tmux.wait_for("Choose a target")
        assert "1) web-1" in screen and "2) web-2" in screen
        tmux.type_text("2", enter=True)
        tmux.wait_for("$ ")
        tmux.type_text("exit", enter=True)
        tmux.wait_exit()
    [session] = closed_sessions(bastion)
    assert session.target == "web-2"


def test_no_target_without_a_terminal_says_how_to_name_one(bastion: Bastion,
                                                           tmp_path: Path) -> None:  # fmt: skip
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("true", login="alice", answers=bastion.answers("alice"))
    assert result.returncode == 1
    assert "name a target: ssh alice+TARGET@bastion (you may reach: web-1)" in result.err


def test_resize_is_recorded_and_only_allowed_env_passes(bastion: Bastion,
                                                        tmp_path: Path) -> None:  # fmt: skip
    ssh = bastion.openssh("alice", tmp_path / "client")
    flags = ["-t", "-o", "SetEnv=LANG=C.UTF-8 SECRET_TOKEN=leak"]
    with ssh.tmux(login="alice+web-1", answers=bastion.answers("alice"), flags=flags) as tmux:
        tmux.wait_for("$ ")
        tmux.type_text("echo lang=$LANG token=${SECRET_TOKEN:-unset}", enter=True)
        tmux.wait_for("token=unset")
        tmux.resize(100, 30)
        tmux.type_text("stty size", enter=True)
        tmux.wait_for("30 100")
        tmux.type_text("exit", enter=True)
        tmux.wait_exit()
    [session] = closed_sessions(bastion)
    assert session.recording_path is not None
    recording = read_recording(Path(session.recording_path), bastion.box)
    assert "100x30" in [e.data for e in recording.events if e.code == "r"]
    assert recording.header["title"] == "alice → web-1"
    assert recording.header["env"].get("LANG") == "C.UTF-8"

    assert "SECRET_TOKEN" not in recording.header["env"]
    assert "lang=C.UTF-8" in text_of(bastion, session, "o")


def test_sftp_put_and_scp_get_are_logged(bastion: Bastion, sshd: Sshd, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    payload = os.urandom(1024 * 1024 + 3)
    local = tmp_path / "put.bin"
    local.write_bytes(payload)
    remote = f"{sshd.files_dir}/put.bin"
    answers = bastion.answers("alice")
    put = ssh.run_sftp([f"put {local} {remote}", f"rename {remote} {remote}.2"],
                       login="alice+web-1", answers=answers)  # fmt: skip
    assert put.returncode == 0, put.err
    got = tmp_path / "got.bin"
    get = ssh.run_scp(ssh.remote(f"{remote}.2"), str(got), login="alice+web-1", answers=answers)
    assert get.returncode == 0, get.err
    assert got.read_bytes() == payload
    digest = hashlib.sha256(payload).hexdigest()
    ops = [op for s in closed_sessions(bastion, 2) for op in bastion.store.file_ops(s.id)]
    assert any(o.operation == "write" and o.sha256 == digest for o in ops)
    assert any(o.operation == "rename" and (o.path2 or "").endswith("put.bin.2") for o in ops)
    assert any(o.operation == "read" and o.sha256 == digest for o in ops)
