"""Database sessions end when their access does: grant expired or revoked, user disabled, with
FATAL 57P01, the running query cancelled upstream, and the session row saying why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, alice_on
from tests.pgproxy.test_door_admin import backend_queries, finish, psql_running
from tests.realpg import PgDatabase, psycopg_connect
from tests.ssh.test_door_admin import cli, wait_until

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL

SLEEP = "SELECT pg_sleep(60)"


@pytest.fixture
def granted(tmp_path: Path, pg: PgDatabase) -> tuple[Bastion, int]:
    """alice with a one-hour read grant (and no other) on orders-prod."""
    b = alice_on(tmp_path / "bastion", pg)
    [first] = b.store.grants(user="alice")
    b.core.access.revoke(first.id, "test")
    return b, b.grant("alice", "orders-prod", hours=1)


def ended(b: Bastion, pg: PgDatabase, end_access: object, expected: str,
          cause: str | None = None) -> str:  # fmt: skip
    """Run pg_sleep(60) through the door, end the access, return what psql printed.

    The audit chain must verify and hold, in order: the grant, the session opening, the
    `cause` event (if any), and the session closing with the `expected` state.
    """
    proc = psql_running(b, SLEEP + ";\n")
    try:
        wait_until(lambda: backend_queries(pg, SLEEP) == 1)
        assert callable(end_access)
        end_access()
        code, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code != 0
    wait_until(lambda: backend_queries(pg, SLEEP) == 0)  # cancelled upstream, not left running
    wait_until(lambda: not b.store.sessions(open_only=True))
    [session] = b.store.sessions()
    assert session.state == expected, session.end_reason
    assert b.store.verify_chain().ok
    steps = [e for e in b.events() if e.kind in ("grant.created", "session.opened", cause,
                                                 "session.closed")]  # fmt: skip
    order = ["grant.created", "session.opened", *([cause] if cause else []), "session.closed"]
    assert [e.kind for e in steps][-len(order) :] == order
    assert json.loads(steps[-1].detail)["state"] == expected
    return err


def test_a_grant_expiring_mid_query_ends_the_session(granted: tuple[Bastion, int],
                                                     pg: PgDatabase) -> None:  # fmt: skip
    b, grant_id = granted
    b.start()
    try:
        err = ended(b, pg, lambda: b.clock.advance(timedelta(hours=1, seconds=1)),
                    "grant_expired")  # fmt: skip
    finally:
        b.stop()
    assert "FATAL" in err and f"access to orders-prod ended: grant {grant_id} expired" in err


def test_revoking_the_grant_ends_the_session(granted: tuple[Bastion, int], pg: PgDatabase) -> None:
    b, grant_id = granted
    b.start()
    try:
        err = ended(b, pg, lambda: b.core.access.revoke(grant_id, "bob"), "grant_revoked",
                    "grant.revoked")  # fmt: skip
    finally:
        b.stop()
    assert f"grant {grant_id} was revoked by bob" in err


def test_disabling_the_user_ends_the_session(granted: tuple[Bastion, int], pg: PgDatabase) -> None:
    b, _ = granted
    b.start()
    try:

        def disable() -> None:
            done = cli(b, "user", "disable", "alice", "--reason", "left the company")
            assert done.returncode == 0, done.stderr

        err = ended(b, pg, disable, "user_disabled", "user.disabled")
    finally:
        b.stop()
    assert "alice was disabled" in err


def test_a_new_grant_keeps_the_session_going(granted: tuple[Bastion, int], pg: PgDatabase) -> None:
    b, _ = granted
    b.start()
    try:
        with psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD)) as conn:
            b.clock.advance(timedelta(minutes=30))
            b.grant("alice", "orders-prod", hours=2)  # extended before the first one ends
            b.clock.advance(timedelta(minutes=31))
            wait_until(lambda: bool(b.events("grant.created")))
            for _ in range(5):  # a few looks of the watcher go by
                assert conn.execute("SELECT 1").fetchone() == (1,)
                conn.execute("SELECT pg_sleep(0.3)")
        wait_until(lambda: not b.store.sessions(open_only=True))
        assert [s.state for s in b.store.sessions()] == ["closed"]  # by the client, not us
    finally:
        b.stop()


def test_an_idle_session_ends_after_the_idle_timeout(granted: tuple[Bastion, int]) -> None:
    b, _ = granted
    b.start()
    try:
        conn = psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD), autocommit=True)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        b.clock.advance(timedelta(minutes=14))
        assert conn.execute("SELECT 2").fetchone() == (2,)  # input: the idle time starts again
        b.clock.advance(timedelta(minutes=15))
        wait_until(lambda: not b.store.sessions(open_only=True))
        with pytest.raises(psycopg.OperationalError, match="no input for 15m on orders-prod"):
            conn.execute("SELECT 3")
        conn.close()
        [session] = b.store.sessions()
        assert session.state == "idle_timeout"
    finally:
        b.stop()


HOURS = '\n[targets.orders-prod]\nallowed_hours = "Mon-Fri 08:00-20:00"\ntimezone = "UTC"\n'


def test_allowed_hours_refuse_a_login_outside_them_and_end_a_session_at_closing(
    tmp_path: Path, pg: PgDatabase
) -> None:
    b = alice_on(tmp_path / "bastion", pg, HOURS)
    b.clock.set(datetime(2026, 11, 22, 12, 0, tzinfo=UTC))  # a Sunday
    b.grant("alice", "orders-prod", hours=2)
    b.start()
    try:
        with pytest.raises(psycopg.OperationalError, match="it is Sun 12:00 there now"):
            psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD))
        [denied] = b.events("access.denied")
        assert "only Mon-Fri 08:00-20:00 (UTC)" in denied.detail

        b.clock.set(datetime(2026, 11, 23, 19, 58, tzinfo=UTC))  # Monday, just before closing
        b.grant("alice", "orders-prod", hours=2)
        conn = psycopg_connect(b.via_bastion("alice", "orders-prod", PASSWORD), autocommit=True)
        assert conn.execute("SELECT 1").fetchone() == (1,)
        b.clock.advance(timedelta(minutes=2))
        wait_until(lambda: not b.store.sessions(open_only=True))
        with pytest.raises(psycopg.OperationalError, match="it is Mon 20:00 there now"):
            conn.execute("SELECT 2")
        conn.close()
        assert [s.state for s in b.store.sessions()] == ["outside_hours"]
    finally:
        b.stop()
