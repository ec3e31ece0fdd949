"""Comparing, sorting, deduplicating or grouping a sensitive value is a use, not a selection:
set operations, DISTINCT, grouping sets, NATURAL and USING joins and recursive CTEs refuse a
sensitive column, however it got there (a view, a CTE, a subquery, a LATERAL range)."""

from __future__ import annotations

import pytest

from bastion.masking.classify import Rules
from bastion.masking.lineage import Analyzer, Refused, only_statement
from bastion.masking.policy import MaskingPolicy
from bastion.masking.session import Masking
from bastion.pgwire import Field
from tests.masking.test_lineage import CATALOG, analyse, masked
from tests.masking.test_lineage import SENSITIVE as SENSITIVE_SOURCES

SENSITIVE = "is sensitive: it may only be selected as it is"


def refusal(sql: str) -> str:
    with pytest.raises(Refused) as caught:
        analyse(sql)
    return str(caught.value)


@pytest.mark.parametrize(
    ("sql", "column", "use"),
    [
        # The oracle: one row back when the guess is right, none when it is wrong.
        ("SELECT email FROM customers WHERE id = 7 INTERSECT SELECT 'guess@example.com'",
         "customers.email", "INTERSECT, which compares every column it combines"),
        ("SELECT email FROM customers WHERE id = 7 INTERSECT ALL SELECT 'g'", "customers.email",
         "INTERSECT ALL"),
        ("SELECT ssn FROM customers WHERE id = 7 EXCEPT SELECT '123-45-6789'", "customers.ssn",
         "EXCEPT"),
        ("SELECT ssn FROM customers EXCEPT ALL SELECT '123-45-6789'", "customers.ssn",
         "EXCEPT ALL"),
        ("SELECT ssn FROM customers WHERE id = 7 UNION SELECT '123-45-6789'", "customers.ssn",
         "UNION"),
        ("SELECT 'guess' INTERSECT SELECT email FROM customers", "customers.email", "INTERSECT"),
        ("VALUES ('guess') EXCEPT SELECT email FROM customers", "customers.email", "EXCEPT"),
        ("SELECT id, ssn FROM customers INTERSECT SELECT 4711, '123-45-6789'", "customers.ssn",
         "INTERSECT"),
        ("TABLE customers EXCEPT SELECT 1, 'n', 'e', 'p', 's', now()", "customers.email",
         "EXCEPT"),
        ("(SELECT email FROM customers UNION ALL SELECT 'a') INTERSECT SELECT 'b'",
         "customers.email", "INTERSECT"),
        # Its answer counted, tested or carried by something around it.
        ("SELECT count(*) FROM (SELECT email FROM customers INTERSECT SELECT 'g') s",
         "customers.email", "INTERSECT"),
        ("SELECT 1 WHERE EXISTS (SELECT ssn FROM customers INTERSECT SELECT '1')",
         "customers.ssn", "INTERSECT"),
        ("SELECT id FROM orders WHERE customer_id IN (SELECT id FROM (SELECT id, email FROM"
         " customers INTERSECT SELECT 4711, 'g') s)", "customers.email", "INTERSECT"),
        ("SELECT l.x FROM customers c, LATERAL (SELECT c.email AS x INTERSECT SELECT 'g') l",
         "customers.email", "INTERSECT"),
        # The sensitive column passed through a CTE, a view or a subquery first.
        ("WITH g AS (SELECT ssn FROM customers WHERE id = 7) SELECT ssn FROM g"
         " INTERSECT SELECT '123-45-6789'", "customers.ssn", "INTERSECT"),
        ("SELECT email FROM customer_contacts INTERSECT SELECT 'g'", "customers.email",
         "INTERSECT"),
        ("SELECT e FROM (SELECT email AS e FROM customers) s EXCEPT SELECT 'g'",
         "customers.email", "EXCEPT"),
        ("SELECT note FROM orders_2025 UNION SELECT 'gift wrap please'", "orders_2025.note",
         "UNION"),
    ],
)  # fmt: skip
def test_a_set_operation_that_compares_rows_refuses_a_sensitive_column(
    sql: str, column: str, use: str
) -> None:
    text = refusal(sql)
    assert f"column public.{column} {SENSITIVE}" in text and f"not used in {use}" in text


