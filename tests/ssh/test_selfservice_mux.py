"""Decisions over one long-lived SSH connection (OpenSSH ControlMaster/ControlPersist opens a
channel per command on the connection it keeps): the login's code proved the connection,
never a decision. Each `approve`, `deny` and `break-glass` asks for a fresh code of its own,
through the shared check (single use, counted towards lockout, audited)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncssh

from bastion.identity import totp
from tests.harness import Bastion
from tests.realssh import Sshd
from tests.ssh.test_door_auth import connect

REASON = "INC-4411 refund stuck"


@dataclass(frozen=True)
class Done:
    exit_status: int
    stdout: str
    stderr: str


CONFIG = '\n[targets.web-1]\napprovals = 1\nbreak_glass = true\nbreak_glass_max = "30m"\n'


def _ahead(b: Bastion, user: str, steps: int) -> str:
    """The code `steps` TOTP steps ahead of the clock (within the accepted skew once the
    clock moves on), without moving the clock."""
    return totp.code_for_step(b.seeds[user], totp.step_at(b.clock.now()) + steps)


def _pending(b: Bastion) -> list[int]:
    return [r.id for r in b.store.requests() if r.state == "pending"]


async def _decide(conn: Any, command: str, code: str | None) -> Done:
    """One command on a new channel of `conn`, sending `code` as its stdin (None: stdin is
    closed at once, as `ssh ... < /dev/null` does)."""
    if code is None:
        done = await conn.run(command, stdin=asyncssh.DEVNULL, check=False)
    else:
        done = await conn.run(command, input=f"{code}\n", check=False)
    return Done(int(done.exit_status), str(done.stdout), str(done.stderr))


def test_each_decision_on_a_multiplexed_connection_needs_its_own_fresh_code(
    tmp_path: Path, sshd: Sshd
) -> None:
    b = Bastion(tmp_path / "bastion", CONFIG)
    for engineer in ("alice", "bob", "carl"):
        b.add_user(engineer, key=False)
    b.add_user("ada", "admin")
    b.add_target("web-1", sshd)
    b.start()
    try:
        for who in ("alice", "bob", "carl"):
            b.core.requests.request(user=who, target="web-1", duration=timedelta(hours=1),
                                    reason=f"{REASON} {who}", requested_by=who, mode="read",
                                    ticket_ref=None)  # fmt: skip
        b.call(_decisions(b))
    finally:
        b.stop()


async def _decisions(b: Bastion) -> None:
    key = asyncssh.read_private_key(b.keys["ada"])
    conn, client = await connect(b, "ada", [key], [b.code("ada")])
    async with conn:
        first = _ahead(b, "ada", 1)
        done = await _decide(conn, "approve 1 --for 1h", first)
        assert done.exit_status == 0 and "approved (grant 1)" in done.stdout, done.stderr
        assert "Verification code: " in done.stderr and first not in done.stdout + done.stderr
        b.clock.advance(timedelta(hours=3))  # the connection lives on, hours later

        bare = await _decide(conn, "approve 2", None)  # no code: the login's does not count
        assert bare.exit_status != 0 and "needs a fresh verification code" in bare.stderr
        assert "Verification code: " in bare.stderr and _pending(b) == [2, 3]

        again = await _decide(conn, "approve 2", first)  # the first decision's code, again
        assert again.exit_status != 0 and _pending(b) == [2, 3], again.stdout

        refused = await _decide(conn, f'deny 3 --reason "{REASON} no"', "000000")
        assert refused.exit_status != 0 and _pending(b) == [2, 3]

        now = _ahead(b, "ada", 0)
        fresh = await _decide(conn, "approve 2", now)
        assert fresh.exit_status == 0 and "approved (grant 2)" in fresh.stdout, fresh.stderr
        replayed = await _decide(conn, f'deny 3 --reason "{REASON} no"', now)  # single use
        assert replayed.exit_status != 0 and "used already" in replayed.stderr
        assert _pending(b) == [3]
        denied = await _decide(conn, f'deny 3 --reason "{REASON} no"', _ahead(b, "ada", 1))
        assert denied.exit_status == 0 and "denied" in denied.stdout, denied.stderr

        glass = await _decide(conn, f'break-glass web-1 --reason "{REASON} down"', None)
        assert glass.exit_status != 0 and "needs a fresh verification code" in glass.stderr
        assert not b.store.break_glass_grants()
    assert [p for p in client.prompts if "code" in p.lower()] == ["Verification code: "]
    decided = [(e.kind, e.actor) for e in b.events() if e.kind.startswith("request.")][3:]
    assert decided == [("request.approved", "ada"), ("request.approved", "ada"),
                       ("request.denied", "ada")]  # fmt: skip
    checks = [e.kind for e in b.events() if e.kind.startswith("auth.totp_") and e.subject == "ada"]
    # the login's code, then one check for each decision that sent one
    assert checks.count("auth.totp_ok") == 4 and checks.count("auth.totp_failed") == 3
