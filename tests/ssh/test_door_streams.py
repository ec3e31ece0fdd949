"""Every stream of every session is recorded, terminal or not: stdin scripts, scp -O, tar, nc."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.audit.records import SessionRecord
from bastion.recording import MAX_BUFFER, read_recording, read_streams
from bastion.recording.store import MAX_WAITING
from bastion.ssh.door import SSHDoor
from bastion.ssh.streams import FROM_STDIN
from tests.harness import Bastion
from tests.realssh import LOOPBACK, Sshd
from tests.ssh.test_door_sessions import closed_sessions


def streams_of(b: Bastion, session: SessionRecord) -> dict[str, bytes]:
    assert session.recording_path is not None
    return read_streams(Path(session.recording_path), b.box)


def logged_streams(b: Bastion, session: SessionRecord) -> dict[str, tuple[int | None, str | None]]:
    return {op.path: (op.size, op.sha256) for op in b.store.file_ops(session.id)
            if op.operation == "stream"}  # fmt: skip


def assert_streams_logged(b: Bastion, session: SessionRecord) -> dict[str, bytes]:
    """Each stream's size and SHA-256 in the log match the recording's bytes."""
    found = streams_of(b, session)
    logged = logged_streams(b, session)
    for name, data in found.items():
        assert logged[name] == (len(data), hashlib.sha256(data).hexdigest()), name
    return found


class EchoServer:
    """A TCP server on loopback that answers each connection with "echo:" + what it read."""

    def __init__(self) -> None:
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.connections += 1
                with conn:
                    data = b""
                    while chunk := conn.recv(65536):
                        data += chunk
                    conn.sendall(b"echo:" + data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def tunnels_allowed(tmp_path: Path, sshd: Sshd) -> Iterator[Bastion]:
    """alice may reach web-1, which allows raw tunnels."""
    b = Bastion(tmp_path / "bastion", '\n[targets.web-1]\nraw_tunnels = "allow"\n')
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def test_a_script_sent_to_bash_s_is_recorded_and_logged_line_by_line(
    bastion: Bastion, tmp_path: Path
) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    script = b"echo one-$((40+2))\n\nid -un >/dev/null\necho two >&2\n"
    result = ssh.run_ssh("bash -s", login="alice+web-1", answers=bastion.answers("alice"),
                         input=script)  # fmt: skip
    assert result.returncode == 0 and result.out == "one-42\n" and result.err == "two\n"
    [session] = closed_sessions(bastion)
    found = assert_streams_logged(bastion, session)
    assert found == {"stdin": script, "stdout": b"one-42\n", "stderr": b"two\n"}
    commands = bastion.store.commands(session.id)
    assert [(c.text, c.reconstructed, c.uncertain) for c in commands] == [
        ("bash -s", False, None),
        ("echo one-$((40+2))", True, FROM_STDIN),
        ("id -un >/dev/null", True, FROM_STDIN),
        ("echo two >&2", True, FROM_STDIN),
    ]


def test_ssh_t_with_commands_on_stdin_is_recorded(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh(flags=["-T"], login="alice+web-1", answers=bastion.answers("alice"),
                         input=b"echo hidden-$((6*7))\nexit 4\n")  # fmt: skip
    assert result.returncode == 4 and "hidden-42" in result.out
    [session] = closed_sessions(bastion)
    assert streams_of(bastion, session)["stdin"] == b"echo hidden-$((6*7))\nexit 4\n"
    recording = read_recording(Path(session.recording_path or ""), bastion.box)
    assert "echo hidden-$((6*7))" in "".join(e.data for e in recording.events if e.code == "i")
    logged = [(c.text, c.uncertain) for c in bastion.store.commands(session.id)]
    assert logged == [("echo hidden-$((6*7))", FROM_STDIN), ("exit 4", FROM_STDIN)]


def test_legacy_scp_upload_is_recorded_with_its_hash(bastion: Bastion, sshd: Sshd,
                                                     tmp_path: Path) -> None:  # fmt: skip
    ssh = bastion.openssh("alice", tmp_path / "client")
    payload = bytes(range(256)) * 4096 + b"tail"
    local = tmp_path / "up.bin"
    local.write_bytes(payload)
    remote = f"{sshd.files_dir}/legacy.bin"
    result = ssh.run_scp("-O", str(local), ssh.remote(remote), login="alice+web-1",
                         answers=bastion.answers("alice"))  # fmt: skip
    assert result.returncode == 0, result.err
    assert Path(remote).read_bytes() == payload
    [session] = closed_sessions(bastion)
    stdin = assert_streams_logged(bastion, session)["stdin"]
    assert payload in stdin  # the file itself, inside scp's protocol


def _tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_tar_over_ssh_both_ways_is_recorded_as_data(bastion: Bastion, sshd: Sshd,
                                                    tmp_path: Path) -> None:  # fmt: skip
    ssh = bastion.openssh("alice", tmp_path / "client")
    files = {"a.bin": bytes(range(256)) * 1000, "b.txt": b"hello\n"}
    archive = _tar_of(files)
    dest = sshd.files_dir / "untarred"
    up = ssh.run_ssh(f"mkdir -p {dest} && tar xf - -C {dest}", login="alice+web-1",
                     answers=bastion.answers("alice"), input=archive)  # fmt: skip
    assert up.returncode == 0, up.err
    assert (dest / "a.bin").read_bytes() == files["a.bin"]
    down = ssh.run_ssh(f"tar cf - -C {dest} .", login="alice+web-1",
                       answers=bastion.answers("alice"))  # fmt: skip
    assert down.returncode == 0, down.err
    first, second = sorted(closed_sessions(bastion, 2), key=lambda s: s.started_at)
    assert assert_streams_logged(bastion, first)["stdin"] == archive
    assert assert_streams_logged(bastion, second)["stdout"] == down.stdout
    assert not bastion.store.commands(first.id)[1:]  # data, not lines of commands


def test_a_command_typed_after_stty_echo_off_is_recorded_as_typed(
    bastion: Bastion, tmp_path: Path
) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    with ssh.tmux(login="alice+web-1", answers=bastion.answers("alice"), flags=["-t"]) as tmux:
        tmux.wait_for("$ ")
        tmux.type_text("stty -echo; echo QUIET''-ON", enter=True)
        tmux.wait_for("QUIET-ON")
        tmux.type_text("echo typed-$((40+2))", enter=True)
        tmux.wait_for("typed-42")
        tmux.type_text("stty echo; exit", enter=True)
        tmux.wait_exit()
    [session] = closed_sessions(bastion)
    recording = read_recording(Path(session.recording_path or ""), bastion.box)
    typed = "".join(e.data for e in recording.events if e.code == "i")
    assert "echo typed-$((40+2))" in typed and "*" not in typed
    logged = [(c.text, c.uncertain) for c in bastion.store.commands(session.id)]
    assert ("echo typed-$((40+2))", "not echoed") in logged


def test_commands_typed_in_a_terminal_exec_are_logged(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    with ssh.tmux("sh", login="alice+web-1", answers=bastion.answers("alice"),
                  flags=["-t"]) as tmux:  # fmt: skip
        tmux.wait_for("$ ")
        tmux.type_text("echo inner-$((40+2))", enter=True)
        tmux.wait_for("inner-42")
        tmux.type_text("exit", enter=True)
        tmux.wait_exit()
    [session] = closed_sessions(bastion)
    texts = [c.text for c in bastion.store.commands(session.id)]
    assert texts[0] == "sh" and "echo inner-$((40+2))" in texts[1:]


def test_a_sudo_s_password_on_stdin_is_masked(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("sudo -S true 2>/dev/null; cat >/dev/null; echo done",
                         login="alice+web-1", answers=bastion.answers("alice"),
                         input=b"hunter2hunter2\nnot secret\n")  # fmt: skip
    assert "done" in result.out
    [session] = closed_sessions(bastion)
    assert streams_of(bastion, session)["stdin"] == b"**************\nnot secret\n"


def test_a_raw_tunnel_through_nc_is_refused_by_default(
    bastion: Bastion, tmp_path: Path, echo_server: EchoServer
) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    port = echo_server.port
    for command in (f"nc -N {LOOPBACK} {port}",
                    f"bash -c 'exec 3<>/dev/tcp/{LOOPBACK}/{port}; cat <&3'"):  # fmt: skip
        result = ssh.run_ssh(command, login="alice+web-1", answers=bastion.answers("alice"),
                             input=b"knock\n")  # fmt: skip
        assert result.returncode == 1 and "raw network tunnels are refused" in result.err
    # the same line sent to a shell without a terminal ends the session before it is sent
    result = ssh.run_ssh(
        flags=["-T"],
        login="alice+web-1",
        answers=bastion.answers("alice"),
        input=f"echo before\nnc -N {LOOPBACK} {echo_server.port}\n".encode(),
    )
    assert "raw network tunnels are refused" in result.err
    # a NUL byte does not hide the lines after it (a shell runs them all the same)
    result = ssh.run_ssh(flags=["-T"], login="alice+web-1", answers=bastion.answers("alice"),
                         input=f"\x00\nnc -N {LOOPBACK} {port}\n".encode())  # fmt: skip
    assert "raw network tunnels are refused" in result.err
    assert echo_server.connections == 0
    denied = [e for e in bastion.events("access.denied") if "tunnel" in str(e.detail)]
    assert len(denied) == 2


def test_an_allowed_tunnel_is_recorded_both_ways(tunnels_allowed: Bastion, tmp_path: Path,
                                                 echo_server: EchoServer) -> None:  # fmt: skip
    b = tunnels_allowed
    ssh = b.openssh("alice", tmp_path / "client")
    blob = bytes(range(256)) * 64
    result = ssh.run_ssh(f"nc -N {LOOPBACK} {echo_server.port}", login="alice+web-1",
                         answers=b.answers("alice"), input=blob)  # fmt: skip
    assert result.returncode == 0, result.err
    assert result.stdout == b"echo:" + blob
    [session] = closed_sessions(b)
    found = assert_streams_logged(b, session)
    assert found["stdin"] == blob and found["stdout"] == b"echo:" + blob


def _live_channel(b: Bastion) -> Any:
    door = next(d for d in (b.server.doors if b.server else []) if isinstance(d, SSHDoor))
    deadline = time.monotonic() + 30
    while not door.live and time.monotonic() < deadline:
        time.sleep(0.01)
    [channel] = door.live.values()
    return channel


def test_a_slow_recording_disk_pauses_the_session_and_loses_nothing(
    bastion: Bastion, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the recording's disk falls behind, the door stops reading the target (memory
    stays bounded, nothing is sent unrecorded) and goes on once the disk catches up."""
    payload = os.urandom(24 * MAX_BUFFER)
    big = sshd.files_dir / "big.bin"
    big.write_bytes(payload)
    big.chmod(0o644)
    gate, real = threading.Event(), os.writev

    def slow_disk(fd: int, parts: Any) -> int:  # big chunks wait; headers and small ones pass
        if sum(len(part) for part in parts) > 65536:
            assert gate.wait(60)
        return real(fd, parts)

    monkeypatch.setattr(os, "writev", slow_disk)
    ssh = bastion.openssh("alice", tmp_path / "client")
    results: list[Any] = []
    client = threading.Thread(
        target=lambda: results.append(
            ssh.run_ssh(
                f"cat {big}", login="alice+web-1", answers=bastion.answers("alice"), timeout=120
            )
        )
    )
    client.start()
    try:
        channel = _live_channel(bastion)
        deadline = time.monotonic() + 30
        while "recording" not in channel.target_valve.reasons and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "recording" in channel.target_valve.reasons  # paused for the disk
        writer = channel.tap.writer
        assert len(writer._sealed) <= MAX_WAITING + 2  # not the whole 24 MiB in memory
    finally:
        gate.set()
        client.join(120)
    [result] = results
    assert result.returncode == 0, result.err
    assert result.stdout == payload
    [session] = closed_sessions(bastion)
    assert assert_streams_logged(bastion, session)["stdout"] == payload