@pytest.mark.parametrize(
    ("sql", "use"),
    [
        ("SELECT DISTINCT email FROM customers", "DISTINCT, which compares every column"),
        ("SELECT DISTINCT id, ssn FROM customers", "DISTINCT"),
        ("SELECT count(*) FROM (SELECT DISTINCT email FROM customers) s", "DISTINCT"),
        ("SELECT DISTINCT * FROM customer_contacts", "DISTINCT"),
        ("WITH e AS (SELECT email FROM customers) SELECT DISTINCT email FROM e", "DISTINCT"),
        ("SELECT DISTINCT ON (1) email, id FROM customers", "DISTINCT ON"),
        ("SELECT DISTINCT ON (e) email AS e, id FROM customers", "DISTINCT ON"),
        ("SELECT email, count(*) FROM customers GROUP BY ROLLUP (1)", "GROUP BY"),
        ("SELECT email, count(*) FROM customers GROUP BY GROUPING SETS ((1), ())", "GROUP BY"),
        ("SELECT id, ssn, count(*) FROM customers GROUP BY CUBE ((id, 2))", "GROUP BY"),
        ("SELECT email AS e, count(*) FROM customers GROUP BY ROLLUP (e)", "GROUP BY"),
    ],
)  # fmt: skip
def test_deduplicating_or_grouping_a_sensitive_column_is_refused(sql: str, use: str) -> None:
    text = refusal(sql)
    assert SENSITIVE in text and f"not used in {use}" in text


@pytest.mark.parametrize(
    "sql",
    [
        # NATURAL JOIN compares every column both sides name alike: here email = 'g'.
        "SELECT c.id FROM customers c NATURAL JOIN (SELECT 'g' AS email) g",
        "SELECT count(*) FROM (SELECT 'g' AS email) g NATURAL JOIN customer_contacts",
        "SELECT count(*) FROM customers NATURAL JOIN (VALUES ('g')) v(email)",
        # A function in FROM names its column after its alias.
        "SELECT c.id FROM customers c NATURAL JOIN unnest(ARRAY['g']) AS email",
        # USING compares both sides' columns: the clean one found first hides nothing.
        "SELECT g.email FROM (SELECT 'g' AS email) g JOIN customers USING (email)",
        "SELECT 1 FROM (SELECT 'g' AS email) g JOIN (customers c JOIN orders o"
        " ON o.customer_id = c.id) USING (email)",
    ],
)
def test_a_natural_or_using_join_on_a_sensitive_column_is_refused(sql: str) -> None:
    text = refusal(sql)
    assert "public.customers.email " + SENSITIVE in text and "JOIN" in text


@pytest.mark.parametrize(
    ("sql", "use"),
    [
        ("WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers UNION"
         " SELECT n + 1, e FROM r WHERE n < 3) SELECT n FROM r", "UNION"),
        ("WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers UNION ALL"
         " SELECT n + 1, e FROM r WHERE n < 3) CYCLE e SET seen USING path SELECT n FROM r",
         "CYCLE, which compares the columns it lists"),
        ("WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers UNION ALL"
         " SELECT n + 1, e FROM r WHERE n < 3) SEARCH DEPTH FIRST BY e SET o SELECT n FROM r",
         "SEARCH, which sorts by the columns it lists"),
        # The value enters on the recursive side, and is compared on the next pass.
        ("WITH RECURSIVE r(n, e) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, c.email"
         " FROM r, customers c WHERE r.e = 'g') SELECT n FROM r", "a WHERE clause"),
    ],
)  # fmt: skip
def test_a_recursive_cte_that_compares_a_sensitive_column_is_refused(sql: str, use: str) -> None:
    text = refusal(sql)
    assert "public.customers.email " + SENSITIVE in text and f"not used in {use}" in text


