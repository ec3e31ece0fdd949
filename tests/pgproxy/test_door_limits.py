"""The PostgreSQL door's limits: failures and logins in progress per address, the login grace
time, and the largest message it relays."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bastion import pgwire as pw
from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, alice_on
from tests.pgproxy.test_door_admin import logged_in, replies
from tests.realpg import PgDatabase, psycopg_connect

LIMITS = """
[postgres]
login_grace = "2s"
max_unauthenticated_per_source = 2
max_failures_per_source = 2
block_for = "1h"
max_message = 1048576
"""


@pytest.fixture
def limited(tmp_path: Path, pg: PgDatabase) -> Iterator[Bastion]:
    b = alice_on(tmp_path / "bastion", pg, LIMITS).start()
    try:
        yield b
    finally:
        b.stop()


def test_an_address_that_keeps_failing_is_turned_away(limited: Bastion) -> None:
    wrong = limited.via_bastion("alice", "orders-prod", "wrong password")
    for _ in range(2):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg_connect(wrong, sslmode="disable")  # one attempt each (no retry)
    right = limited.via_bastion("alice", "orders-prod", PASSWORD)
    with pytest.raises(psycopg.OperationalError, match=r"too many failed logins from 127\.0\.0\.1"):
        psycopg_connect(right, sslmode="disable")
    [blocked] = limited.events("auth.source_blocked")
    assert (blocked.actor, blocked.severity) == ("postgres:127.0.0.1", "high")
    limited.clock.advance(61)  # refusals are summed up a minute at a time
    deadline = time.monotonic() + 10
    while not limited.events("auth.preauth_refused") and time.monotonic() < deadline:
        time.sleep(0.05)
    [summary] = limited.events("auth.preauth_refused")
    assert json.loads(summary.detail)["count"] == 1


def test_logins_in_progress_per_address_are_capped(limited: Bastion) -> None:
    silent = [socket.create_connection(("127.0.0.1", limited.pg_port)) for _ in range(2)]
    try:
        via = limited.via_bastion("alice", "orders-prod", PASSWORD)
        with pytest.raises(psycopg.OperationalError, match="too many unauthenticated"):
            psycopg_connect(via)  # sslmode=prefer: the refusal comes in plain text
    finally:
        for sock in silent:
            sock.close()
    # the door counts them as gone once it notices; the grace time ends them in any case
    via = limited.via_bastion("alice", "orders-prod", PASSWORD)
    for _ in range(100):
        try:
            with psycopg_connect(via) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            return
        except psycopg.OperationalError as exc:
            assert "too many unauthenticated" in str(exc)
            via = limited.via_bastion("alice", "orders-prod", PASSWORD)
    raise AssertionError("the door never let a login through again")


def test_a_silent_connection_is_closed_after_the_grace_time(limited: Bastion) -> None:
    with socket.create_connection(("127.0.0.1", limited.pg_port), timeout=30) as sock:
        assert sock.recv(1) == b""  # closed by the door, long before the 30 s timeout


def test_a_message_over_the_limit_ends_the_session(limited: Bastion) -> None:
    sock, reader = logged_in(limited)
    with sock:
        sock.sendall(pw.query("SELECT '" + "x" * (1024 * 1024) + "'"))
        frames = replies(sock, reader)
    error = pw.decode_backend(frames[-1])
    assert isinstance(error, pw.ErrorResponse)
    assert error.sqlstate == "08P01" and "exceeds the limit of 1048576" in error.message
