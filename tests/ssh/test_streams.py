"""The pure stdin-command and raw-tunnel readers: what they find, and their documented limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.ssh.streams import (
    FROM_STDIN,
    StdinCommands,
    StdinLine,
    TunnelGuard,
    raw_tunnel,
    reads_commands_from_stdin,
    reads_secret_first,
)


def lines(data: bytes, *, step: int = 0) -> list[str]:
    reader = StdinCommands()
    found: list[StdinLine] = []
    pieces = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
    for piece in pieces:
        found += reader.feed(piece)
    found += reader.flush()
    return [line.text for line in found]


def test_each_non_blank_line_is_a_command_whatever_the_reads() -> None:
    script = "set -e\n\necho caf\u00e9 \\\r\n  && id\nlast without newline".encode()
    expected = ["set -e", "echo caf\u00e9 \\", "  && id", "last without newline"]
    assert lines(script) == expected
    assert lines(script, step=1) == expected  # one byte at a time, UTF-8 split too


def test_binary_stdin_stops_the_rebuild_with_one_note() -> None:
    reader = StdinCommands()
    assert [line.text for line in reader.feed(b"echo a\n")] == ["echo a"]
    [note] = reader.feed(b"\x00\x01binary\n")
    assert note.text == "" and "binary data" in note.note
    assert reader.feed(b"echo b\n") == [] and reader.flush() == []
    assert StdinCommands().feed(b"\xff\xfe\n")[0].note.startswith(FROM_STDIN)


def test_a_long_line_is_cut_and_flagged() -> None:
    [line] = StdinCommands(max_line=10).feed(b"x" * 50 + b"\n")
    assert line.text == "x" * 10 and "too long" in line.note


def test_limit_heredoc_bodies_are_logged_as_lines() -> None:
    assert lines(b"cat <<EOF\nnot a command\nEOF\n") == ["cat <<EOF", "not a command", "EOF"]


@pytest.mark.parametrize("command", [
    "nc host 22", "nc -N 10.0.0.1 5432 < dump", "/usr/bin/ncat x 1", "netcat x 1",
    "socat - TCP:db:5432", "telnet db 5432", "sudo -u root nc a 1", "timeout 5s socat - TCP:x:1",
    "env A=1 nc x 1", "echo hi; ncat x 1", "ls | nc x 1", "echo $(nc x 1)", "echo `nc x 1`",
    "ssh -W db:22 jump", "ssh -L 5432:db:5432 other", "ssh -o ProxyCommand=x other",
    "bash -c 'exec 3<>/dev/tcp/db/5432'", "cat < /dev/udp/x/53", "sh -c 'nc x 1'",
    "su -c 'nc x 1'", "exec nc x 1", "cat 'unbalanced",
])  # fmt: skip
def test_raw_tunnels_are_found(command: str) -> None:
    assert raw_tunnel(command)


@pytest.mark.parametrize("command", [
    "grep nc /etc/services", "tar cf - /etc", "ssh other uptime", "echo netcat", "cat nc.txt",
    "ls -l /dev", "rsync --server -e.LsfxC . /tmp", "scp -t /tmp",
])  # fmt: skip
def test_ordinary_commands_are_not_tunnels(command: str) -> None:
    assert raw_tunnel(command) is None


def test_limit_a_program_that_opens_its_own_socket_is_not_seen() -> None:
    assert (
        raw_tunnel("python3 -c 'import socket; socket.create_connection((\"db\", 5432))'") is None
    )
    assert raw_tunnel("curl telnet://db:5432") is None


@pytest.mark.parametrize(("command", "scripted"), [
    (None, True), ("bash -s", True), ("bash", True), ("sh -x", True), ("sudo bash -s", True),
    ("python3", True), ("/bin/sh -s", True), ("bash script.sh", False), ("bash -c ls", False),
    ("cat", False), ("tar xf -", False), ("scp -t /tmp", False), ("bash -s; ls", False),
    ("sudo -i", True), ("sudo su -", True), ("su - bob", True), ("sudo -s", True),
    ("sudo ls", False), ("su -c 'ls' bob", False), ("sudo -u bob ls", False),
])  # fmt: skip
def test_which_commands_read_their_script_from_stdin(command: str | None, scripted: bool) -> None:
    assert reads_commands_from_stdin(command) is scripted


def test_sudo_s_reads_a_password_first() -> None:
    assert reads_secret_first("sudo -S ls") and reads_secret_first("echo | sudo --stdin -k ls")
    assert reads_secret_first("sudo -kS id")
    assert not reads_secret_first("sudo -u bob ls") and not reads_secret_first("ls -S")


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_taken_without_error(data: bytes) -> None:
    reader = StdinCommands()
    for line in [*reader.feed(data), *reader.flush()]:
        assert line.note.startswith(FROM_STDIN) and "\n" not in line.text
    raw_tunnel(data.decode("utf-8", "replace"))


def test_the_guard_checks_lines_partial_lines_and_continuations() -> None:
    assert TunnelGuard().feed(b"echo ok\nls\n") is None
    assert TunnelGuard().feed(b"echo ok\nnc x 1\n")
    partial = TunnelGuard()
    assert partial.feed(b"n") is None and partial.feed(b"c x 1")  # before its newline
    joined = TunnelGuard()
    assert joined.feed(b"n\\\n") is None and joined.feed(b"c x 1\n")
    assert TunnelGuard().feed(b"echo 'open quote") is None  # may still be closed
    assert TunnelGuard().feed(b"echo a\\\\\nls\n") is None  # an escaped backslash


def test_the_guard_refuses_input_it_cannot_read() -> None:
    assert "not text" in (TunnelGuard().feed(b"\x00\nnc x 1\n") or "")
    assert "not text" in (TunnelGuard().feed(b"\xff\n") or "")


def test_limit_the_guard_does_not_expand_variables() -> None:
    assert TunnelGuard().feed(b"N=nc; $N x 1\n") is None


@pytest.mark.parametrize("command", [
    "ls\nnc db 5432", "echo ok\n\nsocat - TCP:db:5432", "if true; then nc db 5432; fi",
    "while :; do ncat db 5432; done",
])  # fmt: skip
def test_a_tunnel_on_a_later_line_or_after_a_keyword_is_found(command: str) -> None:
    """An exec's command line may hold several lines (`ssh host $'ls\\nnc db 5432'`)."""
    assert raw_tunnel(command)