def test_a_recursive_cte_inside_another_is_traced_within_a_budget_of_passes() -> None:
    """asyncpg's type introspection nests one WITH RECURSIVE in another: traced. Deeper
    nesting, or so many inside one that the passes multiply, is refused."""
    inner = "WITH RECURSIVE q(m) AS (SELECT 1 UNION ALL SELECT m + 1 FROM q WHERE m < 2)"
    sql = (f"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < ({inner}"
           " SELECT max(m) FROM q)) SELECT n FROM r")  # fmt: skip
    analyzer = Analyzer(CATALOG, SENSITIVE_SOURCES.__contains__)
    assert [c.name for c in analyzer.statement(sql)] == ["n"]
    deeper = sql.replace("FROM q WHERE m < 2", f"FROM q WHERE m < ({inner} SELECT max(m) FROM q)")
    with pytest.raises(Refused, match="nested this deep"):
        analyzer.statement(deeper)
    many = " AND ".join(f"n < ({inner} SELECT max(m) FROM q)" for _ in range(80))
    wide = (f"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE {many})"
            " SELECT n FROM r")  # fmt: skip
    with pytest.raises(Refused, match="too many passes"):
        analyzer.statement(wide)
    assert [c.name for c in analyzer.statement(f"{inner} SELECT m FROM q")] == ["m"]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers UNION ALL"
         " SELECT n + 1, e FROM r WHERE n < 3) SELECT n, e FROM r", ["e"]),
        ("WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n + 1 FROM r WHERE n < 3)"
         " SELECT n FROM r", []),
        ("WITH RECURSIVE r(n, e) AS (SELECT 1, email FROM customers UNION ALL"
         " SELECT n + 1, e FROM r WHERE n < 3) CYCLE n SET seen USING path SELECT * FROM r",
         ["e"]),
    ],
)  # fmt: skip
def test_a_recursive_cte_that_only_carries_a_sensitive_column_masks_it(
    sql: str, expected: list[str]
) -> None:
    assert masked(sql) == expected


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT email FROM customers WHERE id = 7 UNION ALL SELECT 'guess@example.com'",
         ["email"]),
        ("SELECT id, ssn FROM customers UNION ALL SELECT id, note FROM orders_2025", ["ssn"]),
        ("SELECT email FROM customers", ["email"]),
        ("SELECT name FROM customers INTERSECT SELECT 'Jane Doe'", []),
        ("SELECT DISTINCT name FROM customers", []),
        ("SELECT DISTINCT ON (id) id, email FROM customers ORDER BY id", ["email"]),
        ("SELECT name, count(*) FROM customers GROUP BY ROLLUP (1)", []),
        ("SELECT o.id, o.note FROM orders o NATURAL JOIN (SELECT 1 AS id) x", ["note"]),
        ("SELECT c.email FROM customers c JOIN orders o USING (id)", ["email"]),
    ],
)  # fmt: skip
def test_selections_that_compare_nothing_sensitive_still_run(sql: str, expected: list[str]) -> None:
    assert masked(sql) == expected


