"""Lineage of output columns, and sensitive columns allowed only as bare projections, on a
catalog shaped like the shop schema (tests/masking/shop.py)."""

from __future__ import annotations

import pytest

from bastion.masking.catalog import Catalog, sensitive_sources
from bastion.masking.classify import Rules
from bastion.masking.lineage import Analyzer, Col, Refused
from bastion.masking.policy import MaskingPolicy

TABLES = {
    (1, "customers", "r"): ["id", "name", "email", "phone", "ssn", "created_at"],
    (2, "orders", "p"): ["id", "customer_id", "placed_on", "total_cents", "note"],
    (3, "orders_2025", "r"): ["id", "customer_id", "placed_on", "total_cents", "note"],
    (4, "payments", "r"): ["id", "order_id", "card_number", "amount_cents"],
    (5, "customer_contacts", "v"): ["id", "name", "email", "phone"],
    (6, "shouting", "v"): ["id", "loud"],
}
VIEWS = {
    5: " SELECT customers.id, customers.name, customers.email, customers.phone FROM customers;",
    6: " SELECT customers.id, upper(customers.email) AS loud FROM customers;",
}


def catalog() -> Catalog:
    rows = [{"relid": relid, "schema": "public", "relation": name, "kind": kind, "attnum": n,
             "column_name": column, "type_oid": 25, "type_name": "text", "text_like": True}
            for (relid, name, kind), columns in TABLES.items()
            for n, column in enumerate(columns, 1)]  # fmt: skip
    views = [{"relid": relid, "definition": text} for relid, text in VIEWS.items()]
    return Catalog.from_rows(rows, [{"child": 3, "parent": 2}], views)


CATALOG = catalog()
POLICY = MaskingPolicy(rules=Rules(sensitive=("public.orders.note",)))
SENSITIVE = sensitive_sources(CATALOG, POLICY)


def analyse(sql: str) -> list[Col]:
    return Analyzer(CATALOG, SENSITIVE.__contains__).statement(sql)


def masked(sql: str) -> list[str]:
    return [c.name for c in analyse(sql) if c.sources & SENSITIVE]


def test_the_catalog_knows_what_is_sensitive() -> None:
    expected = {(1, 3), (1, 4), (1, 5), (2, 5), (3, 5), (4, 3), (5, 3), (5, 4)}
    assert expected == SENSITIVE


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT id, name, email FROM customers", ["email"]),
        ("SELECT * FROM customers c", ["email", "phone", "ssn"]),
        ("SELECT c.* FROM customers c JOIN orders o ON o.customer_id = c.id",
         ["email", "phone", "ssn"]),
        ("SELECT d FROM customers c(a, b, d)", ["d"]),
        ('SELECT U&"\\0073sn" FROM public . "customers"', ["ssn"]),
        ("SELECT email AS e FROM customers", ["e"]),
        ("SELECT e FROM (SELECT email AS e FROM customers) s", ["e"]),
        ("WITH x AS (SELECT email FROM customers) SELECT * FROM x", ["email"]),
        ("SELECT email FROM customer_contacts WHERE id = 4711", ["email"]),
        ("SELECT note FROM orders_2025", ["note"]),
        ("SELECT email FROM customers UNION ALL SELECT name FROM customers", ["email"]),
        ("SELECT name FROM customers UNION SELECT name FROM customers", []),
        ("SELECT count(*) AS n FROM orders WHERE customer_id = 4711 ORDER BY n", []),
        ("SELECT id, t.x FROM customers, LATERAL (SELECT customers.id + 1 AS x) t", []),
        ("SELECT v.a FROM (VALUES (1), (2)) v(a)", []),
        ("SELECT id FROM customers ORDER BY 1 LIMIT 5", []),
    ],
)  # fmt: skip
def test_bare_projections_are_traced_and_masked(sql: str, expected: list[str]) -> None:
    assert masked(sql) == expected


@pytest.mark.parametrize(
    ("sql", "needle"),
    [
        ("SELECT lower(email) FROM customers", "customers.email is sensitive"),
        ("SELECT email || '' FROM customers", "not used in an expression"),
        ("SELECT ssn::int FROM customers", "customers.ssn"),
        ("SELECT c FROM customers c", "a whole-row reference"),
        ("SELECT row_to_json(c) FROM customers c", "customers.email is sensitive"),
        ("SELECT id FROM customers WHERE email LIKE 'j%'", "a WHERE clause"),
        ("SELECT id FROM customers ORDER BY email", "ORDER BY"),
        ("SELECT id, email FROM customers ORDER BY 2", "ORDER BY"),
        ("SELECT email, count(*) FROM customers GROUP BY email", "GROUP BY"),
        ("SELECT count(*) FROM customers c JOIN orders o ON o.note = c.email", "JOIN condition"),
        ("SELECT array_agg(ssn) FROM customers", "customers.ssn"),
        ("SELECT public.top_customer()", "function public.top_customer"),
        ("SELECT id FROM customer_contacts WHERE email = 'x'", "customers.email is sensitive"),
        ("SELECT loud FROM shouting", "view public.shouting"),
        ("SELECT id AS email FROM customers WHERE email LIKE 'a%'", "a WHERE clause"),
        ("SELECT id FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE note > '')",
         "orders.note"),
        ("SELECT (SELECT email FROM customers LIMIT 1)", "an expression"),
        ("SELECT DISTINCT ON (email) id FROM customers", "DISTINCT ON"),
        ("SELECT count(*) FROM orders_2025 GROUP BY note", "orders_2025.note"),
        ("SELECT id FROM nowhere", "relation nowhere is not in the catalog"),
        ("DELETE FROM customers", "DeleteStmt is not allowed"),
        ("SELECT 1; SELECT email FROM customers", "one statement at a time"),
        ("SELECT email INTO TEMP t FROM customers", "SELECT INTO"),
        ("SELECT * FROM customers FOR UPDATE", "FOR UPDATE"),
        ("SELECT id FROM customers c JOIN payments p USING (id) WHERE p.card_number = ''",
         "payments.card_number"),
    ],
)  # fmt: skip
def test_any_other_use_of_a_sensitive_column_is_refused(sql: str, needle: str) -> None:
    with pytest.raises(Refused) as caught:
        analyse(sql)
    assert needle in str(caught.value)
