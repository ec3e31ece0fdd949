"""Calls in disguise: a qualified name or field selection runs only when the catalog snapshot
proves it a column; else it is judged as the call PostgreSQL would make of it."""

from __future__ import annotations

import pytest

from bastion.sqlparse import disguise
from bastion.sqlparse.names import GuardCatalog


def _catalog() -> GuardCatalog:
    """orders(id, customer_id, total); customers(id, name, addr address); address(street,
    city) a composite type; public.events and audit.events differing; pg_class(relname);
    json_each's OUT columns; the database's own lift(), lower() overload, + and a domain."""
    rows: list[dict[str, object]] = []
    relations = [
        (1, "public", "orders", "r", [("id", 0), ("customer_id", 0), ("total", 0)]),
        (2, "public", "customers", "r", [("id", 0), ("name", 0), ("addr", 3)]),
        (3, "public", "address", "c", [("street", 0), ("city", 0)]),
        (4, "public", "events", "r", [("id", 0), ("kind", 0)]),
        (5, "audit", "events", "r", [("id", 0)]),
        (6, "pg_catalog", "pg_class", "r", [("oid", 0), ("relname", 0)]),
    ]
    for relid, schema, name, kind, cols in relations:
        for column, type_relid in cols:
            rows.append({"relid": relid, "schema": schema, "relation": name, "kind": kind,
                         "column_name": column, "type_relid": type_relid})  # fmt: skip
    functions: list[dict[str, object]] = [
        {"name": "json_each", "outs": "key,value", "relid": 0, "is_record": "t"},
        {"name": "generate_series", "outs": None, "relid": 0, "is_record": "f"},
        {"name": "unnest", "outs": None, "relid": 0, "is_record": "f"},
        {"name": "unnest", "outs": "lexeme,positions,weights", "relid": 0, "is_record": "t"},
    ]
    return GuardCatalog.from_rows(
        rows, functions, own_functions=["lift", "lower", "f"], own_operators=["+"],
        own_cast_types=["checked_domain"], own_type_oids=[16500],
    )  # fmt: skip


CATALOG = _catalog()

PROVEN = [
    "SELECT o.id, o.total FROM orders o",
    "SELECT orders.id FROM orders",
    "SELECT public.orders.id, mydb.public.orders.total FROM orders",
    "SELECT (c.addr).street, (c).name, ((c).addr).city FROM customers c",
    "SELECT (addr).street FROM customers",
    "SELECT s.n FROM (SELECT count(*) AS n FROM orders) s",
    "SELECT s.id, s.total FROM (SELECT * FROM orders) s",
    "SELECT s.id FROM (SELECT o.* FROM orders o) s",
    "SELECT s.x FROM (SELECT id AS x FROM orders UNION SELECT 1) s",
    "WITH w(k) AS (SELECT id FROM orders) SELECT w.k FROM w",
    "WITH w AS (SELECT id FROM orders) SELECT x.id FROM w x",
    "SELECT v.column1 FROM (VALUES (1, 2)) v",
    "SELECT v.a FROM (VALUES (1, 2)) v(a, b)",
    "SELECT g.g, gs.generate_series FROM generate_series(1, 2) g,"
    " ROWS FROM (generate_series(1, 2)) gs",
    "SELECT j.key, j.value, j.ordinality FROM json_each('{}') WITH ORDINALITY j",
    "SELECT j.total FROM (orders o JOIN customers c ON c.id = o.customer_id) AS j",
    "SELECT x.p FROM XMLTABLE('/a' PASSING '<a/>' COLUMNS p int) x",
    "SELECT c.relname FROM pg_catalog.pg_class c",
    "SELECT u.x FROM unnest(ARRAY[1]) AS u(x)",  # overloads differ; the alias names it
    "SELECT e.id FROM events e",  # both schemas' events have id
    "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM customers c WHERE c.id = o.id)",
    "SELECT * FROM orders o, LATERAL (SELECT o.total) l",
    "SELECT o.* FROM orders o",
    "SELECT pg_catalog.lower('X'), upper('x'::text) IS NULL OR 1 OPERATOR(pg_catalog.+) 1 = 2",
    "SELECT (x).upper FROM (SELECT 'a'::text AS x) s",  # upper(text): on the allow-list
    "EXPLAIN SELECT o.id FROM orders o",
    "SELECT ($1::address).street, (CAST('(a,b)' AS public.address)).city",  # asyncpg's composites
]

