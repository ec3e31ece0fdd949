"""The query log shows what ran: code in a statement (DO blocks, function bodies, a query given
as text) is logged with only its own literals redacted, by the audit writer's process (write
grants) and by the door (read grants) alike; code that cannot be redacted is logged whole and
flagged, and `bastion queries list` shows the flag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bastion.audit.qlogbind import EVERYTHING
from tests.pgproxy.conftest import PASSWORD, alice_on, wait_for_outcomes
from tests.realpg import PgDatabase, psycopg_connect, run_psql

SECRET = "hunter2-correct-horse"
DROP = "DO 'BEGIN EXECUTE ''DROP TABLE orders CASCADE''; END'"
PURGE = (
    "CREATE FUNCTION purge() RETURNS void LANGUAGE sql"
    f" AS 'DELETE FROM customers WHERE name <> ''{SECRET}'''"
)
BUILT = "DO $$BEGIN EXECUTE 'SELECT ' || '1 AS " + SECRET.replace("-", "_") + "'; END$$"


@pytest.mark.parametrize("durability", ["strict", "batched"])
def test_a_write_grant_s_code_is_logged_with_its_literals_redacted(
    tmp_path: Path, pg: PgDatabase, durability: str
) -> None:
    b = alice_on(tmp_path / "bastion", pg, f'\n[audit]\ndurability = "{durability}"\n')
    b.grant("alice", "orders-prod", mode="write")
    b.start()
    try:
        via = b.via_bastion("alice", "orders-prod", PASSWORD)
        done = run_psql(via, "-c", PURGE, "-c", DROP, "-c", BUILT)
        assert done.returncode == 0, done.stderr
        wait_for_outcomes(b, 3)
        rows = b.store.queries()
        findings = b.store.commit_findings(EVERYTHING, EVERYTHING)
    finally:
        b.stop()
    with psycopg.connect(pg.dsn) as conn:  # it really ran
        assert conn.execute("SELECT to_regclass('orders')").fetchone() == (None,)
    create = next(q for q in rows if q.kind == "CREATE FUNCTION")
    assert create.sql == (
        "CREATE FUNCTION purge() RETURNS void LANGUAGE sql"
        " AS $$DELETE FROM customers WHERE name <> $1$$"
    )
    assert create.kept_whole is None
    dropped = next(q for q in rows if "DROP TABLE" in q.sql)
    assert dropped.sql == "DO $$BEGIN EXECUTE 'DROP TABLE orders CASCADE'; END$$"
    assert dropped.kept_whole is None
    built = next(q for q in rows if q.kept_whole is not None)
    assert built.sql == BUILT and "built at run time" in (built.kept_whole or "")
    assert findings == ([], None)  # each row, its kept text too, bound by its commit
    assert dropped.kind == built.kind == "DO"
    for q in rows:
        if q.kept_whole is None:
            assert SECRET not in q.sql


def test_a_read_grant_logs_refused_code_as_it_is_and_the_cli_shows_the_flag(
    tmp_path: Path, pg: PgDatabase
) -> None:
    b = alice_on(tmp_path / "bastion", pg)
    b.start()
    try:
        via = b.via_bastion("alice", "orders-prod", PASSWORD)
        with psycopg_connect(via, autocommit=True) as conn:
            for statement in (DROP, BUILT):
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    conn.execute(statement)
        wait_for_outcomes(b, 2)
        rows = b.store.queries()
        listed, table = _cli(b.home, "--json"), _cli(b.home)
    finally:
        b.stop()
    dropped = next(q for q in rows if "DROP TABLE" in q.sql and q.kept_whole is None)
    assert dropped.sql == "DO $$BEGIN EXECUTE 'DROP TABLE orders CASCADE'; END$$"
    assert dropped.refused
    flagged = [row for row in json.loads(listed) if row["kept_whole"]]
    assert [row["sql"] for row in flagged] == [BUILT]
    assert "KEPT_WHOLE" in table.splitlines()[0] and "built at run time" in table


def _cli(home: Path, *flags: str) -> str:
    """`bastion queries list`, run as an admin would."""
    argv = [sys.executable, "-m", "bastion", "--config", str(home / "bastion.toml")]
    return subprocess.run([*argv, "queries", "list", *flags], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
