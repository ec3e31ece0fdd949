"""The read guard's node kinds are an allow-list: a kind it does not know is refused, naming it;
and a plain EXPLAIN, which runs the immutable calls it folds, has its calls checked too."""

from __future__ import annotations

import pytest

from bastion.sqlparse import classify
from bastion.sqlparse.nodes import FAMILIES, PLANNED_KINDS, READ_KINDS
from bastion.sqlparse.readonly import refusal


def test_a_made_up_node_kind_is_refused_by_name() -> None:
    made_up: dict[str, object] = {
        "targetList": [{"ResTarget": {"val": {"MadeUpNode": {"arg": {}}}, "location": 7}}]
    }
    reason = refusal("SelectStmt", made_up)
    assert reason is not None
    assert "MadeUpNode is not a kind of SQL the read guard knows to be harmless" in reason


def test_a_known_kind_inside_an_unknown_one_does_not_vouch_for_it() -> None:
    wrapped: dict[str, object] = {
        "whereClause": {"FutureExpr": {"arg": {"ColumnRef": {"fields": []}}}}
    }
    reason = refusal("SelectStmt", wrapped)
    assert reason is not None and "FutureExpr" in reason


def test_each_kind_is_listed_once_with_a_reason() -> None:
    listed = [kind for _, _, kinds in FAMILIES for kind in kinds.split()]
    assert len(listed) == len(set(listed)) == len(READ_KINDS)
    assert all(why for _, why, _ in FAMILIES)
    assert set(READ_KINDS) <= set(PLANNED_KINDS)


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN SELECT public.imm(1)",
        "EXPLAIN SELECT imm(1)",
        "EXPLAIN INSERT INTO t VALUES (nextval('s'))",
        "EXPLAIN UPDATE t SET a = setval('s', 1)",
        "EXPLAIN EXECUTE p(set_config('default_transaction_read_only', 'off', false))",
        "EXPLAIN (COSTS off) SELECT json_scalar(1)",
    ],
)
def test_a_plain_explain_checks_the_calls_it_may_fold(sql: str) -> None:
    reason = classify(sql).read_only_refusal
    assert reason is not None and reason.startswith("EXPLAIN plans the statement: ")


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = excluded.b",
        "EXPLAIN UPDATE t SET (a, b) = (1, DEFAULT) WHERE c = lower('x')",
        "EXPLAIN DELETE FROM t WHERE a IN (SELECT a FROM u)",
        "EXPLAIN CREATE TABLE x AS SELECT 1",
        "EXPLAIN MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE",
    ],
)
def test_a_plain_explain_still_plans_writes(sql: str) -> None:
    assert classify(sql).read_only_refusal is None


# Kinds checked by hand beyond what the suites' reads produce: each still runs.
HAND_CHECKED = [
    "SELECT 1.5, true, B'101', greatest(1, 2), 1 IS TRUE, xmlserialize(content '<a/>' AS text)",
    "SELECT a, GROUPING(a) FROM t TABLESAMPLE system (1) GROUP BY ROLLUP (a)",
    "SELECT make_interval(days => 1)",
    "SELECT * FROM json_to_record('{}') AS x(a int)",
    "WITH RECURSIVE r(a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM r WHERE a < 3)"
    " SEARCH DEPTH FIRST BY a SET o CYCLE a SET c USING p SELECT * FROM r",
]


@pytest.mark.parametrize("sql", HAND_CHECKED)
def test_hand_checked_kinds_still_read(sql: str) -> None:
    assert classify(sql).read_only_refusal is None