REFUSED = [
    ("SELECT o.lift FROM orders o", "o.lift"),
    ("SELECT orders.lift FROM orders", "lift"),
    ("SELECT public.orders.lift FROM orders", "lift"),
    ("SELECT (o).lift FROM orders o", "lift"),
    ("SELECT (c.addr).lift FROM customers c", "lift"),
    ("SELECT (o.id).lift FROM orders o", "lift"),
    ("SELECT (1).lift", "lift"),
    ("SELECT ($1::address).lift", "lift"),
    ("SELECT ($1::address[]).street", "street"),
    ("SELECT ('customers_id_seq').nextval", "nextval"),
    ("SELECT ('SELECT 1').ts_stat", "ts_stat"),
    ("SELECT g.lift FROM generate_series(1, 2) g", "lift"),
    ("SELECT id FROM orders o WHERE o.lift = 1", "lift"),
    ("SELECT id FROM orders o ORDER BY o.lift", "lift"),
    ("SELECT id FROM orders o GROUP BY o.lift", "lift"),
    ("SELECT (SELECT o.lift) FROM orders o", "lift"),
    ("WITH w AS (SELECT o.lift FROM orders o) SELECT * FROM w", "lift"),
    ("SELECT * FROM orders o, LATERAL (SELECT o.lift) l", "lift"),
    ("SELECT s.lift FROM (SELECT id FROM orders) s", "lift"),
    ("SELECT s.id FROM (SELECT id AS x FROM orders) s", "s.id"),
    ("WITH w AS (SELECT id FROM orders) SELECT w.lift FROM w", "lift"),
    ("SELECT v.lift FROM (VALUES (1)) v", "lift"),
    ("SELECT e.kind FROM events e", "e.kind"),  # audit.events has no kind
    ("SELECT n.lift FROM new_table n", "new_table"),  # created after the snapshot
    ("SELECT s.lift FROM (SELECT 1 * 1) s", "lift"),
    ("SELECT s.lift FROM (SELECT * FROM new_table) s", "lift"),
    ("SELECT j.lift FROM json_each('{}') j", "lift"),
    ("SELECT u.u FROM unnest(ARRAY[1]) u", "u.u"),  # scalar here, lexeme... for a tsvector
    ("EXPLAIN SELECT o.lift FROM orders o", "lift"),
    ("DECLARE c CURSOR FOR SELECT o.lift FROM orders o", "lift"),
    ("SELECT o.total FROM orders o, customers o", "o.total"),  # both candidates must have it
    # the database's own code under a name the guard would otherwise allow
    ("SELECT lower(o) FROM orders o", "lower"),
    ("SELECT o.lower FROM orders o", "lower"),
    ("SELECT 'a'::text + 1", "operator +"),
    ("SELECT 1 = ANY (SELECT 1) FROM orders ORDER BY id USING +", "operator +"),
    ("SELECT 1::checked_domain", "checked_domain"),
    ("SELECT CAST(1 AS public.checked_domain)", "checked_domain"),
    # a range whose columns are unknown may hold a column `o`, which PostgreSQL reads first
    ("SELECT (o).total FROM orders o, (SELECT * FROM new_table) s", "total"),
]


@pytest.mark.parametrize("sql", PROVEN)
def test_proven_columns_and_fields_run(sql: str) -> None:
    assert disguise.refusal(sql, CATALOG) is None


@pytest.mark.parametrize(("sql", "named"), REFUSED)
def test_unproven_names_are_judged_as_calls(sql: str, named: str) -> None:
    reason = disguise.refusal(sql, CATALOG)
    assert reason is not None and named in reason
    assert "\n" not in reason


def test_between_uses_the_comparison_operators() -> None:
    catalog = GuardCatalog.from_rows([], own_operators=["<="])
    reason = disguise.refusal("SELECT 1 BETWEEN 0 AND 2", catalog)
    assert reason is not None and "operator <=" in reason


def test_case_compares_with_the_equality_operator() -> None:
    catalog = GuardCatalog.from_rows([], own_operators=["="])
    reason = disguise.refusal("SELECT CASE 'a'::text WHEN 'b' THEN 1 END", catalog)
    assert reason is not None and "operator =" in reason
    assert disguise.refusal("SELECT CASE WHEN true THEN 1 END", catalog) is None


def test_a_verdict_stands_for_every_text_of_the_same_shape() -> None:
    catalog = _catalog()
    assert disguise.refusal("SELECT ('a').lift", catalog) is not None
    assert disguise.refusal("SELECT ('b').lift", catalog) is not None
    assert len(catalog.cache) == 1


def test_an_empty_snapshot_proves_nothing() -> None:
    empty = GuardCatalog()
    assert disguise.refusal("SELECT o.id FROM orders o", empty) is not None
    assert disguise.refusal("SELECT id FROM orders", empty) is None  # a bare name is no call


# Every place the grammar takes a type name, not only `::`: a column-definition list, XMLTABLE
# and JSON_TABLE columns, typed literals, arrays, PREPARE's parameter types, XMLSERIALIZE, and
# a domain's array type; each runs the domain's check (the database's own code) on the value.
TYPED_ELSEWHERE = [
    "SELECT * FROM json_to_record('{\"a\":1}') AS x(a checked_domain)",
    "SELECT * FROM jsonb_to_recordset('[{\"a\":1}]') AS x(a int, b public.checked_domain)",
    "SELECT * FROM ROWS FROM (json_to_record('{}') AS (a checked_domain)) x",
    "SELECT * FROM XMLTABLE('/a' PASSING '<a/>' COLUMNS p checked_domain PATH 'x') x",
    "SELECT * FROM JSON_TABLE('{}'::jsonb, '$' COLUMNS (a checked_domain PATH '$.a')) j",
    "SELECT checked_domain '1'",
    "SELECT ARRAY[]::checked_domain[]",
    "SELECT json_populate_record(NULL::checked_domain, '{}')",
    "SELECT XMLSERIALIZE(CONTENT '<a/>'::xml AS checked_domain)",
    "PREPARE p(checked_domain) AS SELECT $1",
    "SELECT JSON_VALUE('{}'::jsonb, '$.a' RETURNING checked_domain)",
]


@pytest.mark.parametrize("sql", TYPED_ELSEWHERE)
def test_a_database_type_is_refused_wherever_a_type_is_named(sql: str) -> None:
    reason = disguise.refusal(sql, CATALOG)
    assert reason is not None and "checked_domain" in reason
    assert "\n" not in reason


def test_built_in_types_outside_casts_still_run() -> None:
    sql = "SELECT int4 '1', a FROM json_to_record('{\"a\":1}') AS x(a int, b text[])"
    assert disguise.refusal(sql, CATALOG) is None


def test_a_parameter_of_a_database_type_is_refused() -> None:
    reason = disguise.parameter_refusal((23, 16500), CATALOG)
    assert reason is not None and "parameter $2" in reason and "\n" not in reason
    assert disguise.parameter_refusal((0, 23, 25), CATALOG) is None
