"""The bastion and the server read SQL text alike: no client encoding or escape rule under
which the server would run code the guard, the masking and the query log read as a string."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD, UNMASKED
from tests.realpg import PgDatabase, psycopg_connect

LIFT = "set_config('default_transaction_read_only', 'off', false)"


def test_a_client_encoding_the_bastion_cannot_read_is_refused_at_start_up(
    bastion: Bastion,
) -> None:
    """In SJIS a multi-byte character may end in a backslash byte and eat the quote after it:
    the server would run what the guard read as a string. Such a session never starts."""
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg_connect(via, client_encoding="SJIS")
    assert "client_encoding 'SJIS' is not allowed" in str(caught.value)
    assert not bastion.events("session.opened")
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, client_encoding="UTF8") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize(
    "statement",
    [
        "SET standard_conforming_strings = off",
        "SET client_encoding = 'GBK'",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
    ],
)
def test_a_read_grant_cannot_change_how_sql_is_read(bastion: Bastion, statement: str) -> None:
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(statement)
        # What the red team sent next: with the escape rule unchanged it is a string and a
        # comment, on both sides.
        conn.execute(f"SELECT '\\' -- ', {LIFT}")
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("on",)


def test_a_session_whose_server_starts_reading_otherwise_is_ended(
    tmp_path: Path, pg: PgDatabase
) -> None:
    """A write grant's statements go upstream unparsed, so the server's own report is the
    check: once it says standard_conforming_strings is off, the session ends."""
    b = Bastion(tmp_path / "b", UNMASKED, postgres=True)
    b.add_user("alice", password=PASSWORD)
    b.add_pg_target("orders-prod", pg)
    b.grant("alice", "orders-prod", mode="write")
    b.start()
    try:
        via = b.via_bastion("alice", "orders-prod", PASSWORD)
        with psycopg_connect(via, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InternalError_) as caught:
                conn.execute("SET standard_conforming_strings = off")
                conn.execute("SELECT 1")
            assert "standard_conforming_strings must stay on" in str(caught.value)
            assert conn.closed or conn.broken
    finally:
        b.stop()


def test_a_database_default_that_reads_otherwise_refuses_the_login(
    bastion: Bastion, pg: PgDatabase
) -> None:
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{pg.database}" SET standard_conforming_strings = off')
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg_connect(via)
    assert "reads SQL otherwise than the bastion" in str(caught.value)
