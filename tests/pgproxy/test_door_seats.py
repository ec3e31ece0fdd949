"""The door's caps on open database sessions, per person and in all: a login past either is
refused with one line and an audit event, nothing is opened upstream, and a seat comes back
when a session ends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bastion.access.seats import Seats
from tests.harness import Bastion
from tests.nodes import until
from tests.pgproxy.conftest import PASSWORD, alice_on
from tests.realpg import PgDatabase, psycopg_connect
from tests.realssh import free_port

CAPS = "\n[postgres]\nmax_sessions = 3\nmax_sessions_per_user = 2\n"


@pytest.fixture
def capped(tmp_path: Path, pg: PgDatabase) -> Iterator[Bastion]:
    b = alice_on(tmp_path / "bastion", pg, CAPS)
    b.add_user("bob", password=PASSWORD)
    b.grant("bob", "orders-prod")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def connect(b: Bastion, user: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg_connect(b.via_bastion(user, "orders-prod", PASSWORD), sslmode="disable")


def upstream_sessions(pg: PgDatabase) -> int:
    with psycopg_connect(pg) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name"
                           " LIKE 'bastion:%'").fetchone()  # fmt: skip
    assert row is not None
    return int(str(row[0]))


def until_open(b: Bastion, count: int) -> None:
    """Wait for the door to close the rows of sessions a client closed: a client's close
    returns at once, and its seat comes back once its row is closed."""
    until(lambda: len(b.store.sessions(open_only=True)) == count, f"{count} open sessions")


def test_a_person_past_their_cap_is_refused_and_a_seat_comes_back(
    capped: Bastion, pg: PgDatabase
) -> None:
    first, second = connect(capped, "alice"), connect(capped, "alice")
    with pytest.raises(psycopg.OperationalError, match="alice already has 2 database sessions"):
        connect(capped, "alice")
    assert upstream_sessions(pg) == 2  # nothing was opened upstream for the refused one
    [denied] = capped.events("access.denied")
    assert (denied.actor, denied.subject, denied.severity) == ("alice", "orders-prod", "warning")
    assert "max_sessions_per_user" in json.loads(denied.detail)["reason"]
    with connect(capped, "bob") as bob:  # another person is not held back by alice's cap
        assert bob.execute("SELECT 1").fetchone() == (1,)
    first.close()
    until_open(capped, 1)
    with connect(capped, "alice") as again:
        assert again.execute("SELECT 2").fetchone() == (2,)
    second.close()


def test_the_door_refuses_past_its_total_and_says_so(capped: Bastion) -> None:
    held = [connect(capped, "alice"), connect(capped, "alice"), connect(capped, "bob")]
    try:
        with pytest.raises(psycopg.OperationalError, match=r"already has 3 database sessions open"
                           r" \(postgres\.max_sessions\)"):  # fmt: skip
            connect(capped, "bob")
    finally:
        for conn in held:
            conn.close()
    until_open(capped, 0)
    with connect(capped, "bob") as bob:
        assert bob.execute("SELECT 1").fetchone() == (1,)


def test_a_seat_is_given_back_when_the_session_cannot_open_upstream(
    tmp_path: Path, pg: PgDatabase
) -> None:
    b = alice_on(tmp_path / "bastion", pg, "\n[postgres]\nmax_sessions_per_user = 1\n")
    b.add_pg_target("gone", pg.replace(database="gone", port=free_port()))  # nothing listens
    b.grant("alice", "gone")
    b.start()
    try:
        for _ in range(2):  # the failed session's seat came back: the second is not refused
            gone = b.via_bastion("alice", "gone", PASSWORD)
            with pytest.raises(psycopg.OperationalError) as caught:
                psycopg_connect(gone, sslmode="disable")
            assert "already has" not in str(caught.value)
        with connect(b, "alice") as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        b.stop()


def test_seats_count_per_person_and_in_all() -> None:
    seats = Seats(total=3, per_user=2)
    assert seats.take("alice") is None and seats.take("alice") is None
    assert "alice already has 2" in (seats.take("alice") or "")
    assert seats.take("bob") is None
    assert "postgres.max_sessions)" in (seats.take("carol") or "")
    seats.give_back("alice")
    assert seats.take("carol") is None
    seats.give_back("nobody")  # never taken: nothing changes
    assert seats.taken == 3 and seats.by_user == {"alice": 1, "bob": 1, "carol": 1}
