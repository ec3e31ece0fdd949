"""Red team, the drain: a database login whose password message arrives after the drain
began is refused as stopping before anything is checked, so it spends nothing the engineer
then needs on the next node (a one-time ticket, a TOTP code) and counts no failure."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bastion import pgwire as pw
from bastion.core import STOPPING_REFUSAL
from bastion.pgproxy.door import PgDoor
from tests.harness import Bastion
from tests.pgproxy.test_door_prelogin import error_of, read_frame
from tests.test_drain_logins import bastion, running_server, stop_after_drain
from tests.test_reload_stop import PASSWORD, until_async

__all__ = ["bastion"]  # the fixture, as test_drain_logins makes it
TICKET = "bt_drain-red-team-ticket"


def asked_for_password(b: Bastion) -> tuple[socket.socket, pw.FrameReader]:
    """Start-up sent before the drain; the door asked for the password."""
    sock = socket.create_connection(("127.0.0.1", b.pg_port), timeout=15)
    sock.sendall(pw.startup_message({"user": "alice", "database": "shop"}))
    reader = pw.FrameReader()
    frame = read_frame(sock, reader)
    assert frame is not None and frame.type == b"R", frame
    return sock, reader


def drain(b: Bastion) -> None:
    b._loop.call_soon_threadsafe(running_server(b).lifecycle.terminate)
    b.call(until_async(lambda: b.core.stopping, "the drain to begin"))


def auth_kinds(b: Bastion) -> list[str]:
    return [e.kind for e in b.events() if e.kind.startswith("auth.")]


def test_a_one_time_ticket_sent_during_the_drain_is_not_spent(bastion: Bastion) -> None:
    b = bastion
    expires = datetime.now(UTC) + timedelta(minutes=10)
    b.core.identity.add_ticket("alice", "shop", TICKET, expires, "test")
    before = auth_kinds(b)
    sock, reader = asked_for_password(b)
    with sock:
        drain(b)
        sock.sendall(pw.password_message(TICKET.encode()))
        error = error_of(sock, reader)
    assert (error.fields.get("C"), error.fields.get("M")) == ("57P03", STOPPING_REFUSAL)
    assert auth_kinds(b) == before  # not spent, not refused: untouched for the next node
    [row] = [t for t in b.store.tickets(user="alice") if t.target == "shop"]
    assert row.used_at is None
    stop_after_drain(b)


def test_a_code_sent_during_the_drain_is_not_spent(bastion: Bastion) -> None:
    b = bastion
    code = b.code("alice")
    before = auth_kinds(b)
    sock, reader = asked_for_password(b)
    with sock:
        drain(b)
        sock.sendall(pw.password_message(f"{PASSWORD}{code}".encode()))
        error = error_of(sock, reader)
    assert (error.fields.get("C"), error.fields.get("M")) == ("57P03", STOPPING_REFUSAL)
    assert auth_kinds(b) == before
    assert b.core.identity.check_totp("alice", code, "test").result.name == "ACCEPTED"
    stop_after_drain(b)


def test_an_ssh_code_typed_during_the_drain_is_not_spent(bastion: Bastion, tmp_path: Path) -> None:
    """OpenSSH asked for the code before the drain; the engineer types it after: the line
    says the node is stopping, and the code is left for the next node."""
    b = bastion
    asked, drained = threading.Event(), threading.Event()
    typed: list[str] = []

    def answer(prompt: str) -> str | None:
        if "Verification code" not in prompt:
            return None
        asked.set()
        drained.wait(30)
        typed.append(b.code("alice"))
        return typed[-1]

    ssh = b.openssh("alice", tmp_path / "client")
    outcome: list[Any] = []

    def run() -> None:
        outcome.append(ssh.run_ssh("echo hello", login="alice+web-1", answers=answer))

    client = threading.Thread(target=run)
    before = auth_kinds(b)
    client.start()
    try:
        assert asked.wait(30), "the bastion never asked for the code"
        drain(b)
    finally:
        drained.set()
        client.join(60)
    [result] = outcome
    assert result.out == "" and f"bastion: {STOPPING_REFUSAL}" in result.err
    assert auth_kinds(b) == before and not b.store.sessions()
    assert b.core.identity.check_totp("alice", typed[0], "test").result.name == "ACCEPTED"
    stop_after_drain(b)


def test_a_connection_silent_in_login_does_not_hold_the_stop(bastion: Bastion) -> None:
    """A slowloris: accepted before the drain, asked for its password, it never answers.
    The stop ends it with the drain instead of waiting for it (or its login grace)."""
    b = bastion
    sock, reader = asked_for_password(b)
    with sock:
        door = next(d for d in running_server(b).doors if isinstance(d, PgDoor))
        stop_after_drain(b)
        assert not door._handlers  # none left running once the stop returned
        sock.settimeout(5)
        assert read_frame(sock, reader) is None  # closed by the bastion, not left open
