"""A read grant's guard against functions called in disguise: `o.f` and `(x).f` call f(x) when
f is not a column of x, and an overload, operator or cast can be the database's own function.
Each is refused at the door, and nothing changes in the database."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.harness import Bastion
from tests.pgproxy.conftest import PASSWORD
from tests.realpg import PgDatabase, psycopg_connect

# What the database defines (its owner, or anyone who once had a write grant): a function that
# lifts the read-only guard for the session's later transactions, and one that writes.
SETUP = [
    "CREATE TABLE audit_side (x int)",
    "CREATE TYPE address AS (street text, city text)",
    "ALTER TABLE customers ADD COLUMN addr address",
    "CREATE FUNCTION lift(orders) RETURNS int LANGUAGE sql AS"
    " $$SELECT 1 FROM (SELECT set_config('default_transaction_read_only', 'off', false)) s$$",
    "CREATE FUNCTION lift(address) RETURNS int LANGUAGE sql AS"
    " $$SELECT 1 FROM (SELECT set_config('default_transaction_read_only', 'off', false)) s$$",
    "CREATE FUNCTION lift(integer) RETURNS int LANGUAGE sql AS"
    " $$SELECT 1 FROM (SELECT set_config('default_transaction_read_only', 'off', false)) s$$",
    "CREATE FUNCTION lift(anyelement) RETURNS int LANGUAGE sql AS"
    " $$SELECT 1 FROM (SELECT set_config('default_transaction_read_only', 'off', false)) s$$",
    "CREATE FUNCTION f(orders) RETURNS int LANGUAGE sql AS"
    " 'INSERT INTO audit_side VALUES (1) RETURNING 1'",
    # an overload of a built-in on the allow-list: lower(o) finds it, not pg_catalog.lower
    "CREATE FUNCTION lower(orders) RETURNS int LANGUAGE sql AS"
    " $$SELECT 1 FROM (SELECT set_config('default_transaction_read_only', 'off', false)) s$$",
    # an operator under a built-in symbol
    "CREATE FUNCTION plus(text, int) RETURNS int LANGUAGE sql AS"
    " $$SELECT 1 FROM (SELECT set_config('default_transaction_read_only', 'off', false)) s$$",
    "CREATE OPERATOR + (leftarg = text, rightarg = int, function = plus)",
    # a cast that runs the database's own function
    "CREATE FUNCTION to_address(int) RETURNS address LANGUAGE sql AS"
    " $$SELECT ROW(set_config('default_transaction_read_only', 'off', false), '')::address$$",
    "CREATE CAST (int AS address) WITH FUNCTION to_address(int)",
    # immutable, so the planner runs it to fold it, even under a plain EXPLAIN
    "CREATE FUNCTION imm(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$BEGIN"
    " PERFORM set_config('default_transaction_read_only', 'off', false); RETURN 1; END$$",
]

# Each would lift the guard (or call the database's own function) if it ran.
ATTACKS = [
    "SELECT o.lift FROM orders o",
    "SELECT orders.lift FROM orders",
    "SELECT public.orders.lift FROM orders",
    "SELECT (o).lift FROM orders o",
    "SELECT (c.addr).lift FROM customers c",
    "SELECT (o.id).lift FROM orders o",
    "SELECT g.lift FROM generate_series(1, 2) g",
    "SELECT (1).lift",
    "SELECT id FROM orders o WHERE o.lift = 1",
    "SELECT id FROM orders o ORDER BY o.lift",
    "SELECT (SELECT o.lift) FROM orders o",
    "WITH w AS (SELECT o.lift FROM orders o) SELECT * FROM w",
    "SELECT * FROM orders o, LATERAL (SELECT o.lift) l",
    "SELECT s.lift FROM (SELECT id FROM orders) s",
    "WITH w AS (SELECT id FROM orders) SELECT w.lift FROM w",
    "SELECT v.lift FROM (VALUES (1)) v",
    # a built-in off the allow-list, reached the same way: ts_stat runs SQL text
    "SELECT ('SELECT to_tsvector(set_config(''default_transaction_read_only'', ''off'',"
    " false))').ts_stat",
    "SELECT lower(o) FROM orders o",
    "SELECT o.lower FROM orders o",
    "SELECT 'a'::text + 1",
    "SELECT 1::address",
    "EXPLAIN SELECT imm(1)",
]


def _setup(db: PgDatabase) -> None:
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for statement in SETUP:
            conn.execute(statement)


def test_a_function_called_in_attribute_notation_cannot_write(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """The red team's case: o.lift lifts the guard, then o.f writes."""
    _setup(pg)
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        for attack in ("SELECT o.lift FROM orders o", "SELECT o.f FROM orders o"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="refused by the"):
                conn.execute(attack)
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM audit_side").fetchone() == (0,)


def test_every_disguised_call_is_refused_with_one_line(bastion: Bastion, pg: PgDatabase) -> None:
    _setup(pg)
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        for attack in ATTACKS:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as caught:
                conn.execute(attack)
            message = str(caught.value).strip()
            assert "refused by the bastion" in message and "\n" not in message, attack
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)


