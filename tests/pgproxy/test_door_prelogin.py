"""The PostgreSQL door against hostile clients before login, with raw sockets and psycopg:
message sizes, the cap on logins in progress, password guessing, cancel floods, and
answers that say nothing about which users and targets exist."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bastion import pgwire as pw
from bastion.identity import passwords
from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, alice_on
from tests.realpg import PgDatabase, psycopg_connect

LIMITS = """
[postgres]
login_grace = "20s"
max_unauthenticated_per_source = 3
max_failures_per_source = 2
max_logins_in_progress = 4
block_for = "1h"
[lockout]
max_failures = 3
"""


@pytest.fixture
def door(tmp_path: Path, pg: PgDatabase) -> Iterator[Bastion]:
    b = alice_on(tmp_path / "bastion", pg, LIMITS)
    b.add_user("bob", password=PASSWORD)
    b.add_user("keyonly")  # a key, no password
    b.start()
    try:
        yield b
    finally:
        b.stop()


def connect(b: Bastion, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", b.pg_port), timeout=15,
                                    source_address=(source, 0))  # fmt: skip


def read_frame(sock: socket.socket, reader: pw.FrameReader) -> pw.Frame | None:
    """The next message from the door, or None once it has closed."""
    while (frame := reader.next_frame()) is None:
        data = sock.recv(65536)
        if not data:
            return None
        reader.feed(data)
    return frame


def asked_for_password(b: Bastion, source: str, database: str = "orders-prod",
                       user: str = "alice") -> tuple[socket.socket, pw.FrameReader]:  # fmt: skip
    """A raw connection that sent its start-up packet and was asked for a password."""
    sock = connect(b, source)
    sock.sendall(pw.startup_message({"user": user, "database": database}))
    reader = pw.FrameReader()
    frame = read_frame(sock, reader)
    assert frame is not None and frame.type == b"R", frame
    return sock, reader


def error_of(sock: socket.socket, reader: pw.FrameReader) -> pw.ErrorResponse:
    """The error the door ends this connection with."""
    frame = read_frame(sock, reader)
    assert frame is not None, "the door closed without a word"
    error = pw.decode_backend(frame)
    assert isinstance(error, pw.ErrorResponse), frame
    return error


def refusal(b: Bastion, user: str, database: str, secret: str, source: str) -> pw.ErrorResponse:
    sock, reader = asked_for_password(b, source, database, user)
    with sock:
        sock.sendall(pw.password_message(secret.encode()))
        return error_of(sock, reader)


def wait_for_events(b: Bastion, kind: str) -> list[Any]:
    deadline = time.monotonic() + 10
    while not (found := b.events(kind)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


# -- sizes ----------------------------------------------------------------------------------


def test_an_oversized_password_message_is_refused_at_its_header(door: Bastion) -> None:
    sock, reader = asked_for_password(door, "127.0.0.1")
    with sock:
        sock.sendall(b"p" + struct.pack("!i", 4 * 1024 * 1024) + b"x" * 1000)  # never the rest
        error = error_of(sock, reader)
    assert error.sqlstate == "08P01" and "exceeds the limit of 8192" in error.message


def test_a_real_login_still_passes_after_the_small_prelogin_limit(door: Bastion) -> None:
    with psycopg_connect(door.via_bastion("alice", "orders-prod", PASSWORD)) as conn:
        big = conn.execute("SELECT repeat('x', 100000)").fetchone()
    assert big is not None and len(big[0]) == 100000  # the relay's own limit applies


# -- who and what exists -----------------------------------------------------------------------


def test_unknown_targets_users_and_key_only_users_answer_as_a_wrong_password(
    door: Bastion,
) -> None:
    right = PASSWORD + door.code("alice")
    answers = {
        "wrong password": refusal(
            door, "alice", "orders-prod", "wrong password1" + "123456", "127.0.0.2"
        ),
        "unknown target": refusal(door, "alice", "no-such-db", right, "127.0.0.3"),
        "unknown user": refusal(door, "mallory", "orders-prod", right, "127.0.0.4"),
        "key-only user": refusal(door, "keyonly", "orders-prod", right, "127.0.0.5"),
    }
    shapes = {
        why: (e.sqlstate, e.message.replace("no-such-db", "T").replace("orders-prod", "T")
              .replace("mallory", "U").replace("keyonly", "U").replace("alice", "U"))
        for why, e in answers.items()
    }  # fmt: skip
    assert len(set(shapes.values())) == 1, shapes
    assert answers["unknown target"].sqlstate == "28P01"


def test_unknown_and_key_only_users_cost_an_argon2_verify(door: Bastion) -> None:
    before = passwords._stand_in.cache_info()
    refusal(door, "mallory", "orders-prod", "some password1" + "123456", "127.0.0.2")
    refusal(door, "keyonly", "orders-prod", "some password1" + "123456", "127.0.0.3")
    after = passwords._stand_in.cache_info()
    assert after.hits + after.misses - before.hits - before.misses == 2


# -- guessing ------------------------------------------------------------------------------


def test_wrong_passwords_count_towards_the_users_lockout(door: Bastion) -> None:
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):  # below each address's own limit
        sock, reader = asked_for_password(door, source)
        with sock:
            sock.sendall(pw.password_message(b"wrong password1" + door.code("alice").encode()))
            assert error_of(sock, reader).sqlstate == "28P01"
    assert door.store.user("alice").locked_until is not None
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg_connect(door.via_bastion("alice", "orders-prod", PASSWORD), sslmode="disable")
    [locked] = door.events("user.locked")
    assert locked.subject == "alice"
    assert len(door.events("auth.password_failed")) == 4


def test_a_blocked_address_can_not_go_on_guessing_on_open_connections(door: Bastion) -> None:
    waiting, reader = asked_for_password(door, "127.0.0.5")  # a guess held back
    with waiting:
        for _ in range(2):
            sock, r = asked_for_password(door, "127.0.0.5")
            with sock:
                sock.sendall(pw.password_message(b"wrong password1" + b"123456"))
                assert error_of(sock, r).sqlstate == "28P01"
        error = error_of(waiting, reader)  # ended when its address was blocked
    assert error.sqlstate == "53300" and "too many failed logins" in error.message


# -- logins in progress --------------------------------------------------------------------


def test_logins_in_progress_are_capped_in_all_and_the_busiest_address_gives_way(
    door: Bastion,
) -> None:
    """Four seats: three from one address, one from another; a newcomer from a quieter
    address ends the busiest one's oldest login, one from the busiest is refused."""
    held = [asked_for_password(door, s) for s in ("127.0.0.2",) * 3 + ("127.0.0.3",)]
    try:
        newcomer = asked_for_password(door, "127.0.0.3")
        oldest = error_of(*held[0])
        assert oldest.sqlstate == "53300" and "too many connections" in oldest.message
        with connect(door, "127.0.0.2") as busy:  # .2 has two now, as many as .3
            busy.sendall(pw.startup_message({"user": "alice", "database": "orders-prod"}))
            refused = error_of(busy, pw.FrameReader())
        assert refused.sqlstate == "53300" and "too many connections" in refused.message
        with psycopg_connect(door.via_bastion("alice", "orders-prod", PASSWORD)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)  # a real user gets through
        newcomer[0].close()
    finally:
        for sock, _ in held:
            sock.close()


