"""A NUL a client puts in an exec command is recorded escaped (bastion/audit/nul.py), as every
engine can hold it, and the connection goes on: PostgreSQL text cannot hold U+0000, and a
store write refused there would end the session."""

from __future__ import annotations

import asyncssh

from bastion.audit.nul import restore
from tests.harness import Bastion
from tests.ssh.test_door_auth import connect
from tests.ssh.test_door_sessions import closed_sessions

HOSTILE = "echo one\x00two \u2400 three"


def test_an_exec_command_holding_a_nul_is_logged_escaped_and_the_connection_goes_on(
    bastion: Bastion,
) -> None:
    async def run() -> str:
        key = asyncssh.read_private_key(bastion.keys["alice"])
        conn, _ = await connect(bastion, "alice+web-1", [key], [bastion.code("alice")])
        async with conn:
            await conn.run(HOSTILE, check=False)  # OpenSSH's sshd refuses it: its own choice
            after = await conn.run("echo after-the-nul", check=False)
            return str(after.stdout)

    assert bastion.call(run()) == "after-the-nul\n"
    logged = {c.text for s in closed_sessions(bastion, 2) for c in bastion.store.commands(s.id)}
    assert logged == {"echo one\u24000two \u2400\u2400 three", "echo after-the-nul"}
    assert {restore(text) for text in logged} == {HOSTILE, "echo after-the-nul"}
    assert bastion.store.verify_chain().ok
