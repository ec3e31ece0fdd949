"""A destructive statement hidden behind a read's tag is found however its words are cased: the
store's text test ignores ASCII case on every engine (PostgreSQL's LIKE alone would not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.audit.base import CONTAINS, contains
from bastion.clock import iso
from bastion.reports.facts import EXPORT_ROWS
from bastion.reports.gather import gather
from tests.reports.test_gather import INTACT, WEEK, Week, at, load_config_text

HIDDEN = {
    "upper": "WITH gone AS (DELETE FROM invoices RETURNING *) SELECT count(*) FROM gone",
    "mixed": "With gone As (DeLeTe From payments Returning *) Select count(*) From gone",
    "lower": "with gone as (delete from refunds returning *) select count(*) from gone",
}


@pytest.fixture
def week(tmp_path: Path) -> Week:
    w = Week(tmp_path)
    grant = w.grant("alice", "db-1", at(16, 9), 72, "CHG-7 clean the ledgers out properly")
    w.session("s-db", "alice", "db-1", grant, start=at(17, 10), minutes=60)
    for minute, sql in enumerate(HIDDEN.values(), start=1):
        w.statement("s-db", "alice", at(17, 10, minute), sql, tag="SELECT", rows=3)
    w.statement("s-db", "alice", at(17, 10, 9), "SELECT * FROM invoices", tag="SELECT", rows=3)
    w.when(at(24, 9))
    return w


def test_the_store_names_a_read_hiding_a_delete_in_any_case(week: Week) -> None:
    groups = week.store.week_statement_groups(iso(WEEK.start), iso(WEEK.end), EXPORT_ROWS)
    assert sorted(g["sql"] for g in groups["texts"]) == sorted(HIDDEN.values())


def test_the_weekly_review_lists_each_hidden_delete(week: Week, tmp_path: Path) -> None:
    report = gather(week.store, load_config_text(tmp_path), WEEK, now=week.clock.now(),
                    verification=INTACT)  # fmt: skip
    found = [f for f in report.findings if f.rule == "destructive_statement"]
    assert {f.title for f in found} == {"alice ran DELETE without WHERE on db-1"}
    assert sorted(e.text for f in found for e in f.evidence) == sorted(HIDDEN.values())


@pytest.mark.parametrize(
    ("needle", "pattern"),
    [("DeLete", "%delete%"), ("100%", "%100\\%%"), ("a_b", "%a\\_b%"), ("c:\\x", "%c:\\\\x%"),
     ("ÉCOLE", "%École%")],  # only ASCII is lowered, as lower() does in SQLite and under "C"
)  # fmt: skip
def test_a_needle_is_matched_as_itself(needle: str, pattern: str) -> None:
    assert contains(needle) == pattern
    assert CONTAINS.format(column="x") == "lower(x) LIKE ? ESCAPE '\\'"
