"""Guessing a masked value through a comparison, tried through the real door against the shop
database: the INTERSECT oracle and its siblings are refused with 42501 naming the column and
how to ask for unmasking, a right guess answers exactly as a wrong one, and the query log
records each refusal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import psycopg
import pytest

from tests.harness import Bastion
from tests.masking.door import PASSWORD, POLICY, plain, shop_bastion
from tests.masking.shop import SECRETS
from tests.masking.wiretap import Tap
from tests.pgproxy.conftest import wait_for_outcomes
from tests.realpg import PgDatabase, asyncpg_connect, psycopg_connect, run_psql

# The oracle from the review: one row back when the guess is right.
ORACLE = "SELECT email FROM customers WHERE id = 4711 INTERSECT SELECT '{guess}'"
RIGHT, WRONG = "jane.doe@example.com", "jane.roe@example.com"
LOGGED = "SELECT email FROM customers WHERE id = $1 INTERSECT SELECT $2"

# Siblings: each would tell a right guess of a masked value from a wrong one.
SIBLINGS = (
    "SELECT ssn FROM customers WHERE id = 4711 EXCEPT SELECT '123-45-6789'",
    "SELECT ssn FROM customers WHERE id = 4711 UNION SELECT '123-45-6789'",
    "SELECT count(*) FROM (SELECT DISTINCT email FROM customers) s",
    "SELECT c.id FROM customers c NATURAL JOIN (SELECT 'jane.doe@example.com' AS email) g",
    "SELECT email, count(*) FROM customers GROUP BY ROLLUP (1)",
    "SELECT DISTINCT ON (1) ssn, id FROM customers",
    "WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers UNION ALL SELECT n + 1, e"
    " FROM r WHERE n < 2) CYCLE e SET seen USING path SELECT n FROM r",
)


def test_the_intersect_oracle_is_refused_and_logged(bastion: Bastion) -> None:
    via = bastion.via_bastion("alice", "shop", PASSWORD)
    answers = []
    with psycopg_connect(via, autocommit=True) as conn:
        for guess in (RIGHT, WRONG):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
                conn.execute(ORACLE.format(guess=guess))
            answers.append(str(caught.value))
        # A UNION ALL compares nothing: it runs, and the value stays masked.
        rows = conn.execute(
            "SELECT email FROM customers WHERE id = 4711 UNION ALL SELECT 'x'"
        ).fetchall()
    assert rows[0] == ("j*******@example.com",) and len(rows) == 2
    right, wrong = answers
    assert right == wrong  # a right guess answers exactly as a wrong one
    assert "public.customers.email is sensitive" in right and "INTERSECT" in right
    assert "ask for unmasking" in right
    wait_for_outcomes(bastion, 3)
    refused = [q for q in bastion.store.queries() if q.refused]
    assert [q.sql for q in refused] == [LOGGED] * 2  # the guesses are literals: redacted
    assert all(q.sqlstate == "42501" and "INTERSECT" in (q.refused or "") for q in refused)


def test_psql_siblings_are_refused_and_leak_nothing(bastion: Bastion) -> None:
    script = "".join(f"{sql};\n" for sql in (ORACLE.format(guess=RIGHT), *SIBLINGS))
    with Tap(bastion.pg_port) as tap:
        via = plain(bastion.via_bastion("alice", "shop", PASSWORD), tap.port)
        done = run_psql(via, "-v", "ON_ERROR_STOP=0", "-At", "-f", "-", input=script,
                        env={"PGSSLMODE": "disable"}, timeout=120)  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if "ERROR:" in line]
    assert len(errors) == 1 + len(SIBLINGS), done.stdout + done.stderr
    assert all("is sensitive" in line for line in errors)
    assert done.stdout == ""  # not one row of any of them
    assert tap.leaked(SECRETS) == []
    wait_for_outcomes(bastion, 1 + len(SIBLINGS))
    refused = [q for q in bastion.store.queries() if q.refused]
    assert len(refused) == 1 + len(SIBLINGS)
    assert all(q.sqlstate == "42501" and "is sensitive" in (q.refused or "") for q in refused)
    assert LOGGED in {q.sql.strip().rstrip(";") for q in refused}


def test_asyncpg_cannot_tell_the_last_digits_of_an_ssn(bastion: Bastion) -> None:
    """The attack from the review: the partial mask shows the last 4 digits, and an
    EXCEPT per candidate was to find the rest. Every candidate is refused alike."""

    async def attempt() -> tuple[str, list[str]]:
        conn = await asyncpg_connect(bastion.via_bastion("alice", "shop", PASSWORD))
        try:
            shown = await conn.fetchval("SELECT ssn FROM customers WHERE id = 4711")
            answers = []
            for candidate in ("123-45-6789", "124-45-6789", "123-46-6789"):
                try:
                    rows = await conn.fetch("SELECT ssn FROM customers WHERE id = 4711"
                                            " EXCEPT ALL SELECT $1::bpchar", candidate)  # fmt: skip
                    answers.append(f"{len(rows)} row(s)")  # 0 for the right one
                except asyncpg.InsufficientPrivilegeError as exc:
                    answers.append(str(exc))
            return shown, answers
        finally:
            await conn.close()

    shown, answers = asyncio.run(attempt())
    assert shown == "***-**-6789"
    assert len(set(answers)) == 1 and "public.customers.ssn is sensitive" in answers[0]


def test_a_guess_beside_a_hashed_column_is_not_hashed_alike(
    tmp_path: Path, shop: PgDatabase
) -> None:
    """With email masked as a keyed hash (joins still work), a UNION ALL of the real value and
    guesses would hash each guess alike: the right one would match. That column is masked
    in full instead."""
    policy = POLICY + 'styles = { "public.customers.email" = "hash" }\n'
    b = shop_bastion(tmp_path / "bastion", shop, policy=policy).start()
    try:
        with psycopg_connect(b.via_bastion("alice", "shop", PASSWORD), autocommit=True) as conn:
            [(hashed,)] = conn.execute("SELECT email FROM customers WHERE id = 4711").fetchall()
            rows = conn.execute(
                f"SELECT email FROM customers WHERE id = 4711 UNION ALL"
                f" SELECT '{RIGHT}' UNION ALL SELECT '{WRONG}'"
            ).fetchall()
    finally:
        b.stop()
    assert "*" not in hashed and hashed != RIGHT  # the style is a hash
    assert all(set(value) == {"*"} for (value,) in rows), rows