def test_columns_and_fields_still_read(bastion: Bastion, pg: PgDatabase) -> None:
    """Qualified columns, composite fields, whole rows, subqueries, CTEs and functions in FROM:
    proven columns, so they run."""
    _setup(pg)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("UPDATE customers SET addr = ROW('Main St', 'Springfield') WHERE id = 1")
    reads = [
        ("SELECT o.id, o.total FROM orders o ORDER BY o.id LIMIT 1", 2),
        ("SELECT public.orders.id FROM orders ORDER BY 1 LIMIT 1", 1),
        ("SELECT (c.addr).street, (c).name FROM customers c WHERE c.id = 1", 2),
        ("SELECT s.n FROM (SELECT count(*) AS n FROM orders) s", 1),
        ("WITH w(k) AS (SELECT id FROM orders) SELECT w.k FROM w ORDER BY 1 LIMIT 1", 1),
        ("SELECT g.g, j.key FROM generate_series(1, 2) g, json_each('{\"a\": 1}') j LIMIT 1", 2),
        ("SELECT j.total FROM (orders o JOIN customers c ON c.id = o.customer_id) AS j LIMIT 1", 1),
        ("SELECT c.relname FROM pg_catalog.pg_class c WHERE c.relname = 'orders'", 1),
        ("SELECT t.table_name FROM information_schema.tables t LIMIT 1", 1),
    ]
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        for sql, width in reads:
            row = conn.execute(sql).fetchone()
            assert row is not None and len(row) == width, sql
    assert not [q.refused for q in bastion.store.queries() if q.refused]


def test_a_plain_explain_cannot_fold_a_call_that_lifts_the_guard(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """Planning runs an immutable function with constant arguments; EXPLAIN only plans, but
    the call runs all the same, so a plain EXPLAIN's calls are checked as a query's are."""
    _setup(pg)
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="EXPLAIN plans"):
            conn.execute("EXPLAIN SELECT imm(1)")
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("EXPLAIN SELECT upper(name) FROM customers").fetchall()


def test_a_session_whose_guard_code_lifted_unseen_is_ended(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """The backstop for what no parser sees (a view's body here; an implicit cast or an
    operator class's function alike): the server reports default_transaction_read_only
    turned off, and the session ends before it can run anything else."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE VIEW lifting AS SELECT o.id FROM orders o,"
            " (SELECT set_config('default_transaction_read_only', 'off', false)) s"
        )
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match="read-only guard was lifted"):
            conn.execute("SELECT count(*) FROM lifting")
        assert conn.closed or conn.broken
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reasons = [s.end_reason or "" for s in bastion.store.sessions()]
        if any("default_transaction_read_only=off" in r for r in reasons):
            break
        time.sleep(0.02)
    else:
        raise AssertionError("the session's end was not recorded with its reason")


def test_a_database_domain_is_refused_wherever_a_type_is_named(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """The red team's case: a domain whose CHECK calls the database's own function runs it
    wherever the statement names the domain, not only in a `::` cast: a column-definition
    list, XMLTABLE columns, a typed literal, its array type."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION touchx(int) RETURNS int LANGUAGE sql AS"
            " $$SELECT 1 FROM (SELECT set_config('default_transaction_read_only', 'off',"
            " false)) s$$"
        )
        conn.execute("CREATE DOMAIN dd AS int CHECK (touchx(VALUE) = 1)")
    attacks = [
        "SELECT * FROM json_to_record('{\"a\":1}') AS x(a dd)",
        "SELECT * FROM jsonb_to_recordset('[{\"a\":1}]') AS x(a dd)",
        "SELECT * FROM XMLTABLE('/a' PASSING '<a>1</a>' COLUMNS c dd PATH '.') x",
        "SELECT dd '1'",
        "SELECT '{1}'::_dd",
        "SELECT CAST(1 AS public.dd)",
    ]
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        for attack in attacks:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as caught:
                conn.execute(attack)
            message = str(caught.value).strip()
            assert "refused by the bastion" in message and "dd" in message, attack
            assert "\n" not in message
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
        row = conn.execute("SELECT * FROM json_to_record('{\"a\":1}') AS x(a int)").fetchone()
        assert row == (1,)


def test_a_parameter_typed_as_a_database_domain_is_refused_at_parse(
    bastion: Bastion, pg: PgDatabase
) -> None:
    """The same domain named by OID in Parse's parameter types, which the text never shows:
    Bind's value would be read into the domain, and its CHECK would run."""
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION touchx(int) RETURNS int LANGUAGE sql AS"
            " $$SELECT 1 FROM (SELECT set_config('default_transaction_read_only', 'off',"
            " false)) s$$"
        )
        conn.execute("CREATE DOMAIN dd AS int CHECK (touchx(VALUE) = 1)")
        row = conn.execute("SELECT 'dd'::regtype::oid, '_dd'::regtype::oid").fetchone()
    assert row is not None
    via = bastion.via_bastion("alice", "orders-prod", PASSWORD)
    with psycopg_connect(via, autocommit=True) as conn:
        for n, oid in enumerate(row):
            parsed = conn.pgconn.prepare(f"s{n}".encode(), b"SELECT $1", [int(oid)])
            message = (parsed.error_message or b"").decode()
            assert "refused by the bastion" in message and "parameter $1" in message, message
        fine = conn.pgconn.prepare(b"ok", b"SELECT $1", [23])  # int4
        assert fine.error_message in (None, b""), fine.error_message
        done = conn.pgconn.exec_prepared(b"ok", [b"7"])
        assert done.get_value(0, 0) == b"7"
        assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
