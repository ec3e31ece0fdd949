"""Start-up after a crash, and beside a live process (issue 18): a second `bastion serve` on a
home whose spool a live process holds refuses before it closes any session as interrupted
(recordings to an object store); a node killed mid-upload aborts what it left in the
bucket on restart. Real sshd, real serve processes, moto_server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncssh

from bastion.audit import Store
from bastion.clock import SystemClock
from bastion.errors import Exit
from bastion.identity import totp
from bastion.recording.objects import PART_SIZE
from tests import reals3
from tests.harness import Bastion
from tests.reals3 import BUCKET, MotoS3
from tests.realssh import Sshd
from tests.recording.test_objects import wait_until
from tests.ssh.test_door_auth import connect

moto = reals3.moto


def test_a_second_serve_never_closes_the_live_sessions_of_the_spools_holder(
    tmp_path: Path, sshd: Sshd, moto: MotoS3
) -> None:
    """alice is mid-session on the first process; a second `serve` on the same home (an
    operator's slip, a unit started twice) must refuse in one line before its crash
    recovery closes her session, which goes on, open in the store, afterwards: the
    spool's lock refuses it at once. (Without an object store there is no spool to hold;
    the node's name does it: tests/test_cluster_nodes.py.)"""
    b = Bastion(tmp_path / "bastion", moto.config())
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    moto.write_credentials(b.home / "s3.credentials")
    b.start()
    argv = [sys.executable, "-m", "bastion", "--config", str(b.home / "bastion.toml"), "serve"]

    async def second_serve_mid_session() -> tuple[subprocess.CompletedProcess[str], str]:
        key = asyncssh.read_private_key(b.keys["alice"])
        conn, _ = await connect(b, "alice+web-1", [key], [b.code("alice")])
        async with conn:
            process = await conn.create_process("cat")
            process.stdin.write("before\n")
            assert await process.stdout.readline() == "before\n"
            done = await asyncio.to_thread(
                subprocess.run, argv, capture_output=True, text=True, timeout=60, check=False
            )
            process.stdin.write("after\n")  # the session is whole: still relayed
            after = await process.stdout.readline()
            process.stdin.write_eof()
            await process.wait()
            return done, after

    try:
        done, after = b.call(second_serve_mid_session(), timeout=90)
        interrupted = [s for s in b.store.sessions() if s.state == "interrupted"]
    finally:
        b.stop()
    said = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == Exit.CONFIG, done.stderr
    assert len(said) == 1 and "holds the spool" in said[0], done.stderr
    assert interrupted == [], [(s.id, s.end_reason) for s in interrupted]
    assert after == "after\n"


def test_a_node_killed_mid_upload_aborts_what_it_left_in_the_bucket_on_restart(
    tmp_path: Path, sshd: Sshd, moto: MotoS3
) -> None:
    """A session sends more than a part's worth, so its recording is on its way to the
    bucket as a multipart upload when the node is killed (kill -9): the upload's id dies
    with the process. On restart the node uploads the spool file whole and aborts the
    upload it left (else billed for ever, and a completer could make half a recording)."""
    b = Bastion(tmp_path / "bastion", moto.config())
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    moto.write_credentials(b.home / "s3.credentials")
    b.release()
    proc = b.serve_process()
    code = totp.code_for_step(b.seeds["alice"], totp.step_at(datetime.now(UTC)) + 1)

    def in_progress() -> list[tuple[str, str]]:
        listed = moto.client().list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        return [(u.get("Key", ""), u.get("UploadId", "")) for u in listed]

    def parts_sent() -> int:
        client = moto.client()
        return sum(len(client.list_parts(Bucket=BUCKET, Key=key, UploadId=upload)
                       .get("Parts", [])) for key, upload in in_progress())  # fmt: skip

    async def a_big_session_then_the_kill() -> None:
        key_file = asyncssh.read_private_key(b.keys["alice"])
        conn, _ = await connect(b, "alice+web-1", [key_file], [code])
        async with conn:
            process = await conn.create_process("cat", encoding=None)
            block = b"x" * 65535 + b"\n"
            for _ in range(PART_SIZE // len(block) + 16):  # echoed: twice that recorded
                process.stdin.write(block)
                await process.stdout.readexactly(len(block))
            await asyncio.to_thread(wait_until, lambda: parts_sent() >= 1)
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)

    spool = b.config.paths.recordings
    try:
        with contextlib.suppress(asyncssh.Error, OSError, asyncio.IncompleteReadError):
            asyncio.run(a_big_session_then_the_kill())  # the node dies under the connection
        [spooled] = spool.rglob("*.cast")
        key = f"node-a/{spooled.relative_to(spool).as_posix()}"
        assert [k for k, _ in in_progress()] == [key]  # what the killed node left
        proc = b.serve_process()
        wait_until(lambda: not spooled.exists())  # uploaded whole, checked, removed
        assert in_progress() == [], "the upload the killed node left is still open"
        assert moto.object_keys() == [key]
        store = Store.open(b.config.paths.store, SystemClock())
        [session] = store.sessions()
        store.close()
        assert session.state == "interrupted"
        assert session.recording_size == len(moto.read(key)) > PART_SIZE
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
