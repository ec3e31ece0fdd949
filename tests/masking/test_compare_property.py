"""Non-interference, as a property: two databases alike but for their sensitive values answer
every statement the analysis lets through alike, once its masked columns are set aside.

Hypothesis builds statements that combine sensitive columns with set operations, DISTINCT,
grouping, ordering, joins, recursion and predicates; each runs on both real databases. A
statement whose rows, order or error differ between them would be an oracle on the values,
so the analysis must have refused it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.masking.catalog import Catalog
from bastion.masking.lineage import Analyzer, Refused
from tests.realpg import PgCluster, unique_name

COLUMNS = {"id": "int", "name": "text", "email": "text", "ssn": "text"}
SENSITIVE = {(1, 3), (1, 4)}  # customers.email, customers.ssn
# The same people in both; only the sensitive values differ (twins[0] has a repeated email).
ROWS = (
    [(1, "Ann", "a@x", "111"), (2, "Bob", "b@x", "222"), (3, "Cy", "a@x", "333")],
    [(1, "Ann", "c@x", "111"), (2, "Bob", "b@x", "999"), (3, "Cy", "d@x", "333")],
)
TEXTS = ("a@x", "b@x", "c@x", "222", "999", "Ann", "zzz")
INTS = ("1", "2", "7")
OPERATIONS = ("UNION", "UNION ALL", "INTERSECT", "INTERSECT ALL", "EXCEPT", "EXCEPT ALL")


def catalog() -> Catalog:
    rows = [{"relid": 1, "schema": "public", "relation": "customers", "kind": "r", "attnum": n,
             "column_name": name, "type_oid": 23 if kind == "int" else 25,
             "type_name": kind, "text_like": kind == "text"}
            for n, (name, kind) in enumerate(COLUMNS.items(), 1)]  # fmt: skip
    return Catalog.from_rows(rows, [], [])


ANALYZER = Analyzer(catalog(), SENSITIVE.__contains__)


@dataclass(frozen=True)
class Query:
    sql: str
    types: tuple[str, ...]

    @property
    def names(self) -> str:
        return ", ".join(f"c{i + 1}" for i in range(len(self.types)))


@st.composite
def base(draw: st.DrawFn) -> Query:
    cols = draw(st.lists(st.sampled_from(list(COLUMNS)), min_size=1, max_size=2))
    where = draw(st.sampled_from(["", " WHERE id = 1", " WHERE id > 1"]))
    return Query(f"SELECT {', '.join(cols)} FROM customers{where}",
                 tuple(COLUMNS[c] for c in cols))  # fmt: skip


def constant(draw: st.DrawFn, kind: str) -> str:
    if kind in ("bool", "array"):
        return draw(st.sampled_from(["true", "false"] if kind == "bool" else ["NULL"]))
    return draw(st.sampled_from(INTS)) if kind == "int" else f"'{draw(st.sampled_from(TEXTS))}'"


@st.composite
def wrapped(draw: st.DrawFn, inner: st.SearchStrategy[Query]) -> Query:
    q = draw(inner)
    k = draw(st.integers(1, len(q.types)))
    c, kind = f"c{k}", q.types[k - 1]
    value = constant(draw, kind)
    sub = f"({q.sql}) s({q.names})"
    shapes = {
        "set": lambda: Query(
            f"({q.sql}) {draw(st.sampled_from(OPERATIONS))} SELECT "
            + ", ".join(constant(draw, t) for t in q.types), q.types),
        "set_left": lambda: Query(
            "SELECT " + ", ".join(constant(draw, t) for t in q.types)
            + f" {draw(st.sampled_from(OPERATIONS))} ({q.sql})", q.types),
        "distinct": lambda: Query(f"SELECT DISTINCT * FROM {sub}", q.types),
        "distinct_on": lambda: Query(f"SELECT DISTINCT ON ({k}) * FROM {sub}", q.types),
        "count": lambda: Query(f"SELECT count(*) FROM {sub}", ("int",)),
        "rollup": lambda: Query(f"SELECT count(*) FROM {sub} GROUP BY ROLLUP ({c})", ("int",)),
        "group": lambda: Query(f"SELECT {c}, count(*) FROM {sub} GROUP BY 1", (kind, "int")),
        "exists": lambda: Query(f"SELECT EXISTS (SELECT * FROM {sub})", ("bool",)),
        "in": lambda: Query(f"SELECT {value} IN (SELECT {c} FROM {sub})", ("bool",)),
        "any": lambda: Query(f"SELECT {value} = ANY (SELECT {c} FROM {sub})", ("bool",)),
        "where": lambda: Query(f"SELECT * FROM {sub} WHERE {c} = {value}", q.types),
        "order": lambda: Query(f"SELECT * FROM {sub} ORDER BY {c}, 1 LIMIT 1", q.types),
        "window": lambda: Query(
            f"SELECT c1, row_number() OVER (PARTITION BY {c} ORDER BY {c}) FROM {sub}",
            (q.types[0], "int")),
        "minmax": lambda: Query(f"SELECT max({c}) FROM {sub}", (kind,)),
        "natural": lambda: Query(
            f"SELECT count(*) FROM {sub} NATURAL JOIN (SELECT {value} AS {c}) g", ("int",)),
        "using": lambda: Query(
            f"SELECT count(*) FROM (SELECT {value} AS {c}) g JOIN {sub} USING ({c})", ("int",)),
        "case": lambda: Query(
            f"SELECT CASE WHEN {c} = {value} THEN 1 ELSE 0 END FROM {sub}", ("int",)),
        "having": lambda: Query(
            f"SELECT count(*) FROM {sub} HAVING count(DISTINCT {c}) > 1", ("int",)),
        "ties": lambda: Query(
            f"SELECT * FROM {sub} ORDER BY {c} FETCH FIRST 1 ROWS WITH TIES", q.types),
        "scalar": lambda: Query(f"SELECT (SELECT {c} FROM {sub} LIMIT 1)", (kind,)),
        "lag": lambda: Query(f"SELECT lag({c}) OVER (ORDER BY 1) FROM {sub}", (kind,)),
        "array": lambda: Query(f"SELECT ARRAY(SELECT {c} FROM {sub})", ("array",)),
        "join_on": lambda: Query(
            f"SELECT count(*) FROM {sub} JOIN (SELECT {value} AS x) g ON g.x = s.{c}",
            ("int",)),
        "offset": lambda: Query(f"SELECT * FROM {sub} LIMIT 2 OFFSET 1", q.types),
        "union_all": lambda: Query(f"({q.sql}) UNION ALL ({q.sql})", q.types),
        "cte": lambda: Query(f"WITH s({q.names}) AS ({q.sql}) SELECT * FROM s", q.types),
        "lateral": lambda: Query(
            f"SELECT l.* FROM (SELECT 1) o, LATERAL (SELECT * FROM {sub}) l", q.types),
        "recursive": lambda: Query(
            f"WITH RECURSIVE r({q.names}) AS (({q.sql}) "
            f"{draw(st.sampled_from(['UNION', 'UNION ALL']))} SELECT * FROM r WHERE false)"
            f"{draw(st.sampled_from(['', f' CYCLE {c} SET seen USING p']))}"
            f" SELECT {q.names} FROM r", q.types),
        "search": lambda: Query(
            f"WITH RECURSIVE r({q.names}) AS (({q.sql}) UNION ALL SELECT * FROM r WHERE false)"
            f" SEARCH BREADTH FIRST BY {c} SET o SELECT {q.names} FROM r ORDER BY o",
            q.types),
    }  # fmt: skip
    return shapes[draw(st.sampled_from(sorted(shapes)))]()


QUERIES = st.recursive(base(), wrapped, max_leaves=3)


@pytest.fixture(scope="module")
def twins(pg_cluster: PgCluster) -> Iterator[list[psycopg.Connection[tuple[Any, ...]]]]:
    names = [unique_name("twin") for _ in ROWS]
    conns = []
    try:
        for name, rows in zip(names, ROWS, strict=True):
            pg_cluster.create_database(name, "postgres")
            conn = pg_cluster.connect(name)
            conns.append(conn)
            conn.execute("CREATE TABLE customers (id int, name text, email text, ssn text)")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO customers VALUES (%s, %s, %s, %s)", rows)
        yield conns
    finally:
        for conn in conns:
            conn.close()
        for name in names:
            pg_cluster.drop_database(name)


def answer(conn: psycopg.Connection[tuple[Any, ...]], sql: str, shown: list[int]) -> object:
    """The rows with only the columns shown in clear, in order; or the error's SQLSTATE."""
    try:
        cursor = conn.execute(sql)
    except psycopg.Error as exc:
        return ("error", exc.sqlstate)
    rows = cursor.fetchall()
    width = len(cursor.description or [])
    keep = shown if all(i < width for i in shown) else []  # a count mismatch masks all
    return [tuple(row[i] for i in keep) for row in rows]


@settings(max_examples=400, deadline=None)
@given(QUERIES)
def test_what_the_analysis_lets_through_answers_alike_for_any_sensitive_values(
    twins: list[psycopg.Connection[tuple[Any, ...]]], query: Query
) -> None:
    try:
        cols = ANALYZER.statement(query.sql)
    except Refused:
        return  # refused: nothing reaches the database
    shown = [i for i, col in enumerate(cols) if not col.sources & SENSITIVE]
    first, second = (answer(conn, query.sql, shown) for conn in twins)
    assert first == second, f"an oracle on the sensitive values got through: {query.sql}"
