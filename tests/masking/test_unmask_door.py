"""Consent-gated unmasking in the door: one subject's rows in clear, every other row masked with a
NOTICE saying why, expiry and revocation on the next statement, and the hardened roles."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.harness import Bastion
from tests.masking.door import PASSWORD, plain, unmask
from tests.masking.shop import SECRETS
from tests.masking.wiretap import Tap
from tests.pgproxy.conftest import wait_for_outcomes
from tests.realpg import PgCluster, PgDatabase, asyncpg_connect, psycopg_connect

pytestmark = pytest.mark.both_stores  # the store on SQLite and on PostgreSQL

JANE, JOHN = ("jane.doe@example.com", "123-45-6789"), ("john.roe@example.org", "987-65-4321")
COLUMNS = ["customers.email", "customers.ssn", "orders.note"]


def connect(b: Bastion, notices: list[str]) -> psycopg.Connection[Any]:
    conn = psycopg_connect(b.via_bastion("alice", "shop", PASSWORD), autocommit=True)
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    return conn


def test_the_subjects_rows_in_clear_and_every_other_row_masked(bastion: Bastion) -> None:
    grant = unmask(bastion, COLUMNS)
    notices: list[str] = []
    with connect(bastion, notices) as conn:
        rows = conn.execute("SELECT id, email, ssn FROM customers ORDER BY id").fetchall()
        orders = conn.execute("SELECT customer_id, note FROM orders ORDER BY id").fetchall()
        # The key is not in the result: nothing proves whose row it is.
        keyless = conn.execute("SELECT email FROM customers WHERE id = 4711").fetchall()
        # The table twice: the key may come from the other row.
        crossed = conn.execute("SELECT a.email, b.id FROM customers a, customers b").fetchall()
    assert rows[0] == (4711, *JANE)
    assert rows[1][0] == 4712 and JOHN[0] not in rows[1] and rows[1][2] == "***-**-4321"
    assert orders == [(4711, "gift wrap please"), (4712, "****")]
    assert keyless == [("j*******@example.com",)]
    assert all("@example" in r[0] and r[0][1] == "*" for r in crossed)
    assert f"unmask grant {grant} showed 1 row(s) of customers.id=4711" in notices[0]
    assert "stay masked" in notices[2]
    wait_for_outcomes(bastion, 4)
    logged = {q.sql: json.loads(q.masking or "{}") for q in bastion.store.queries()}
    assert logged["SELECT id, email, ssn FROM customers ORDER BY id"]["unmasked"] == [
        {"grant": grant, "columns": ["email", "ssn"], "rows": 1}]  # fmt: skip
    trail = json.dumps([e.detail for e in bastion.events()])
    assert not any(s in trail for s in SECRETS)


def test_binary_keys_match_too(bastion: Bastion) -> None:
    unmask(bastion, ["customers.email"])

    async def fetch() -> list[Any]:
        conn = await asyncpg_connect(bastion.via_bastion("alice", "shop", PASSWORD))
        try:
            return list(await conn.fetch("SELECT id, email FROM customers ORDER BY id"))
        finally:
            await conn.close()

    rows = asyncio.run(fetch())
    assert tuple(rows[0]) == (4711, JANE[0]) and rows[1]["email"] != JOHN[0]


@pytest.mark.parametrize("ending", ["expiry", "revocation"])
def test_the_next_statement_is_masked_again(bastion: Bastion, ending: str) -> None:
    grant = unmask(bastion, ["customers.email"], hours=1)
    query = "SELECT id, email FROM customers WHERE id = 4711"
    with Tap(bastion.pg_port) as tap:
        via = plain(bastion.via_bastion("alice", "shop", PASSWORD), tap.port)
        with psycopg_connect(via, sslmode="disable", autocommit=True) as conn:
            assert conn.execute(query).fetchall() == [(4711, JANE[0])]
            received = len(tap.received)
            if ending == "expiry":
                bastion.clock.advance(timedelta(hours=1, seconds=1))
            else:
                bastion.core.unmasking.store.revoke_unmask(grant, "bob")
            assert conn.execute(query).fetchall() == [(4711, "j*******@example.com")]
            assert JANE[0].encode() not in tap.received[received:]


def harden(b: Bastion, cluster: PgCluster) -> None:
    admin = cluster.superuser_database()
    done = subprocess.run(
        [sys.executable, "-m", "bastion", "--config", str(b.home / "bastion.toml"),
         "target", "harden", "shop", "--admin-user", admin.user, "--password-stdin"],
        input=admin.password + "\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def backend_role(cluster: PgCluster) -> str:
    [(role,)] = cluster.sql("SELECT usename FROM pg_stat_activity"
                            " WHERE application_name LIKE 'bastion:alice:%'")  # fmt: skip
    return str(role)


def test_a_hardened_target_is_read_as_the_masked_role(
    bastion: Bastion, pg_cluster: PgCluster, shop: PgDatabase
) -> None:
    harden(bastion, pg_cluster)
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD), autocommit=True) as conn:
        assert backend_role(pg_cluster) == "bastion_shop_masked"
        assert conn.execute("SELECT id, name FROM customers ORDER BY id").fetchall() == [
            (4711, "Jane Doe"), (4712, "John Roe")]  # fmt: skip
        # PostgreSQL itself refuses the column; its message comes back scrubbed.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="name the columns"):
            conn.execute("SELECT * FROM customers")
    unmask(bastion, ["customers.email"])
    with psycopg_connect(bastion.via_bastion("alice", "shop", PASSWORD), autocommit=True) as conn:
        assert backend_role(pg_cluster) == "bastion_shop_unmasked"
        rows = conn.execute("SELECT id, email FROM customers ORDER BY id").fetchall()
    assert rows[0] == (4711, JANE[0]) and rows[1][1] == "j*******@example.org"
