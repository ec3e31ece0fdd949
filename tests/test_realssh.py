"""The real-OpenSSH test infrastructure works against a private sshd, with no bastion involved."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncssh
import pytest

from tests.realssh import (
    TEST_LOGIN,
    Askpass,
    OpenSSHClient,
    Sshd,
    descendants,
    fingerprint,
    free_port,
    make_keypair,
    read_banner,
)

CODE = "123456"


def test_sshd_serves_its_own_host_key_on_loopback(sshd: Sshd) -> None:
    assert sshd.running and sshd.host == "127.0.0.1" and sshd.port > 0
    banner = read_banner(sshd.host, sshd.port)
    assert banner is not None and banner.startswith("SSH-2.0-OpenSSH")
    assert sshd.host_key_pub.startswith("ssh-ed25519 ")
    assert sshd.known_hosts_line == f"[127.0.0.1]:{sshd.port} {sshd.host_key_pub}"
    assert sshd.host_key_fingerprint.startswith("SHA256:")
    assert sshd.login == TEST_LOGIN


def test_exec_returns_output_and_exit_status(sshd_client: OpenSSHClient) -> None:
    result = sshd_client.run_ssh("echo hello; exit 3")
    assert (result.returncode, result.out) == (3, "hello\n"), result.err
    assert result.prompts == []


def test_logins_land_on_the_unprivileged_user_with_sh(sshd_client: OpenSSHClient) -> None:
    result = sshd_client.run_ssh('id -un; echo "$0"; id -u')
    name, shell, uid = result.out.split()
    assert (name, shell) == (TEST_LOGIN, "sh") and uid != "0", result.err


def test_stdin_reaches_the_remote_command(sshd_client: OpenSSHClient) -> None:
    result = sshd_client.run_ssh("wc -c", input=b"x" * 1000)
    assert result.out.strip() == "1000", result.err


def test_scp_upload_and_download_are_byte_identical(
    sshd: Sshd, sshd_client: OpenSSHClient, tmp_path: Path
) -> None:
    original = tmp_path / "random.bin"
    original.write_bytes(os.urandom(1024 * 1024))
    remote = f"{sshd.files_dir}/random.bin"
    up = sshd_client.run_scp(str(original), sshd_client.remote(remote))
    assert up.returncode == 0, up.err
    assert Path(remote).read_bytes() == original.read_bytes()
    back = tmp_path / "back.bin"
    down = sshd_client.run_scp(sshd_client.remote(remote), str(back))
    assert down.returncode == 0, down.err
    assert back.read_bytes() == original.read_bytes()


def test_sftp_batch_put_and_get(sshd: Sshd, sshd_client: OpenSSHClient, tmp_path: Path) -> None:
    original = tmp_path / "data.bin"
    original.write_bytes(os.urandom(200_000))
    back = tmp_path / "back.bin"
    result = sshd_client.run_sftp(
        [
            f"cd {sshd.files_dir}",
            f"put {original} data.bin",
            "mkdir sub",
            "rename data.bin sub/moved.bin",
            f"get sub/moved.bin {back}",
        ]
    )
    assert result.returncode == 0, result.err
    assert back.read_bytes() == original.read_bytes()
    assert (sshd.files_dir / "sub" / "moved.bin").read_bytes() == original.read_bytes()


def test_sftp_batch_fails_on_a_failing_command(sshd_client: OpenSSHClient) -> None:
    result = sshd_client.run_sftp("get /nonexistent/file")
    assert result.returncode != 0


async def test_asyncssh_client_runs_as_the_login(sshd: Sshd) -> None:
    key = asyncssh.read_private_key(str(sshd.client_key_path))
    async with asyncssh.connect(
        sshd.host,
        sshd.port,
        username=sshd.login,
        client_keys=[key],
        known_hosts=asyncssh.import_known_hosts(sshd.known_hosts_line),
        config=None,
        agent_path=None,
    ) as conn:
        result = await conn.run("id -un", check=True)
    assert result.stdout == f"{TEST_LOGIN}\n"
    async with await sshd.asyncssh_connect() as conn:
        result = await conn.run("exit 7")
    assert result.exit_status == 7


async def test_asyncssh_refuses_a_host_key_it_was_not_given(sshd: Sshd) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    pinned = asyncssh.import_known_hosts(f"[{sshd.host}]:{sshd.port} {other}")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await sshd.asyncssh_connect(known_hosts=pinned)


def test_an_unauthorized_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    stranger = make_keypair(tmp_path / "stranger")
    client = OpenSSHClient.for_sshd(sshd, tmp_path / "c", identity=stranger)
    result = client.run_ssh("true")
    assert result.returncode == 255 and "Permission denied" in result.err
    sshd.wait_for_log("Connection closed by authenticating user")


def test_askpass_script_answers_from_the_mapping_and_records_prompts() -> None:
    answers = {"Verification code:": CODE, "": "fallback", "Password:": ["first", "second"]}
    with Askpass(answers) as askpass:

        def ask(prompt: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(askpass.script), prompt], capture_output=True, text=True, check=False
            )

        assert ask("(alice+web-1@127.0.0.1) Verification code: ").stdout == f"{CODE}\n"
        assert ask("Password: ").stdout == "first\n"
        assert ask("Password: ").stdout == "second\n"
        assert ask("Password: ").returncode == 1  # list used up: no answer
        assert ask("Anything else? ").stdout == "fallback\n"
        assert askpass.prompts == [
            "(alice+web-1@127.0.0.1) Verification code: ",
            "Password: ",
            "Password: ",
            "Password: ",
            "Anything else? ",
        ]
        assert askpass.env()["SSH_ASKPASS_REQUIRE"] == "force"
    assert not askpass.script.exists()


def test_askpass_script_asks_a_function_at_prompt_time() -> None:
    seen: list[str] = []

    def answer(prompt: str) -> str | None:
        seen.append(prompt)
        return f"code-{len(seen)}" if "code" in prompt else None

    with Askpass(answer) as askpass:
        first = subprocess.run(
            [askpass.script, "Verification code: "], capture_output=True, check=False
        )
        second = subprocess.run(
            [askpass.script, "Verification code: "], capture_output=True, check=False
        )
        none = subprocess.run([askpass.script, "Password: "], capture_output=True, check=False)
    assert (first.stdout, second.stdout, none.returncode) == (b"code-1\n", b"code-2\n", 1)
    assert seen == askpass.prompts == ["Verification code: ", "Verification code: ", "Password: "]


# --- askpass end to end: real ssh/scp/sftp against an asyncssh keyboard-interactive server ---


class _CodeServer(asyncssh.SSHServer):
    """Accepts any user who answers "Verification code: " with CODE (keyboard-interactive)."""

    def begin_auth(self, username: str) -> bool:
        return True

    def kbdint_auth_supported(self) -> bool:
        return True

    def get_kbdint_challenge(
        self, username: str, lang: str, submethods: str
    ) -> tuple[str, str, str, list[tuple[str, bool]]]:
        return "", "", "", [("Verification code: ", False)]

    def validate_kbdint_response(self, username: str, responses: Sequence[str]) -> bool:
        return responses == [CODE]


class _SFTPServer(asyncssh.SFTPServer):
    """Reports exit status 0 when the session ends, as sshd does (OpenSSH scp insists on one)."""

    def exit(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.exit(0)


async def _greet(process: asyncssh.SSHServerProcess[str]) -> None:
    process.stdout.write(f"hi {process.get_extra_info('username')}: {process.command}\n")
    process.exit(0)


@pytest.fixture
async def kbdint_server(tmp_path: Path) -> AsyncIterator[OpenSSHClient]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        server_factory=_CodeServer,
        process_factory=_greet,
        sftp_factory=_SFTPServer,
        allow_scp=True,
    )
    port = server.sockets[0].getsockname()[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
    try:
        yield OpenSSHClient(
            "127.0.0.1", port, "alice+web-1", workdir=tmp_path / "c", known_hosts=known_hosts
        )
    finally:
        server.close()
        await server.wait_closed()


async def test_ssh_answers_keyboard_interactive_through_askpass(
    kbdint_server: OpenSSHClient,
) -> None:
    result = await kbdint_server.run_ssh_async("uptime", answers={"Verification code:": CODE})
    assert (result.returncode, result.out) == (0, "hi alice+web-1: uptime\n"), result.err
    assert len(result.prompts) == 1 and result.prompts[0].endswith("Verification code: ")


async def test_askpass_answers_in_turn_and_from_a_function(kbdint_server: OpenSSHClient) -> None:
    retried = await kbdint_server.run_ssh_async("x", answers={"code": ["000000", CODE]})
    assert retried.returncode == 0 and len(retried.prompts) == 2, retried.err
    refused = await kbdint_server.run_ssh_async("x", answers=lambda prompt: "999999")
    assert refused.returncode == 255 and "Permission denied" in refused.err
    assert len(refused.prompts) == 3  # NumberOfPasswordPrompts
    timely = await kbdint_server.run_ssh_async("x", answers=lambda prompt: CODE)
    assert timely.returncode == 0


async def test_scp_and_sftp_answer_keyboard_interactive_through_askpass(
    kbdint_server: OpenSSHClient, tmp_path: Path
) -> None:
    original = tmp_path / "file.bin"
    original.write_bytes(os.urandom(100_000))
    answers = {"Verification code:": CODE}
    copied = tmp_path / "copied.bin"
    scp = await kbdint_server.run_scp_async(
        str(original), kbdint_server.remote(str(copied)), answers=answers
    )
    assert scp.returncode == 0 and len(scp.prompts) == 1, scp.err
    assert copied.read_bytes() == original.read_bytes()
    fetched = tmp_path / "fetched.bin"
    sftp = await kbdint_server.run_sftp_async(f"get {copied} {fetched}", answers=answers)
    assert sftp.returncode == 0 and len(sftp.prompts) == 1, sftp.err
    assert fetched.read_bytes() == original.read_bytes()


# --- interactive terminal through tmux -------------------------------------------------


def test_tmux_drives_an_interactive_shell(sshd_client: OpenSSHClient) -> None:
    with sshd_client.tmux() as pane:
        pane.wait_for(re.compile(r"\$ $", re.MULTILINE))
        pane.type_text("echo abc$((40 + 2))", enter=True)
        screen = pane.wait_for("abc42")
        assert "echo abc$((40 + 2))" in screen
        pane.type_text("exit 5", enter=True)
        assert pane.wait_exit() == 5


def test_tmux_session_close_ends_the_remote_shell(sshd: Sshd, sshd_client: OpenSSHClient) -> None:
    pane = sshd_client.tmux()
    try:
        pane.wait_for("$ ")
        pane.type_text("sleep 600", enter=True)
        sleeper = _wait_for_process(sshd, "sleep 600")
    finally:
        pane.close()
    _wait_gone(sleeper)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _wait_for_process(sshd: Sshd, command: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in descendants(sshd.pid):
            if _command(pid) == command:
                return pid
        time.sleep(0.02)
    raise AssertionError(f"no {command!r} under sshd after {timeout}s")


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _command(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _command(pid), f"process {pid} still running"


# --- host key change -------------------------------------------------------------------


def test_host_key_regeneration_is_refused_by_the_old_known_hosts(
    sshd: Sshd, sshd_client: OpenSSHClient
) -> None:
    assert sshd_client.run_ssh("true").returncode == 0
    old_fingerprint, port = sshd.host_key_fingerprint, sshd.port
    new_key = sshd.regenerate_host_key()
    assert sshd.port == port and fingerprint(new_key) == sshd.host_key_fingerprint
    assert sshd.host_key_fingerprint != old_fingerprint
    refused = sshd_client.run_ssh("true")
    assert refused.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.err
    sshd.write_known_hosts(sshd_client.known_hosts)
    assert sshd_client.run_ssh("true").returncode == 0


def test_stop_ends_live_sessions(sshd: Sshd, sshd_client: OpenSSHClient) -> None:
    with sshd_client.tmux("sleep 600", flags=["-t"]) as pane:
        sleeper = _wait_for_process(sshd, "sleep 600")
        sshd.stop()
        assert pane.wait_exit() == 255
    _wait_gone(sleeper)
    assert not sshd.running


def test_free_port_never_names_one_port_twice() -> None:
    # A config built from three free_port() calls once named one port for two listeners
    # (CI, stop 31): the kernel gives a let-go port out again.
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_free_port_hands_out_none_the_kernel_could_pick_or_one_in_use() -> None:
    # CI (stop 32's rehearsal, two suites side by side): `serve` could not listen on its port,
    # which another process's bind of port 0 or outgoing connection had taken meanwhile.
    ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    nxt = free_port() + 1
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", nxt))
        held.listen()
        ports = [free_port() for _ in range(50)]
    assert nxt not in ports and all(port < ephemeral for port in ports)
