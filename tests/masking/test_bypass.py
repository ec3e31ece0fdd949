"""The bypass catalogue of MASKING-NOTES.md §3, tried through the door with psql (simple
protocol, text), psycopg (extended protocol) and asyncpg (binary, cached descriptions).

Each attempt is refused or answered masked; either way no value of the shop's sensitive
columns appears in any byte the bastion sends (a wiretap between client and bastion keeps
them all) nor in anything a driver decoded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.harness import Bastion
from tests.masking.door import PASSWORD, plain
from tests.masking.shop import SECRETS
from tests.masking.wiretap import Tap
from tests.realpg import asyncpg_connect, psycopg_connect, run_psql

REFUSED, ROWS, EITHER = "refused", "rows", "either"

# (category from the notes, statement, what must happen)
CASES: tuple[tuple[str, str, str], ...] = (
    ("1 expressions", "SELECT email || '' FROM customers", REFUSED),
    ("1 expressions", "SELECT lower(email) FROM customers", REFUSED),
    ("1 expressions", "SELECT substring(ssn, 1, 3) FROM customers", REFUSED),
    ("1 expressions", 'SELECT email COLLATE "C" FROM customers', REFUSED),
    ("1 expressions", "SELECT xmlelement(name x, email) FROM customers", REFUSED),
    ("2 casts", "SELECT ssn::int FROM customers", REFUSED),
    ("2 casts", "SELECT ssn::text FROM customers", REFUSED),
    ("2 casts", "SELECT CAST(phone AS varchar(5)) FROM customers", REFUSED),
    ("3 encodings", "SELECT encode(convert_to(ssn, 'UTF8'), 'hex') FROM customers", REFUSED),
    ("3 encodings", "SELECT reverse(email) FROM customers", REFUSED),
    ("3 encodings", "SELECT translate(ssn, '0123456789', 'abcdefghij') FROM customers", REFUSED),
    ("4 whole row", "SELECT c FROM customers c", REFUSED),
    ("4 whole row", "SELECT row_to_json(c) FROM customers c", REFUSED),
    ("4 whole row", "SELECT to_jsonb(c) FROM customers c", REFUSED),
    ("4 whole row", "SELECT c::text FROM customers c", REFUSED),
    ("4 whole row", "SELECT ROW(c.*) FROM customers c", REFUSED),
    ("5 aggregates", "SELECT array_agg(ssn) FROM customers", REFUSED),
    ("5 aggregates", "SELECT string_agg(email, ',') FROM customers", REFUSED),
    ("5 aggregates", "SELECT min(ssn) FROM customers", REFUSED),
    ("6 subqueries", "SELECT x FROM (SELECT ssn AS x FROM customers) s", ROWS),
    ("6 subqueries", "WITH s AS (SELECT email FROM customers) SELECT * FROM s", ROWS),
    ("6 subqueries", "SELECT name FROM customers UNION ALL SELECT email FROM customers", ROWS),
    ("6 subqueries", "SELECT name FROM customers UNION SELECT email FROM customers", REFUSED),
    ("6 subqueries", "SELECT (SELECT email FROM customers LIMIT 1)", REFUSED),
    ("6 subqueries", "SELECT l.* FROM customers c, LATERAL (SELECT c.ssn) l", ROWS),
    ("6 subqueries", "VALUES ((SELECT ssn FROM customers LIMIT 1))", REFUSED),
    ("7 views", "SELECT * FROM customer_contacts", ROWS),
    ("7 views", "SELECT email FROM customer_contacts WHERE email LIKE 'j%'", REFUSED),
    ("8 functions", "SELECT top_customer()", REFUSED),
    ("8 functions", "SELECT * FROM top_customer()", REFUSED),
    # COPY ... TO STDOUT is answered masked (test_copy_door.py); the rest stays refused.
    ("9 copy", "COPY customers FROM STDIN", REFUSED),
    ("9 copy", "COPY (SELECT ssn FROM customers) TO PROGRAM 'cat'", REFUSED),
    ("11 cursors", "DECLARE c CURSOR WITH HOLD FOR SELECT ssn FROM customers", REFUSED),
    ("10 prepared", "PREPARE p AS SELECT ssn FROM customers", REFUSED),
    ("12 dynamic", "DO $$ BEGIN RAISE NOTICE '%', (SELECT ssn FROM customers LIMIT 1); END $$",
     REFUSED),
    ("12 dynamic", "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT ssn FROM"
     " customers LIMIT 1 $$", REFUSED),
    ("13 files", "SELECT pg_read_file('/etc/hostname')", REFUSED),
    ("13 files", "SELECT lo_import('/etc/hostname')", REFUSED),
    ("14 statistics", "SELECT histogram_bounds FROM pg_stats WHERE attname = 'ssn'", REFUSED),
    ("15 other sessions", "SELECT query FROM pg_stat_activity", REFUSED),
    ("14 statistics", "SELECT stavalues1 FROM pg_statistic", REFUSED),
    ("13 files", "SELECT data FROM pg_largeobject", REFUSED),
    ("- secrets", "SELECT umoptions FROM pg_user_mappings", REFUSED),
    ("- catalog", "SELECT relname FROM pg_class WHERE relname = 'customers'", ROWS),
    ("17 error oracles", "SELECT 1 / (CASE WHEN ssn LIKE '1%' THEN 0 ELSE 1 END) FROM customers",
     REFUSED),
    ("17 error oracles", "SELECT pg_sleep(CASE WHEN ssn LIKE '1%' THEN 1 ELSE 0 END)"
     " FROM customers", REFUSED),
    ("18 predicates", "SELECT id FROM customers WHERE ssn LIKE '1%'", REFUSED),
    ("18 predicates", "SELECT id FROM customers WHERE email BETWEEN 'a' AND 'k'", REFUSED),
    ("18 predicates", "SELECT id FROM customers WHERE id IN (SELECT id FROM customers"
     " WHERE ssn = '123-45-6789')", REFUSED),
    ("18 predicates", "SELECT c.id FROM customers c JOIN payments p ON p.card_number = c.ssn",
     REFUSED),
    ("19 ordering", "SELECT id FROM customers ORDER BY ssn", REFUSED),
    ("19 ordering", "SELECT count(*) FROM customers GROUP BY email", REFUSED),
    ("19 ordering", "SELECT DISTINCT ON (email) id FROM customers", REFUSED),
    ("19 ordering", "SELECT id, rank() OVER (ORDER BY ssn) FROM customers", REFUSED),
    ("19 ordering", "SELECT DISTINCT email FROM customers", REFUSED),
    ("19 ordering", "SELECT email, count(*) FROM customers GROUP BY ROLLUP (1)", REFUSED),
    ("18 predicates", "SELECT email FROM customers WHERE id = 4711 INTERSECT"
     " SELECT 'jane.doe@example.com'", REFUSED),
    ("18 predicates", "SELECT c.id FROM customers c NATURAL JOIN"
     " (SELECT 'jane.doe@example.com' AS email) g", REFUSED),
    ("20 returning", "UPDATE customers SET name = name RETURNING ssn", REFUSED),
    ("21 laundering", "INSERT INTO orders SELECT 3, id, '2026-03-01', 1, ssn FROM customers",
     REFUSED),
    ("21 laundering", "CREATE TABLE cheat AS SELECT ssn FROM customers", REFUSED),
    ("21 laundering", "SELECT ssn INTO cheat FROM customers", REFUSED),
    ("22 temp objects", "CREATE TEMP VIEW orders AS SELECT id, ssn AS note FROM customers",
     REFUSED),
    ("23 search_path", "SET search_path = pg_temp, public", REFUSED),
    ("23 search_path", "SELECT set_config('search_path', 'pg_temp', false)", REFUSED),
    ("24 roles", "SET ROLE postgres", REFUSED),
    ("24 roles", "SET SESSION AUTHORIZATION postgres", REFUSED),
    ("25 notify", "SELECT pg_notify('c', ssn) FROM customers", REFUSED),
    ("25 notify", "LISTEN c", REFUSED),
    ("27 parser confusion", "SELECT 1 /* ; */; SELECT ssn FROM customers -- '", EITHER),
    ("27 parser confusion", "SELECT $q$x$q$ AS a, ssn FROM customers", ROWS),
    ("28 identifiers", 'SELECT U&"\\0073sn" FROM customers', ROWS),
    ("28 identifiers", 'SELECT "ssn" FROM public . "customers"', ROWS),
    ("29 alias lists", "SELECT d FROM customers c(a, b, cc, d)", ROWS),
    ("30 partitions", "SELECT note FROM orders_2026", ROWS),
    ("30 partitions", "SELECT note FROM ONLY orders", ROWS),
    ("30 partitions", "TABLE payments", ROWS),
    ("32 explain", "EXPLAIN ANALYZE SELECT id FROM customers WHERE ssn = '1'", REFUSED),
    ("32 explain", "EXPLAIN SELECT id FROM customers WHERE ssn LIKE '1%'", REFUSED),
    ("- locking", "SELECT email FROM customers FOR UPDATE", REFUSED),
    ("- read-only", "SET default_transaction_read_only = off", REFUSED),
    ("- standard strings", "SET standard_conforming_strings = off", REFUSED),
    # What masked mode lets ordinary work do (settings, functions, several statements, whole
    # rows of clean relations), each tried the wrong way.
    ("23 search_path", "SELECT set_config(lower('SEARCH_PATH'), 'pg_temp', false)", REFUSED),
    ("23 search_path", "SELECT set_config('search_' || 'path', 'pg_temp', false)", REFUSED),
    ("- settings", "SELECT set_config('application_name', ssn, false) FROM customers", REFUSED),
    ("- settings", "SELECT set_config('jit', (SELECT email FROM customers LIMIT 1), false)",
     REFUSED),
    ("- settings", "SET app.tenant_id = '4711'", REFUSED),
    ("- read-only", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", REFUSED),
    ("- read-only", "SELECT set_config('default_transaction_read_only', 'off', false)", REFUSED),
    ("- standard strings", "SELECT set_config('standard_conforming_strings', 'off', false)",
     REFUSED),
    ("27 parser confusion", "SET standard_conforming_strings = off; SELECT 'a\\' , ssn"
     " FROM customers --'", REFUSED),
    ("33 several", "SELECT 1; SELECT lower(ssn) FROM customers", REFUSED),
    ("4 whole row", "SELECT count(c.*) FROM customers c", REFUSED),
    ("4 whole row", "SELECT row_to_json(v) FROM customer_contacts v", REFUSED),
    ("4 whole row", "WITH s AS (SELECT * FROM customers) SELECT to_jsonb(s) FROM s", REFUSED),
    ("4 whole row", "SELECT to_jsonb(s) FROM (SELECT id, ssn FROM customers) s", REFUSED),
    ("4 whole row", "SELECT count(*) FROM customers c WHERE c IS NOT NULL", REFUSED),
    ("13 files", "SELECT table_to_xml('customers', true, false, '')", REFUSED),
    ("15 other sessions", "SELECT * FROM pg_stat_get_activity(NULL)", REFUSED),
    ("4 whole row", "SELECT count(n.*) FROM newsletter_stats n", REFUSED),  # email_count
    ("- ordinary", "SELECT pg_sleep(0.01), now() > '2020-01-01', to_char(1234.5, '9999D9')",
     ROWS),
    ("- ordinary", "SELECT count(o.*), sum(total_cents) FROM (SELECT id, total_cents FROM"
     " orders) o", ROWS),
)  # fmt: skip

# psql sends `SELECT 1 /* ; */;` and the rest as two statements; drivers send one string.
PSQL_REFUSED = sum(expect == REFUSED for _, _, expect in CASES)


def test_the_catalogue_has_every_category() -> None:
    numbered = {c.split()[0] for c, _, _ in CASES if c[0].isdigit()}
    assert len(CASES) >= 40
    assert numbered >= {str(n) for n in range(1, 33)} - {"16", "26", "31"}


def _leaks(tap: Tap, decoded: list[Any]) -> list[str]:
    seen = " ".join(map(str, decoded)).lower()
    return tap.leaked(SECRETS) + [s for s in SECRETS if s.lower() in seen]


def test_psycopg_extended_protocol(bastion: Bastion) -> None:
    decoded: list[Any] = []
    wrong: list[str] = []
    with Tap(bastion.pg_port) as tap:
        via = plain(bastion.via_bastion("alice", "shop", PASSWORD), tap.port)
        with psycopg_connect(via, sslmode="disable", autocommit=True) as conn:
            for category, sql, expect in CASES:
                try:
                    cursor = conn.execute(sql)
                    got = ROWS
                    if cursor.description:
                        decoded.extend(cursor.fetchall())
                except psycopg.Error:
                    got = REFUSED
                if expect not in (got, EITHER):
                    wrong.append(f"{category}: {sql} -> {got}")
        assert b"Jane Doe" in tap.received  # the tap reads plain text
    assert wrong == []
    assert _leaks(tap, decoded) == []


def test_asyncpg_binary_with_cached_descriptions(bastion: Bastion) -> None:
    async def attempt(port: int) -> tuple[list[Any], list[str]]:
        via = plain(bastion.via_bastion("alice", "shop", PASSWORD), port)
        conn = await asyncpg_connect(via, ssl=False)
        decoded: list[Any] = []
        wrong: list[str] = []
        try:
            for category, sql, expect in CASES:
                try:
                    rows = await conn.fetch(sql)
                    rows += await conn.fetch(sql)  # again: asyncpg skips the Describe
                    decoded.extend(tuple(r) for r in rows)
                    got = ROWS
                except asyncpg.PostgresError:
                    got = REFUSED
                if expect not in (got, EITHER):
                    wrong.append(f"{category}: {sql} -> {got}")
        finally:
            await conn.close()
        return decoded, wrong

    with Tap(bastion.pg_port) as tap:
        decoded, wrong = asyncio.run(attempt(tap.port))
    assert wrong == []
    assert _leaks(tap, decoded) == []


def test_psql_simple_protocol(bastion: Bastion) -> None:
    # A line of its own ends each statement: a trailing -- comment can't swallow the `;`.
    script = "".join(f"{sql}\n;\n" for _, sql, _ in CASES)
    with Tap(bastion.pg_port) as tap:
        via = plain(bastion.via_bastion("alice", "shop", PASSWORD), tap.port)
        done = run_psql(via, "-v", "ON_ERROR_STOP=0", "-f", "-", input=script,
                        env={"PGSSLMODE": "disable"}, timeout=120)  # fmt: skip
    assert done.stderr.count("ERROR:") == PSQL_REFUSED, done.stderr
    assert _leaks(tap, [done.stdout, done.stderr]) == []


@pytest.mark.parametrize("style", ["prepared", "unnamed"])
def test_a_refusal_in_a_pipeline_skips_to_sync_and_leaks_nothing(
    bastion: Bastion, style: str
) -> None:
    with Tap(bastion.pg_port) as tap:
        via = plain(bastion.via_bastion("alice", "shop", PASSWORD), tap.port)
        with psycopg_connect(via, sslmode="disable", autocommit=True) as conn:
            results: list[Any] = []
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.pipeline():
                prepare = style == "prepared"
                results.append(conn.execute("SELECT id, ssn FROM customers", prepare=prepare))
                conn.execute("SELECT lower(ssn) FROM customers", prepare=prepare)
                conn.execute("SELECT email FROM customers")
            rows = conn.execute("SELECT id, email FROM customers ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [4711, 4712] and all("***" in r[1] for r in rows)
    assert tap.leaked(SECRETS) == []
