"""Recordings in S3-compatible storage, end to end: real SSH sessions through the door with
[recordings] url set against moto_server; the bucket going down mid-session; a node killed
mid-session; wrong credentials at start-up."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from bastion.audit import Store
from bastion.audit.records import SessionRecord
from bastion.clock import SystemClock
from bastion.errors import Exit
from bastion.identity import totp
from bastion.server import ServeError
from tests import reals3
from tests.harness import Bastion
from tests.reals3 import BUCKET, MotoS3
from tests.realssh import Sshd
from tests.recording.test_objects import wait_until
from tests.ssh.test_door_auth import connect
from tests.ssh.test_verify_recordings import cli, recorded_session

moto = reals3.moto


def s3_bastion(tmp_path: Path, sshd: Sshd, moto: MotoS3, extra: str = "") -> Bastion:
    """alice granted web-1, recordings going to moto under node-a/ (not started yet)."""
    b = Bastion(tmp_path / "bastion", moto.config() + extra)
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    moto.write_credentials(b.home / "s3.credentials")
    return b


def object_key(b: Bastion, session: SessionRecord) -> str:
    assert session.recording_path is not None
    spooled = Path(session.recording_path).relative_to(b.config.paths.recordings)
    return f"node-a/{spooled.as_posix()}"


def closed_session(store: Store) -> SessionRecord:
    wait_until(lambda: any(s.ended_at is not None for s in store.sessions()))
    [session] = store.sessions()
    return session


def test_a_recording_reaches_the_bucket_and_replays_from_it(
    tmp_path: Path, sshd: Sshd, moto: MotoS3
) -> None:
    b = s3_bastion(tmp_path, sshd, moto, "keep_spool = true\n")
    b.start()
    try:
        session = recorded_session(b, tmp_path)
        key = object_key(b, session)
        assert b.server is not None
        uploader = b.server.uploader
        assert uploader is not None
        wait_until(lambda: key in moto.object_keys() and not uploader.pending())
    finally:
        b.stop()
    assert session.recording_path is not None
    spooled = Path(session.recording_path)
    assert moto.read(key) == spooled.read_bytes()  # kept (keep_spool), and equal
    spooled.unlink()  # the spool copy gone: replay and verify read the bucket
    replayed = cli(b, "replay", session.id, "--speed", "1000")
    assert replayed.returncode == Exit.OK, replayed.stderr
    assert "line-1" in replayed.stdout and "line-3" in replayed.stdout
    verified = cli(b, "audit", "verify")
    assert verified.returncode == Exit.OK, verified.stdout + verified.stderr
    assert "1 recordings match" in verified.stdout
    # Someone with write access to the bucket cuts the object short, then removes it.
    data = moto.read(key)
    moto.client().put_object(Bucket=BUCKET, Key=key, Body=data[: len(data) // 2])
    verified = cli(b, "audit", "verify")
    assert verified.returncode == Exit.TAMPERED
    assert f"recording of session {session.id} changed since it was closed" in verified.stdout
    moto.client().delete_object(Bucket=BUCKET, Key=key)
    verified = cli(b, "audit", "verify")
    assert verified.returncode == Exit.TAMPERED
    assert f"recording of session {session.id} is missing or unreadable" in verified.stdout
    assert "neither in the spool nor at s3://bastion-recordings/node-a/" in verified.stdout


def test_the_bucket_going_down_mid_session_leaves_the_session_whole(
    tmp_path: Path, sshd: Sshd, moto: MotoS3
) -> None:
    b = s3_bastion(tmp_path, sshd, moto)
    b.start()

    async def session_through_an_outage() -> str:
        key = asyncssh.read_private_key(b.keys["alice"])
        conn, _ = await connect(b, "alice+web-1", [key], [b.code("alice")])
        async with conn:
            process = await conn.create_process("cat")
            process.stdin.write("before\n")
            assert await process.stdout.readline() == "before\n"
            await asyncio.to_thread(moto.stop)  # the object store goes down
            process.stdin.write("during\n")
            assert await process.stdout.readline() == "during\n"
            process.stdin.write_eof()
            done = await process.wait()
            return str(done.stdout)

    try:
        b.call(session_through_an_outage(), timeout=60)
        session = closed_session(b.store)
        assert session.state == "closed", session.end_reason
        assert session.recording_path is not None
        spooled = Path(session.recording_path)
        assert spooled.exists()  # the spool keeps the bytes while the bucket is away
        moto.start()  # back (empty: moto keeps nothing; the bucket is made again)
        wait_until(lambda: not spooled.exists())  # uploaded, checked, then removed
        import hashlib  # noqa: PLC0415

        data = moto.read(object_key(b, session))
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (
            session.recording_sha256, session.recording_size)  # fmt: skip
    finally:
        b.stop()


def test_a_node_killed_mid_session_uploads_its_spool_on_restart(
    tmp_path: Path, sshd: Sshd, moto: MotoS3
) -> None:
    b = s3_bastion(tmp_path, sshd, moto)
    b.release()
    proc = b.serve_process()
    try:
        step = totp.step_at(datetime.now(UTC))
        ssh = b.openssh("alice", tmp_path / "client")
        answers = {"Verification code": totp.code_for_step(b.seeds["alice"], step + 1)}
        spool = b.config.paths.recordings
        with ssh.tmux(login="alice+web-1", answers=answers, flags=["-t"]) as tmux:
            tmux.wait_for("$ ")
            [spooled] = spool.rglob("*.cast")
            opened_at = spooled.stat().st_size
            tmux.type_text("echo before-the-crash", enter=True)
            tmux.wait_for(re.compile(r"before-the-crash\n\$"))
            wait_until(lambda: spooled.stat().st_size > opened_at)  # flushed (each second)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        assert moto.object_keys() == []  # nothing was complete: the session never ended
        proc = b.serve_process()
        wait_until(lambda: not spooled.exists())
        store = Store.open(b.config.paths.store, SystemClock())
        [session] = store.sessions()
        store.close()
        assert session.state == "interrupted"
        assert moto.object_keys() == [object_key(b, session)]
        replayed = cli(b, "replay", session.id, "--speed", "1000")
        assert "before-the-crash" in replayed.stdout, replayed.stderr
        verified = cli(b, "audit", "verify")
        assert verified.returncode == Exit.OK, verified.stdout + verified.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_wrong_credentials_stop_start_up_in_one_line_without_the_secret(
    tmp_path: Path, sshd: Sshd, capfd: pytest.CaptureFixture[str]
) -> None:
    with MotoS3(tmp_path, auth=True) as moto:
        moto.start()
        b = s3_bastion(tmp_path, sshd, moto)
        moto.write_credentials(b.home / "s3.credentials", secret="not-the-secret-93c1")
        b.release()
        argv = [sys.executable, "-m", "bastion", "--config", str(b.home / "bastion.toml"),
                "serve"]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        in_process = Bastion(tmp_path / "other", moto.config())
        moto.write_credentials(in_process.home / "s3.credentials", secret="not-the-secret-93c1")
        with pytest.raises(ServeError) as caught:
            in_process.start()
        in_process.stop()
    assert done.returncode == Exit.CONFIG
    said: list[Any] = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(said) == 1, done.stderr
    assert "object store: check the bucket s3://bastion-recordings/" in said[0]
    assert "refused: check the access key" in said[0]
    assert "403" in str(caught.value)
    logged = done.stdout + done.stderr + "".join(capfd.readouterr())
    assert "not-the-secret-93c1" not in logged + str(caught.value)
    assert moto.secret not in logged


def test_a_bucket_unreachable_at_start_only_delays_the_upload(
    tmp_path: Path, sshd: Sshd, moto: MotoS3
) -> None:
    """The node starts (sessions go on into the spool) and uploads what its spool held once
    the bucket answers."""
    b = s3_bastion(tmp_path, sshd, moto)
    left = b.config.paths.recordings / "2026" / "12" / "06" / "left-over.cast"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"what a stopped node left")
    moto.stop()
    b.start()
    try:
        assert left.exists()
        moto.start()
        wait_until(lambda: not left.exists())
        assert moto.read("node-a/2026/12/06/left-over.cast") == b"what a stopped node left"
    finally:
        b.stop()


def test_a_second_node_on_the_same_spool_refuses_to_start_in_one_line(
    tmp_path: Path, sshd: Sshd, moto: MotoS3
) -> None:
    """Two nodes whose recordings folders are one folder (a shared mount, here a link): the
    second refuses to start, in one line, rather than upload or remove the first's files."""
    first = s3_bastion(tmp_path / "a", sshd, moto)
    second = s3_bastion(tmp_path / "b", sshd, moto)
    spool = second.config.paths.recordings
    if spool.exists():
        spool.rmdir()
    spool.symlink_to(first.config.paths.recordings, target_is_directory=True)
    first.start()
    try:
        with pytest.raises(ServeError) as caught:
            second.start()
        second.stop()
        said = str(caught.value)
        assert "another bastion" in said and "holds the spool" in said
        assert "\n" not in said
    finally:
        first.stop()


def test_an_object_in_the_bucket_that_is_not_the_recording_is_an_audit_event(
    tmp_path: Path, sshd: Sshd, moto: MotoS3
) -> None:
    """Someone who can write the bucket puts an object of the very size at the key of a
    recording waiting in the spool: the node finds it, reads it, uploads the recording
    again, and the chain says so (a high event naming the object), not only a log line."""
    b = s3_bastion(tmp_path, sshd, moto)
    left = b.config.paths.recordings / "2026" / "12" / "06" / "s-planted.cast"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"recorded by the node ...")
    key = "node-a/2026/12/06/s-planted.cast"
    moto.client().put_object(Bucket=BUCKET, Key=key, Body=b"put by a bucket writer..")
    b.start()
    try:
        wait_until(lambda: not left.exists())
        assert moto.read(key) == b"recorded by the node ..."
        wait_until(lambda: b.events("recording.object_mismatch"))
        [event] = b.events("recording.object_mismatch")
    finally:
        b.stop()
    detail = json.loads(event.detail)
    assert event.severity == "high"
    assert detail["object"] == f"s3://{BUCKET}/{key}" and detail["session"] == "s-planted"
