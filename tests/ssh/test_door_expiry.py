"""SSH sessions end when their access does: a line on the terminal, the channel closed, and the
session row saying why (the bastion's clock is moved, nothing sleeps for the grant's length)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import asyncssh
import pytest

from tests.harness import Bastion
from tests.realssh import Sshd
from tests.ssh.test_door_auth import connect
from tests.ssh.test_door_sessions import closed_sessions

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL

STREAM = "while true; do echo tick; sleep 0.2; done"  # like `tail -f`: output until stopped


def streaming_until(bastion: Bastion, end_access: Callable[[], object]) -> str:
    """Open a streaming session, end the access once output flows; what stderr said."""
    flowing = threading.Event()

    async def run() -> tuple[str, str]:
        key = asyncssh.read_private_key(bastion.keys["alice"])
        conn, _ = await connect(bastion, "alice+web-1", [key], [bastion.code("alice")])
        async with conn:
            proc = await conn.create_process(STREAM)
            first = await proc.stdout.readline()
            flowing.set()
            rest, err = await proc.communicate()
            return str(first) + str(rest), str(err)

    future = asyncio.run_coroutine_threadsafe(run(), bastion._loop)
    assert flowing.wait(20), "the stream never started"
    end_access()
    out, err = future.result(timeout=20)
    assert out.startswith("tick")  # the stream was flowing when access ended
    return err


def test_a_grant_expiring_ends_a_streaming_shell(bastion: Bastion) -> None:
    [grant] = bastion.store.grants(user="alice")
    err = streaming_until(bastion, lambda: bastion.clock.advance(timedelta(hours=3)))
    assert f"bastion: access to web-1 ended: grant {grant.id} expired" in err
    [closed] = closed_sessions(bastion)
    assert closed.state == "grant_expired"


def test_revoking_the_grant_ends_the_session(bastion: Bastion) -> None:
    [grant] = bastion.store.grants(user="alice")
    err = streaming_until(bastion, lambda: bastion.core.access.revoke(grant.id, "bob"))
    assert f"grant {grant.id} was revoked by bob" in err
    [closed] = closed_sessions(bastion)
    assert closed.state == "grant_revoked"


def test_disabling_the_user_ends_the_session(bastion: Bastion) -> None:
    err = streaming_until(
        bastion, lambda: bastion.store.disable_user("alice", "admin", "left the company")
    )
    assert "alice was disabled" in err
    [closed] = closed_sessions(bastion)
    assert closed.state == "user_disabled"
    assert [e.kind for e in bastion.events() if e.kind.startswith("user.")][-1:] == [
        "user.disabled"
    ]


def test_the_longest_session_a_target_allows_ends_a_busy_one(tmp_path: Path, sshd: Sshd) -> None:
    policy = '\n[targets.web-1]\nmax_session = "1h"\nidle_timeout = "2h"\n'
    b = Bastion(tmp_path / "bastion", policy)
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1", hours=3)
    b.start()
    try:
        err = streaming_until(b, lambda: b.clock.advance(timedelta(minutes=61)))
        assert "bastion: sessions on web-1 last at most 1h" in err
        [closed] = closed_sessions(b)
        assert closed.state == "session_cap"
    finally:
        b.stop()
