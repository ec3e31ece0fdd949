"""The SSH door's login: two factors on one connection, with real OpenSSH and asyncssh clients."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.harness import Bastion
from tests.realssh import Sshd

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL


class CodeClient(asyncssh.SSHClient):
    """An asyncssh client answering the verification prompt with the given codes."""

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        self.prompts: list[str] = []

    def kbdint_auth_requested(self) -> str:
        return ""

    def kbdint_challenge_received(
        self, name: str, instructions: str, lang: str, prompts: Sequence[tuple[str, bool]]
    ) -> list[str] | None:

        self.prompts += [p for p, _ in prompts]
        if not prompts:
            return []
        return [self.codes.pop(0)] if self.codes else None


async def connect(b: Bastion, login: str, keys: list[Any], codes: list[str]) -> Any:
    client = CodeClient(codes)
    known = b.known_hosts()
    conn = await asyncssh.connect(
        "127.0.0.1", b.port, username=login, client_keys=keys, known_hosts=known,
        client_factory=lambda: client, agent_path=None, config=None,
        preferred_auth="publickey,keyboard-interactive,password", password=None,
    )  # fmt: skip
    return conn, client


def test_openssh_exec_needs_key_then_code(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("echo hello; exit 3", login="alice+web-1",
                         answers=bastion.answers("alice"))  # fmt: skip
    assert result.returncode == 3, result.err
    assert result.out == "hello\n"
    asked = [p for p in result.prompts if "Verification code" in p]
    assert len(asked) == 1 and asked[0].endswith("Verification code: ")
    kinds = [e.kind for e in bastion.events()]
    assert "auth.totp_ok" in kinds and "session.opened" in kinds


def test_colon_form_and_exit_signal_pass_through(bastion: Bastion) -> None:
    async def run() -> asyncssh.SSHCompletedProcess:
        key = asyncssh.read_private_key(bastion.keys["alice"])
        conn, _ = await connect(bastion, "alice:web-1", [key], [bastion.code("alice")])
        async with conn:
            done: asyncssh.SSHCompletedProcess = await conn.run("kill -TERM $$", check=False)
            return done

    done = bastion.call(run())
    assert done.exit_signal is not None and done.exit_signal[0] == "TERM"


# OpenSSH's default cipher order (chacha20-poly1305 aside): CTR before GCM.
OPENSSH_ORDER = ["aes128-ctr", "aes192-ctr", "aes256-ctr", "aes128-gcm@openssh.com",
                 "aes256-gcm@openssh.com"]  # fmt: skip


def test_the_door_runs_aes_gcm_even_for_a_client_that_prefers_ctr(bastion: Bastion) -> None:
    """CTR with umac costs asyncssh more CPU per packet than GCM: the door offers only GCM."""

    async def run() -> tuple[str, str, str]:
        key = asyncssh.read_private_key(bastion.keys["alice"])
        client = CodeClient([bastion.code("alice")])
        conn = await asyncssh.connect(
            "127.0.0.1", bastion.port, username="alice+web-1", client_keys=[key],
            known_hosts=bastion.known_hosts(), client_factory=lambda: client, agent_path=None,
            config=None, encryption_algs=OPENSSH_ORDER,
        )  # fmt: skip
        async with conn:
            done = await conn.run("echo relayed", check=True)
            send, recv = conn.get_extra_info("send_cipher"), conn.get_extra_info("recv_cipher")
        return str(send), str(recv), str(done.stdout)

    send, recv, out = bastion.call(run())
    assert (send, recv) == ("aes128-gcm@openssh.com", "aes128-gcm@openssh.com")
    assert out == "relayed\n"


def test_wrong_code_is_refused_and_counted(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("true", login="alice+web-1", answers={"Verification code": "000000"})
    assert result.returncode == 255
    failed = bastion.events("auth.totp_failed")
    assert failed and all(e.subject == "alice" for e in failed)
    assert not bastion.events("session.opened")


def test_a_code_is_single_use_across_connections(bastion: Bastion) -> None:
    key = asyncssh.read_private_key(bastion.keys["alice"])
    code = bastion.code("alice")

    async def twice() -> tuple[bool, bool]:
        results = []
        for _ in range(2):
            try:
                conn, _ = await connect(bastion, "alice+web-1", [key], [code])
            except asyncssh.PermissionDenied:
                results.append(False)
            else:
                conn.close()
                await conn.wait_closed()
                results.append(True)
        return results[0], results[1]

    assert bastion.call(twice()) == (True, False)
    assert any("replayed" in e.detail for e in bastion.events("auth.totp_failed"))


def test_lockout_after_five_wrong_codes(bastion: Bastion) -> None:
    key = asyncssh.read_private_key(bastion.keys["alice"])

    async def attempt(codes: list[str]) -> bool:
        try:
            conn, _ = await connect(bastion, "alice+web-1", [key], codes)
        except asyncssh.PermissionDenied:
            return False
        conn.close()
        await conn.wait_closed()
        return True

    for _ in range(2):
        assert not bastion.call(attempt(["000000", "000001", "000002"]))
    assert bastion.events("user.locked")
    assert not bastion.call(attempt([bastion.code("alice")]))  # locked: even a right code fails
    bastion.store.unlock_user("alice", "test")
    assert bastion.call(attempt([bastion.code("alice")]))


def test_a_key_offered_but_not_proven_is_no_factor(bastion: Bastion) -> None:
    """PK_OK for a query proves nothing: with a bad signature, TOTP is never even asked."""
    alice = asyncssh.read_private_key(bastion.keys["alice"])
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    pair = asyncssh.load_keypairs([alice])[0]
    # Offers alice's public key (the server answers PK_OK) but cannot sign for it.
    pair.sign = lambda data: impostor.sign(data, b"ssh-ed25519")  # type: ignore[method-assign]

    async def run() -> list[str]:
        client = CodeClient([bastion.code("alice")])
        known = bastion.known_hosts()
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect(
                "127.0.0.1", bastion.port, username="alice+web-1", client_keys=[pair],
                known_hosts=known, client_factory=lambda: client, agent_path=None, config=None,
            )  # fmt: skip
        return client.prompts

    assert bastion.call(run()) == []
    assert not bastion.events("auth.totp_ok")
    assert not bastion.events("session.opened")


def test_a_code_alone_is_not_enough(bastion: Bastion) -> None:
    async def run() -> None:
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(bastion, "alice+web-1", [], [bastion.code("alice")])

    bastion.call(run())
    assert not bastion.events("auth.totp_ok")


def test_password_then_code_for_users_without_keys(tmp_path: Path, sshd: Sshd) -> None:
    b = Bastion(tmp_path / "bastion")
    b.add_user("bob", key=False, password="correct horse battery")
    b.add_target("web-1", sshd)
    b.grant("bob", "web-1")
    b.start()
    try:

        async def run(password: str) -> str:
            client = CodeClient([b.code("bob")])
            known = b.known_hosts()
            conn = await asyncssh.connect(
                "127.0.0.1", b.port, username="bob+web-1", password=password, client_keys=[],
                known_hosts=known, client_factory=lambda: client, agent_path=None, config=None,
            )  # fmt: skip
            async with conn:
                done = await conn.run("id -un", check=True)
            return str(done.stdout).strip()

        assert b.call(run("correct horse battery")) == sshd.login
        with pytest.raises(asyncssh.PermissionDenied):
            b.call(run("wrong horse battery"))
    finally:
        b.stop()


def test_no_grant_is_refused_with_how_to_ask(bastion: Bastion, tmp_path: Path) -> None:
    bastion.add_user("carol")
    ssh = bastion.openssh("carol", tmp_path / "client")
    result = ssh.run_ssh("true", login="carol+web-1", answers=bastion.answers("carol"))
    assert result.returncode == 1
    assert "no access to web-1" in result.err and "bastion grant carol web-1" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert bastion.events("access.denied")


def test_changed_host_key_is_refused_and_flagged(bastion: Bastion, sshd: Sshd,
                                                 tmp_path: Path) -> None:  # fmt: skip
    sshd.regenerate_host_key()
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("true", login="alice+web-1", answers=bastion.answers("alice"))
    assert result.returncode == 1
    assert "host key of web-1 has changed" in result.err
    flagged = bastion.events("target.host_key_mismatch")
    assert flagged and flagged[0].severity == "high"


def test_untrusted_target_is_refused(bastion: Bastion, sshd: Sshd, tmp_path: Path) -> None:
    bastion.add_target("web-2", sshd, trust=False)
    bastion.grant("alice", "web-2")
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("true", login="alice+web-2", answers=bastion.answers("alice"))
    assert result.returncode == 1
    assert "bastion target trust web-2" in result.err


def test_tcp_forwarding_is_refused_and_audited(bastion: Bastion) -> None:
    async def run() -> None:
        key = asyncssh.read_private_key(bastion.keys["alice"])
        conn, _ = await connect(bastion, "alice+web-1", [key], [bastion.code("alice")])
        async with conn:
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", 22)
            await asyncio.sleep(0)

    bastion.call(run())
    deadline = time.monotonic() + 10
    while not bastion.events("ssh.forwarding_refused") and time.monotonic() < deadline:
        time.sleep(0.02)  # the refusal is audited as the channel is refused, not awaited
    refused = bastion.events("ssh.forwarding_refused")
    assert refused and "127.0.0.1:22" in refused[0].detail


def test_agent_and_x11_forwarding_are_refused_and_audited(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    answers = bastion.answers("alice")
    flags = ["-o", "ForwardX11=yes"]
    result = ssh.run_ssh("echo still-works", login="alice+web-1", answers=answers, flags=flags)

    assert result.returncode == 0 and result.out == "still-works\n"
    agent_sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(agent_sock)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not agent_sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

        async def with_agent() -> str:
            key = asyncssh.read_private_key(bastion.keys["alice"])
            client = CodeClient([bastion.code("alice")])
            conn = await asyncssh.connect(
                "127.0.0.1", bastion.port, username="alice+web-1", client_keys=[key],
                known_hosts=bastion.known_hosts(), client_factory=lambda: client,
                agent_path=str(agent_sock), agent_forwarding=True, config=None,
            )  # fmt: skip
            async with conn:
                done = await conn.run("echo agent-refused-but-running", check=True)
            return str(done.stdout)

        assert bastion.call(with_agent()) == "agent-refused-but-running\n"
    finally:
        agent.terminate()
        agent.wait(10)

    def kinds() -> set[str]:
        return {
            json.loads(e.detail)["forwarding"] for e in bastion.events("ssh.forwarding_refused")
        }

    deadline = time.monotonic() + 10
    while len(kinds()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert kinds() == {"agent", "x11"}


def summed(b: Bastion, kind: str, want: int) -> int:
    """The count over `kind`'s summaries, moving the clock a minute on until it reaches `want`
    (each summary is written once its minute is over)."""
    deadline = time.monotonic() + 15
    while True:
        total = sum(int(json.loads(e.detail)["count"]) for e in b.events(kind))
        if total >= want or time.monotonic() > deadline:
            return total
        b.clock.advance(61)
        time.sleep(0.2)


def test_preauth_limits_refuse_and_audit(tmp_path: Path, sshd: Sshd) -> None:
    b = Bastion(tmp_path / "bastion",
                '[ssh]\nlogin_grace = "1s"\nmax_unauthenticated_per_source = 3\n')  # fmt: skip
    b.start()
    sockets: list[socket.socket] = []
    try:
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", b.port), timeout=10)
            sockets.append(sock)
            assert sock.recv(64).startswith(b"SSH-2.0-bastion")
        extra = socket.create_connection(("127.0.0.1", b.port), timeout=10)
        sockets.append(extra)
        told = b""
        while chunk := extra.recv(4096):
            told += chunk
        assert b"too many unauthenticated connections" in told
        # The first three say nothing and hit the login grace time; refusals and logins
        # abandoned before trying anything are summed up a minute at a time.
        assert summed(b, "auth.abandoned", 3) == 3
        [refused] = b.events("auth.preauth_refused")
        assert json.loads(refused.detail)["count"] == 1 and "too many unauthenticated" in (
            refused.detail
        )
        assert all("timeout" in e.detail.lower() for e in b.events("auth.abandoned"))
        assert not b.events("auth.failed")
    finally:
        for sock in sockets:
            sock.close()
        b.stop()


def test_stdin_and_eof_reach_the_target(bastion: Bastion, tmp_path: Path) -> None:
    ssh = bastion.openssh("alice", tmp_path / "client")
    result = ssh.run_ssh("wc -c", login="alice+web-1", answers=bastion.answers("alice"),
                         input=b"x" * 100_000)  # fmt: skip
    assert result.returncode == 0 and result.out.strip() == "100000"
