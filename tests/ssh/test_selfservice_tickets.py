"""Reusable database tickets over the SSH self-service door: the person is the SSH login, the
code is a fresh one read from stdin, and the ticket then opens the PostgreSQL door."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.identity import totp
from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, alice_on
from tests.realpg import PgDatabase, run_psql
from tests.realssh import OpenSSHClient


@pytest.fixture
def door(tmp_path: Path, pg: PgDatabase) -> Iterator[Bastion]:
    """alice (key + code over SSH) and bob may read orders-prod through the PostgreSQL door."""
    b = alice_on(tmp_path / "bastion", pg)
    b.add_user("bob", password=PASSWORD)
    b.grant("bob", "orders-prod")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def next_code(b: Bastion, user: str) -> bytes:
    """The code of the step after the one the SSH login will use (one step of skew allows
    it): a code the login has not spent."""
    return f"{totp.code_for_step(b.seeds[user], totp.step_at(b.clock.now()) + 2)}\n".encode()


def ssh_as(b: Bastion, user: str, tmp_path: Path) -> OpenSSHClient:
    return b.openssh(user, tmp_path / f"client-{user}")


def test_an_engineer_mints_a_bound_reusable_ticket_over_ssh(door: Bastion, tmp_path: Path) -> None:
    ssh = ssh_as(door, "alice", tmp_path)
    code = next_code(door, "alice")
    done = ssh.run_ssh("ticket orders-prod --reusable --for 4h --bind-address", login="alice",
                       answers=door.answers("alice"), input=code)  # fmt: skip
    assert done.returncode == 0, done.err
    token = done.out.splitlines()[0]
    assert token.startswith("btr_") and "bound to 127.0.0.1/32" in done.out
    assert code.strip().decode() not in done.out + done.err
    via = PgDatabase("127.0.0.1", door.pg_port, "orders-prod", "alice", token)
    for _ in range(2):  # any number of connections
        opened = run_psql(via, "-At", "-c", "SELECT 1", env={"PGSSLMODE": "require"})
        assert opened.returncode == 0, opened.stderr
    [row] = door.store.tickets(user="alice")
    assert row.uses == 2 and row.created_by == "ssh:127.0.0.1:ticket"
    listed = ssh.run_ssh("ticket list", login="alice", answers=door.answers("alice"))
    assert f"ticket {row.id} (reusable) alice -> orders-prod" in listed.out
    assert token not in listed.out
    bob = ssh_as(door, "bob", tmp_path)
    theirs = bob.run_ssh(f"ticket revoke {row.id}", login="bob", answers=door.answers("bob"))
    assert theirs.returncode == 4 and f"no ticket {row.id}" in theirs.err  # not bob's
    mine = ssh.run_ssh(f"ticket revoke {row.id}", login="alice", answers=door.answers("alice"))
    assert mine.returncode == 0, mine.err
    refused = run_psql(via, "-c", "SELECT 1", env={"PGSSLMODE": "require"})
    assert refused.returncode != 0 and "ticket refused" in refused.stderr  # and nothing more
    assert "revoked" not in refused.stderr
    assert "revoked" in json.loads(door.events("auth.ticket_refused")[-1].detail)["why"]


def test_minting_over_ssh_needs_a_fresh_code_of_the_login(door: Bastion, tmp_path: Path) -> None:
    ssh = ssh_as(door, "alice", tmp_path)
    none = ssh.run_ssh("ticket orders-prod --reusable", login="alice",
                       answers=door.answers("alice"), input=b"")  # fmt: skip
    assert none.returncode == 2 and "verification code on stdin" in none.err
    bobs = ssh.run_ssh("ticket orders-prod --reusable", login="alice",
                       answers=door.answers("alice"), input=next_code(door, "bob"))  # fmt: skip
    assert bobs.returncode == 6 and "wrong verification code" in bobs.err
    assert door.store.tickets() == []
