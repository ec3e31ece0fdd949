"""One TOTP code, one login: a code spent at the SSH door is refused at the PostgreSQL door."""

from __future__ import annotations

from pathlib import Path

import asyncssh

from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, UNMASKED
from tests.realpg import PgDatabase, run_psql
from tests.realssh import Sshd
from tests.ssh.test_door_auth import connect


def test_a_code_used_for_ssh_is_refused_for_postgres(tmp_path: Path, sshd: Sshd,
                                                     pg: PgDatabase) -> None:  # fmt: skip
    b = Bastion(tmp_path / "bastion", UNMASKED, postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.add_target("web-1", sshd)
    b.add_pg_target("orders-prod", pg)
    b.grant("alice", "web-1")
    b.grant("alice", "orders-prod")
    b.start()
    try:
        code = b.code("alice")

        async def ssh_login() -> None:
            key = asyncssh.read_private_key(b.keys["alice"])
            conn, _ = await connect(b, "alice+web-1", [key], [code])
            conn.close()
            await conn.wait_closed()

        b.call(ssh_login())
        via = PgDatabase("127.0.0.1", b.pg_port, "orders-prod", "alice", PASSWORD + code)
        done = run_psql(via, "-c", "SELECT 1")
        assert done.returncode != 0 and "used already" in done.stderr
        failed = b.events("auth.totp_failed")
        assert failed and "postgres:" in failed[-1].actor
    finally:
        b.stop()