# Siblings of the same class that the analysis already refused (each is an expression, a
# predicate or a clause over the value): kept here so the class stays closed.
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id, row_number() OVER (PARTITION BY email) FROM customers",
        "SELECT id, rank() OVER (ORDER BY ssn) FROM customers",
        "SELECT id, count(*) OVER w FROM customers WINDOW w AS (PARTITION BY ssn)",
        "SELECT id FROM orders WHERE 'g' IN (SELECT email FROM customers)",
        "SELECT id FROM customers WHERE email = ANY (SELECT 'g')",
        "SELECT 'g' = ANY (SELECT email FROM customers)",
        "SELECT id FROM customers c WHERE EXISTS (SELECT 1 WHERE c.email = 'g')",
        "SELECT ARRAY[email] @> ARRAY['g'] FROM customers",
        "SELECT ARRAY['g'] <@ ARRAY[ssn] FROM customers",
        "SELECT jsonb_build_array(email) ? 'g' FROM customers",
        "SELECT id FROM customers WHERE (id, email) = (7, 'g')",
        "SELECT e FROM (SELECT email AS e FROM customers) s ORDER BY e",
        "WITH s AS (SELECT ssn FROM customers) SELECT ssn FROM s ORDER BY 1",
        "SELECT e FROM (SELECT email AS e FROM customers ORDER BY email LIMIT 1) s",
        "SELECT e FROM (SELECT email AS e FROM customers ORDER BY 1 OFFSET 1) s",
        "SELECT min(email) FROM customers",
        "SELECT max(ssn) FROM customers",
        "SELECT count(DISTINCT email) FROM customers",
        "SELECT array_agg(id ORDER BY email) FROM customers",
        "SELECT string_agg(name, ',' ORDER BY ssn) FROM customers",
        "SELECT count(*) FILTER (WHERE email = 'g') FROM customers",
        "SELECT l.n FROM customers c, LATERAL (SELECT 1 AS n WHERE c.ssn = '1') l",
        "SELECT u FROM customers c, LATERAL unnest(ARRAY[c.email]) u",
        "SELECT unnest(ARRAY[email]) FROM customers",
        "SELECT generate_series(1, length(ssn)) FROM customers",
        "SELECT id FROM customer_contacts ORDER BY email",
        "SELECT 1 / (CASE WHEN ssn LIKE '1%' THEN 0 ELSE 1 END) FROM customers",
        "SELECT ssn::int FROM customers",
        "SELECT CAST(email AS date) FROM customers",
        "SELECT id FROM customers LIMIT (SELECT length(email) FROM customers LIMIT 1)",
    ],
)
def test_other_comparisons_of_a_sensitive_value_stay_refused(sql: str) -> None:
    assert SENSITIVE in refusal(sql) or "is not allowed in masked mode" in refusal(sql)


def test_a_select_field_the_analysis_does_not_read_refuses_the_statement() -> None:
    # A newer grammar's clause (it might sort or compare) is not silently skipped.
    _, node = only_statement("SELECT email FROM customers")
    node["keepClause"] = [{"ColumnRef": {"fields": [{"String": {"sval": "email"}}]}}]
    with pytest.raises(Refused, match="SELECT with keepClause is not analysed"):
        Analyzer(CATALOG, SENSITIVE_SOURCES.__contains__).select(node, None)


def test_a_keyed_hash_never_spans_a_set_operations_differing_sides() -> None:
    # UNION ALL compares nothing, but one keyed hash over the real value and a guess would
    # let the engineer compare them: such a column is masked in full instead.
    policy = MaskingPolicy(rules=Rules(sensitive=("public.orders.note",),
                                       styles=(("customers.email", "hash"),)))  # fmt: skip
    masking = Masking(CATALOG, policy, b"k" * 32, "2026-W47")
    email = Field("email", 0, 0, 25, -1, -1, 0)
    guessed = masking.plan("SELECT email FROM customers WHERE id = 7 UNION ALL SELECT 'g@x'")
    [mask] = masking.result(guessed, [email]).maskers.values()
    assert {mask(b"g@x"), mask(b"jane.doe@example.com")} == {b"***", b"****"}  # full
    alike = masking.plan("SELECT email FROM customers WHERE id = 7 UNION ALL"
                         " SELECT email FROM customer_contacts WHERE id = 8")  # fmt: skip
    [mask] = masking.result(alike, [email]).maskers.values()
    hashed = [mask(b"alice@example.com"), mask(b"bob@example.com")]
    assert hashed[0] != hashed[1] and b"*" not in b"".join(h or b"" for h in hashed)
    nested = masking.plan(
        "WITH u AS (SELECT email FROM customers UNION ALL SELECT name"
        " FROM customers) SELECT e FROM (SELECT email AS e FROM u) s"
    )
    [mask] = masking.result(nested, [email]).maskers.values()
    assert mask(b"Jane Doe") == b"****"