# -- floods in the audit trail ---------------------------------------------------------------


def test_a_cancel_flood_is_one_audit_summary(door: Bastion) -> None:
    for pid in range(500):
        with connect(door) as sock:
            sock.sendall(pw.cancel_request(pid + 1, b"\0\0\0\1"))
            assert sock.recv(1) == b""  # handled and closed, without a word
    assert not door.events("query.cancel_refused")
    door.clock.advance(61)
    [summary] = wait_for_events(door, "query.cancel_request")
    detail = json.loads(summary.detail)
    assert detail["count"] == 500 and detail["why"] == {"no such backend key": 500}


def test_connections_from_a_blocked_address_are_one_audit_summary(door: Bastion) -> None:
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg_connect(door.via_bastion("alice", "orders-prod", "wrong password1"),
                            sslmode="disable")  # fmt: skip
    refused = 0
    for _ in range(150):
        with connect(door) as sock:
            sock.sendall(pw.startup_message({"user": "alice", "database": "orders-prod"}))
            with contextlib.suppress(ConnectionResetError):  # closed at once, packet unread
                refused += read_frame(sock, pw.FrameReader()) is not None
    assert 0 < refused <= 100  # a polite answer while the budget lasts, then just a close
    door.clock.advance(61)
    [summary] = wait_for_events(door, "auth.preauth_refused")
    assert json.loads(summary.detail)["count"] == 150
