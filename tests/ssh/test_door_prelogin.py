"""The SSH door's cap on logins in progress from every address, with raw sockets and asyncssh."""

from __future__ import annotations

import socket
from pathlib import Path

import asyncssh

from tests.harness import Bastion
from tests.realssh import Sshd
from tests.ssh.test_door_auth import connect

LIMITS = "[ssh]\nmax_unauthenticated_per_source = 5\nmax_logins_in_progress = 4\n"


def greeted(b: Bastion, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", b.port), timeout=10, source_address=(source, 0))
    assert sock.recv(64).startswith(b"SSH-2.0-bastion")
    return sock


def last_words(sock: socket.socket) -> bytes:
    told = b""
    while chunk := sock.recv(4096):
        told += chunk
    return told


def test_the_cap_turns_the_busiest_address_away_and_lets_a_real_user_in(
    tmp_path: Path, sshd: Sshd
) -> None:
    b = Bastion(tmp_path / "bastion", LIMITS)
    b.add_user("alice")
    b.add_target("web-1", sshd)
    b.grant("alice", "web-1")
    b.start()
    held = [greeted(b, source) for source in ("127.0.0.2",) * 3 + ("127.0.0.3",)]
    try:
        busy = socket.create_connection(("127.0.0.1", b.port), timeout=10,
                                        source_address=("127.0.0.2", 0))  # fmt: skip
        with busy:  # its address has the most logins already
            assert b"too many connections are logging in" in last_words(busy)

        async def run() -> str:
            key = asyncssh.read_private_key(b.keys["alice"])
            conn, _ = await connect(b, "alice+web-1", [key], [b.code("alice")])
            async with conn:
                done = await conn.run("echo in", check=True)
                return str(done.stdout)

        assert b.call(run()) == "in\n"  # from an address with none in progress
        assert b"too many connections are logging in" in last_words(held[0])  # the oldest
    finally:
        for sock in held:
            sock.close()
        b.stop()


def test_wrong_ssh_passwords_count_towards_the_users_lockout(tmp_path: Path) -> None:
    b = Bastion(tmp_path / "bastion", "[lockout]\nmax_failures = 3\n")
    b.add_user("pat", key=False, password="pat's long password 1")

    async def attempt(password: str) -> None:
        try:
            conn = await asyncssh.connect(
                "127.0.0.1", b.port, username="pat", password=password, known_hosts=b.known_hosts(),
                client_keys=None, agent_path=None, config=None, preferred_auth="password",
            )  # fmt: skip
        except asyncssh.PermissionDenied:
            return
        conn.close()
        raise AssertionError("a wrong password let pat in")

    b.start()
    try:
        for guess in ("guess number one", "guess number two", "guess number three"):
            b.call(attempt(guess))
        assert b.store.user("pat").locked_until is not None
        assert len(b.events("auth.password_failed")) == 3
        assert b.events("user.locked")
    finally:
        b.stop()
