"""Start-up takes the spool before it touches crashed sessions (issue 18): a second `bastion
serve` on a home whose spool a live process holds refuses before it closes any session as
interrupted, with or without an object store. Real sshd, real serve processes, moto_server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from bastion.errors import Exit
from tests.harness import Bastion
from tests.reals3 import MotoS3
from tests.realssh import Sshd
from tests.ssh.test_door_auth import connect


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path)
    try:
        yield server.start()
    finally:
        server.close()


@pytest.mark.parametrize("where", ["s3", "local"])
def test_a_second_serve_never_closes_the_live_sessions_of_the_spools_holder(
    tmp_path: Path, sshd: Sshd, moto: MotoS3, where: str
) -> None:
    """alice is mid-session on the first process; a second `serve` on the same home (an
    operator's slip, a unit started twice) must refuse in one line before its crash
    recovery closes her session, which goes on, open in the store, afterwards."""
    extra = moto.config() if where == "s3" else ""
    b = Bastion(tmp_path / "bastion", extra)
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
