"""Admin-side SSH door: kill, replay, export, verify, crash recovery, fail-closed recording."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import asyncssh
import pytest

from bastion.errors import Exit
from bastion.identity import totp
from tests.harness import Bastion, proc_kib
from tests.realssh import Sshd
from tests.ssh.test_door_auth import connect
from tests.ssh.test_door_sessions import closed_sessions

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL


def cli(b: Bastion, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", "--config", str(b.home / "bastion.toml"), *args],
        capture_output=True, text=True, input=input, timeout=60, check=False,
    )  # fmt: skip


def wait_until(predicate: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not callable(predicate) or not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.05)


def test_sessions_kill_ends_a_live_session(bastion: Bastion) -> None:
    async def long_running() -> asyncssh.SSHCompletedProcess:
        key = asyncssh.read_private_key(bastion.keys["alice"])
        conn, _ = await connect(bastion, "alice+web-1", [key], [bastion.code("alice")])
        async with conn:
            done: asyncssh.SSHCompletedProcess = await conn.run(
                "echo started; sleep 60", check=False
            )
            return done

    future = __import__("asyncio").run_coroutine_threadsafe(long_running(), bastion._loop)
    wait_until(lambda: bool(bastion.store.sessions(open_only=True)))
    [session] = bastion.store.sessions(open_only=True)
    killed = cli(bastion, "sessions", "kill", session.id, "--reason", "incident over")
    assert killed.returncode == 0, killed.stderr
    started = time.monotonic()
    done = future.result(timeout=20)
    assert time.monotonic() - started < 20
    assert "session ended by cli:" in str(done.stderr) and "incident over" in str(done.stderr)
    [closed] = closed_sessions(bastion)
    assert closed.state == "killed"
    assert bastion.events("session.kill_requested")
    again = cli(bastion, "sessions", "kill", session.id)
    assert again.returncode == 5 and "ended already" in again.stderr


def test_a_totp_reset_on_the_cli_retires_the_old_seed_at_the_running_door(
    bastion: Bastion,
) -> None:
    """The CLI's reset is a decision the serving door reads from the store at the next login:
    a code from the old seed is refused there, one from the new seed lets alice in."""
    reset = cli(bastion, "user", "reset-totp", "alice", "--no-qr", "--json")
    assert reset.returncode == 0, reset.stderr
    uri = json.loads(reset.stdout)["otpauth_uri"]
    new_seed = parse_qs(urlparse(uri).query)["secret"][0]
    assert new_seed != bastion.seeds["alice"]
    key = asyncssh.read_private_key(bastion.keys["alice"])

    async def login(code: str) -> str:
        conn, _ = await connect(bastion, "alice+web-1", [key], [code])
        async with conn:
            done = await conn.run("echo in", check=False)
        return str(done.stdout)

    with pytest.raises(asyncssh.PermissionDenied):
        bastion.call(login(bastion.code("alice")))  # the old seed's code
    bastion.seeds["alice"] = new_seed
    assert bastion.call(login(bastion.code("alice"))) == "in\n"
    [event] = bastion.events("user.totp_reset")
    assert event.subject == "alice" and event.actor.startswith("cli:")


def test_list_show_replay_export_and_verify(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("echo replay-marker", login="alice+web-1",
                         answers=bastion.answers("alice"))  # fmt: skip
    assert result.returncode == 0
    [session] = closed_sessions(bastion)
    listed = json.loads(cli(bastion, "sessions", "list", "--json").stdout)
    assert [s["id"] for s in listed] == [session.id]
    shown = json.loads(cli(bastion, "sessions", "show", session.id, "--json").stdout)
    assert shown["commands"][0]["command"] == "echo replay-marker"
    played = cli(bastion, "replay", session.id, "--speed", "1000")
    assert played.returncode == 0 and "replay-marker" in played.stdout
    out = tmp_path / "exported.cast"
    exported = cli(bastion, "recordings", "export", session.id, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # decrypted: for the admin alone
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert any("replay-marker" in json.loads(line)[2] for line in lines[1:])
    kinds = [e.kind for e in bastion.events()]
    assert "recording.replayed" in kinds and "recording.exported" in kinds
    assert cli(bastion, "audit", "verify").returncode == 0
    assert session.recording_path is not None
    with open(session.recording_path, "ab") as handle:
        handle.write(b"tampered\n")
    verify = cli(bastion, "audit", "verify")
    assert verify.returncode == 7
    assert f"recording of session {session.id} changed" in verify.stdout


def test_unwritable_recordings_refuse_the_session(tmp_path: Path, sshd: Sshd) -> None:
    b = Bastion.with_alice(tmp_path / "bastion", sshd)
    recordings = b.config.paths.recordings
    recordings.parent.mkdir(parents=True, exist_ok=True)
    recordings.write_text("a file where the recordings folder should be")
    b.start()
    try:
        ssh = b.openssh("alice", tmp_path / "client")
        result = ssh.run_ssh("echo should-not-run", login="alice+web-1",
                             answers=b.answers("alice"))  # fmt: skip
        assert result.returncode == 1
        assert "cannot open the recording" in result.err
        assert "should-not-run" not in result.out
        assert not b.store.sessions()
    finally:
        b.stop()


def test_a_crash_leaves_an_interrupted_session_with_a_readable_recording(
    tmp_path: Path, sshd: Sshd
) -> None:
    b = Bastion.with_alice(tmp_path / "bastion", sshd)
    b.release()
    proc = b.serve_process()
    try:
        step = totp.step_at(datetime.now(UTC))
        ssh = b.openssh("alice", tmp_path / "client")
        answers = {"Verification code": totp.code_for_step(b.seeds["alice"], step + 1)}
        with ssh.tmux(login="alice+web-1", answers=answers, flags=["-t"]) as tmux:
            tmux.wait_for("$ ")
            tmux.type_text("echo before-the-crash", enter=True)
            tmux.wait_for(re.compile(r"before-the-crash\n\$"))
            time.sleep(1.5)  # the recording flushes at least once a second
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        proc = b.serve_process()
        from bastion.audit import Store  # noqa: PLC0415
        from bastion.clock import SystemClock  # noqa: PLC0415

        store = Store.open(b.store_at, SystemClock())
        wait_until(lambda: any(s.state == "interrupted" for s in store.sessions()))
        [session] = store.sessions()
        assert session.recording_path is not None
        from bastion.recording import read_recording  # noqa: PLC0415

        recording = read_recording(Path(session.recording_path), b.box)
        assert "before-the-crash" in "".join(e.data for e in recording.events)
        store.close()
        # What the crash left is hashed into the chain: cut short is expected, not a fault...
        verify = [sys.executable, "-m", "bastion", "--config", str(b.home / "bastion.toml"),
                  "audit", "verify"]  # fmt: skip
        done = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == Exit.OK, done.stdout + done.stderr
        assert "1 recordings match" in done.stdout
        # ...but removing it afterwards (an admin with the files, after the restart) shows.
        Path(session.recording_path).unlink()
        done = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == Exit.TAMPERED
        assert f"recording of session {session.id} is missing" in done.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_a_slow_client_slows_the_target_instead_of_filling_memory(
    tmp_path: Path, sshd: Sshd
) -> None:
    """200 MB of output to a client that stops reading: the bastion's memory stays bounded."""
    b = Bastion.with_alice(tmp_path / "bastion", sshd)
    b.release()
    proc = b.serve_process()
    size = 200 * 1000 * 1000
    try:
        before = proc_kib(proc.pid, "VmRSS")

        async def slow_reader() -> int:
            key = asyncssh.read_private_key(b.keys["alice"])
            code = totp.code_for_step(b.seeds["alice"], totp.step_at(datetime.now(UTC)) + 1)
            conn, _ = await connect(b, "alice+web-1", [key], [code])
            async with conn:
                process = await conn.create_process(
                    f"head -c {size} /dev/zero | tr '\\\\0' a", encoding=None
                )
                await asyncio.sleep(3)  # not reading: the target must be held back
                held = proc_kib(proc.pid, "VmRSS") - before
                assert held < 64 * 1024, f"the bastion holds {held} KiB for a paused client"
                total = 0
                while chunk := await process.stdout.read(1 << 20):
                    total += len(chunk)
                await process.wait()
            return total

        assert asyncio.run(slow_reader()) == size
        peak = proc_kib(proc.pid, "VmHWM") - before
        assert peak < 128 * 1024, f"peak memory grew by {peak} KiB moving {size} bytes"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_target_trust_pins_the_key_an_admin_confirms(bastion: Bastion, sshd: Sshd) -> None:
    bastion.add_target("web-2", sshd, trust=False)
    unconfirmed = cli(bastion, "target", "trust", "web-2")
    assert unconfirmed.returncode == 2
    assert sshd.host_key_fingerprint in unconfirmed.stderr
    wrong = cli(bastion, "target", "trust", "web-2", "--fingerprint", "SHA256:not-this-one")
    assert wrong.returncode == 6
    assert bastion.store.target("web-2").host_key is None
    ok = cli(bastion, "target", "trust", "web-2", "--fingerprint", sshd.host_key_fingerprint)
    assert ok.returncode == 0, ok.stderr
    assert bastion.store.target("web-2").host_key == sshd.host_key_pub.strip()
    sshd.regenerate_host_key()
    again = cli(bastion, "target", "trust", "web-2", "--yes")
    assert again.returncode == 0
    trusted = bastion.events("target.host_key_trusted")
    assert [e.severity for e in trusted[-2:]] == ["notice", "high"]
